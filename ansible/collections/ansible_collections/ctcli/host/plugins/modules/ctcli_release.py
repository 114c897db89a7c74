#!/usr/bin/python3
# -*- coding: utf-8 -*-
# ctcli.host.ctcli_release: a ctcli root's release and its apps, driven
# through the ctcli binary's --json output.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ctcli_release
short_description: Install, upgrade, start, stop or delete a ctcli release
description:
  - Manages the release installed in one ctcli root directory and the state of
    its apps by running the C(ctcli) binary on the host with C(--json).
  - C(state=present) installs the package when the root has no release, and
    upgrades to it (C(ctcli -y upgrade)) when it differs from the current
    release; a package equal to the current release changes nothing.
  - Whether the package differs is decided by C(ctcli plan PKG) when the
    binary has that command (any app added, changed or removed, or another
    release name or version), else from the package's manifest (C(manifest.json),
    whose digest is part of the release id) or, for the original package
    layout, from its release version and its apps' image digests.
  - A failed upgrade (ctcli rolls it back by itself) fails the task with
    ctcli's one-line error.
  - Supports check mode (nothing is changed; the result says what would be)
    and diff mode (the release and every app, before and after).
version_added: "0.1.0"
options:
  root:
    description: The ctcli root directory (C(ctcli --root)).
    type: path
    required: true
  package:
    description: Path of the package on the host. Required with C(state=present).
    type: path
  state:
    description:
      - C(present) the package is the current release (install or upgrade).
      - C(started) the apps (all, or I(apps)) are running.
      - C(stopped) the apps (all, or I(apps)) are stopped.
      - C(absent) no release is installed (C(ctcli -y delete)).
    type: str
    choices: [present, started, stopped, absent]
    default: present
  apps:
    description: With C(started) or C(stopped), only these apps.
    type: list
    elements: str
    default: []
  binary:
    description: The ctcli executable, a path or a name looked up on PATH.
    type: str
    default: ctcli
  keep:
    description: Releases to keep after an upgrade (C(upgrade --keep)).
    type: int
  purge:
    description: With C(state=absent), also remove configs, data, logs and backups.
    type: bool
    default: false
  hook_timeout:
    description: Time limit of one hook in seconds (C(--hook-timeout)).
    type: int
author:
  - ctcli maintainers
'''

EXAMPLES = r'''
- name: Upgrade the host to a package
  ctcli.host.ctcli_release:
    root: /srv/app
    package: /var/tmp/app-2.0.0.tar.gz
    state: present

- name: Stop the worker
  ctcli.host.ctcli_release:
    root: /srv/app
    state: stopped
    apps: [worker]

- name: Remove the release
  ctcli.host.ctcli_release:
    root: /srv/app
    state: absent
'''

RETURN = r'''
action:
  description: What was done (or, in check mode, would be done).
  returned: always
  type: str
  sample: upgrade
release:
  description: The current release after the task (id, name, version), null when none.
  returned: always
  type: dict
previous:
  description: The release before the task (id, name, version), null when none.
  returned: always
  type: dict
changes:
  description: Per app, added / changed / removed / unchanged (state=present).
  returned: when state is present
  type: list
  elements: dict
apps:
  description: ctcli status of each app after the task.
  returned: always
  type: list
  elements: dict
result:
  description: The JSON ctcli printed for the changing command.
  returned: when changed and not in check mode
  type: dict
'''

import hashlib
import json
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule


class Ctcli(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        binary = p['binary']
        if os.sep not in binary:
            found = module.get_bin_path(binary, required=False)
            if not found:
                module.fail_json(msg="ctcli binary '%s' not found on PATH" % binary)
            binary = found
        elif not os.access(binary, os.X_OK):
            module.fail_json(msg="ctcli binary '%s' is not an executable file" % binary)
        self.binary = binary
        self.root = p['root']
        self.hook_timeout = p['hook_timeout']
        self._has = {}

    def argv(self, args, json_out=True):
        argv = [self.binary, '--root', self.root, '--no-color']
        if json_out:
            argv.append('--json')
        if self.hook_timeout is not None:
            argv += ['--hook-timeout', str(self.hook_timeout)]
        return argv + list(args)

    def run(self, args, json_out=True):
        argv = self.argv(args, json_out)
        rc, out, err = self.module.run_command(argv, environ_update={'NO_COLOR': '1'})
        return rc, out, err, argv

    def call(self, args, **extra):
        """Runs ctcli; fails the task with ctcli's error line unless it exits 0."""
        rc, out, err, argv = self.run(args)
        if rc != 0:
            self.fail(rc, out, err, argv, **extra)
        try:
            return json.loads(out) if out.strip() else {}
        except ValueError:
            return {'output': out}

    def fail(self, rc, out, err, argv, **extra):
        lines = [l for l in err.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith('ctcli: ')]
        msg = (errors[-1] if errors else (lines[-1] if lines else 'ctcli exited %d' % rc))
        self.module.fail_json(msg=msg, rc=rc, stdout=out, stderr=err, cmd=argv, **extra)

    def has_command(self, name):
        if name not in self._has:
            rc, _, _, _ = self.run(['help', name], json_out=False)
            self._has[name] = (rc == 0)
        return self._has[name]

    def initialised(self):
        return os.path.exists(os.path.join(self.root, '.ctcli-init'))

    def release_info(self):
        if not self.initialised():
            return None
        doc = self.call(['release-info'])
        rel = doc.get('release', doc) if isinstance(doc, dict) else None
        if not isinstance(rel, dict) or not rel.get('id'):
            return None
        return rel

    def status(self):
        if not self.initialised():
            return {'release': None, 'apps': []}
        return self.call(['status'])


def summary(rel):
    if not rel:
        return None
    return {'id': rel.get('id'), 'name': rel.get('name'), 'version': rel.get('version')}


def short(digest):
    return (digest or '')[7:19] if (digest or '').startswith('sha256:') else (digest or '')[:12]


def release_view(rel, apps):
    """The diff mode view of a release: its name, version and each app."""
    if not rel:
        return {}
    view = {'release': '%s %s' % (rel.get('name'), rel.get('version')), 'apps': {}}
    for a in apps:
        view['apps'][a['name']] = '%s %s' % (a.get('version') or '-', short(a.get('digest') or a.get('image')))
    return view


def read_package(module, ctcli, path):
    """(format, manifest bytes or None, release dict, apps list) read from the package."""
    if not os.path.isfile(path):
        module.fail_json(msg="package %s: no such file" % path)
    manifest = None
    meta = None
    versions = {}
    try:
        with tarfile.open(path, 'r|*') as tar:
            for m in tar:
                name = m.name[2:] if m.name.startswith('./') else m.name
                if name == 'manifest.json' and m.isfile():
                    manifest = tar.extractfile(m).read()
                    break
                if name == 'meta.json' and m.isfile():
                    meta = json.loads(tar.extractfile(m).read().decode('utf-8'))
                elif name.startswith('package/apps/') and name.endswith('/version.json') and m.isfile():
                    app = name.split('/')[2]
                    versions[app] = json.loads(tar.extractfile(m).read().decode('utf-8'))
    except (tarfile.TarError, ValueError, OSError):
        # Compression Python does not read (zstd): GNU tar detects it.
        rc, out, err = module.run_command(['tar', '-xOf', path, '--occurrence=1', 'manifest.json'],
                                          binary_data=True, encoding=None)
        if rc != 0:
            module.fail_json(msg="package %s: cannot read its manifest: %s" % (path, err.strip()))
        manifest = out
    if manifest is not None:
        doc = json.loads(manifest.decode('utf-8'))
        rel = doc.get('release', {})
        apps = [{'name': a.get('name'), 'version': a.get('version'),
                 'digest': (a.get('image') or {}).get('digest')} for a in doc.get('apps', [])]
        return 'manifest', manifest, {'name': rel.get('name'), 'version': rel.get('version')}, apps
    if meta is None:
        module.fail_json(msg="package %s: not a ctcli package (no manifest.json, no meta.json)" % path)
    rmeta = meta.get('releaseMeta') or {}
    apps = []
    for name in sorted(versions):
        v = versions[name]
        apps.append({'name': v.get('appName', name), 'version': v.get('imageTag'), 'digest': v.get('imageSha')})
    return 'legacy', None, {'name': rmeta.get('name'), 'version': meta.get('packageVersion')}, apps


def predict_changes(cur, cur_apps, fmt, manifest, prel, papps):
    """Per app changes and whether the package differs, without ctcli plan."""
    old = dict((a['name'], a) for a in cur_apps)
    new = dict((a['name'], a) for a in papps)
    changes = []
    for a in papps:
        o = old.get(a['name'])
        if not o:
            change = 'added'
        elif o.get('digest') != a.get('digest'):
            change = 'changed'
        else:
            change = 'unchanged'
        changes.append({'name': a['name'], 'change': change,
                        'old_version': o.get('version') if o else None, 'new_version': a.get('version'),
                        'old_image': o.get('digest') if o else None, 'new_image': a.get('digest')})
    for a in cur_apps:
        if a['name'] not in new:
            changes.append({'name': a['name'], 'change': 'removed', 'old_version': a.get('version'),
                            'new_version': None, 'old_image': a.get('digest'), 'new_image': None})
    if fmt == 'manifest':
        # A release id ends with 8 hex of its manifest's sha256.
        same = cur['id'].endswith('-' + hashlib.sha256(manifest).hexdigest()[:8])
    else:
        same = (all(c['change'] == 'unchanged' for c in changes)
                and cur.get('version') == prel.get('version'))
    return changes, not same


def present(module, ctcli):
    p = module.params
    pkg = p['package']
    if not pkg:
        module.fail_json(msg="state=present needs package")
    if not os.path.isfile(pkg):
        module.fail_json(msg="package %s: no such file" % pkg)
    cur = ctcli.release_info()
    result = {'previous': summary(cur)}
    fmt, manifest, prel, papps = read_package(module, ctcli, pkg)
    after_view = {'release': '%s %s' % (prel.get('name'), prel.get('version')),
                  'apps': dict((a['name'], '%s %s' % (a.get('version') or '-', short(a.get('digest'))))
                               for a in papps)}
    if cur is None:
        action = 'install'
        changes = [{'name': a['name'], 'change': 'added', 'old_version': None, 'new_version': a.get('version'),
                    'old_image': None, 'new_image': a.get('digest')} for a in papps]
        differs = True
    else:
        cur_apps = cur.get('apps') or []
        changes = None
        differs = None
        if ctcli.has_command('plan'):
            doc = ctcli.call(['plan', pkg])
            if isinstance(doc, dict) and isinstance(doc.get('changes'), list):
                changes = doc['changes']
                frm, to = doc.get('from') or {}, doc.get('to') or {}
                differs = (any(c.get('change') != 'unchanged' for c in changes)
                           or frm.get('version') != to.get('version') or frm.get('name') != to.get('name'))
        if changes is None:
            changes, differs = predict_changes(cur, cur_apps, fmt, manifest, prel, papps)
        action = 'upgrade' if differs else 'none'
    result.update(action=action, changes=changes, changed=differs)
    if differs:
        result['diff'] = {'before': release_view(cur, cur.get('apps') or []) if cur else {},
                          'after': after_view,
                          'before_header': '%s (%s)' % (p['root'], cur['id'] if cur else 'no release'),
                          'after_header': '%s (%s)' % (p['root'], os.path.basename(pkg))}
    if differs and not module.check_mode:
        if action == 'install':
            if not ctcli.initialised():
                ctcli.call(['init'])
            result['result'] = ctcli.call(['-y', 'install', pkg], **result)
        else:
            args = ['-y', 'upgrade']
            if p['keep'] is not None:
                args += ['--keep', str(p['keep'])]
            result['result'] = ctcli.call(args + [pkg], **result)
    st = ctcli.status()
    result['release'] = st.get('release') if not module.check_mode else summary(cur)
    result['apps'] = st.get('apps', [])
    return result


def apps_state(module, ctcli, want):
    p = module.params
    st = ctcli.status()
    rel = st.get('release')
    if not rel:
        module.fail_json(msg="no release installed in %s" % p['root'])
    names = [a['name'] for a in st.get('apps', [])]
    for n in p['apps']:
        if n not in names:
            module.fail_json(msg="no app '%s' in release %s (apps: %s)" % (n, rel.get('id'), ', '.join(names)))
    targets = p['apps'] or names
    running = dict((a['name'], a.get('state') in ('running', 'paused')) for a in st.get('apps', []))
    todo = [n for n in targets if running.get(n) != (want == 'started')]
    result = {'previous': rel, 'changed': bool(todo),
              'action': ('start' if want == 'started' else 'stop') if todo else 'none'}
    if todo:
        before = dict((a['name'], a.get('state')) for a in st.get('apps', []))
        after = dict(before)
        for n in todo:
            after[n] = 'running' if want == 'started' else 'stopped'
        result['diff'] = {'before': before, 'after': after}
        if not module.check_mode:
            cmd = 'start' if want == 'started' else 'stop'
            args = [cmd] + (todo if p['apps'] else [])
            result['result'] = ctcli.call(args, **result)
            st = ctcli.status()
    result['release'] = st.get('release')
    result['apps'] = st.get('apps', [])
    return result


def absent(module, ctcli):
    p = module.params
    cur = ctcli.release_info()
    result = {'previous': summary(cur), 'changed': cur is not None, 'action': 'delete' if cur else 'none',
              'release': None, 'apps': []}
    if cur is not None:
        result['diff'] = {'before': release_view(cur, cur.get('apps') or []), 'after': {}}
        if not module.check_mode:
            args = ['-y', 'delete'] + (['--purge'] if p['purge'] else [])
            result['result'] = ctcli.call(args, **result)
        else:
            result['release'] = summary(cur)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            package=dict(type='path'),
            state=dict(type='str', default='present', choices=['present', 'started', 'stopped', 'absent']),
            apps=dict(type='list', elements='str', default=[]),
            binary=dict(type='str', default='ctcli'),
            keep=dict(type='int'),
            purge=dict(type='bool', default=False),
            hook_timeout=dict(type='int'),
        ),
        required_if=[('state', 'present', ['package'])],
        supports_check_mode=True,
    )
    ctcli = Ctcli(module)
    state = module.params['state']
    if state == 'present':
        result = present(module, ctcli)
    elif state in ('started', 'stopped'):
        result = apps_state(module, ctcli, state)
    else:
        result = absent(module, ctcli)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
