#!/usr/bin/python
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
    layout, from its apps' image digests and versions (its C(packageVersion)
    is the package's format, not the release's version).
  - A failed upgrade (ctcli rolls it back by itself) fails the task with
    ctcli's one-line error.
  - C(state=restarted) restarts the apps (all, or I(apps)) every time it runs,
    as M(ansible.builtin.service) does; it is always a change.
  - Results and diffs name a release by its id (C(<UTC time>-<8 hex of the
    manifest's sha256>)), as C(ctcli release-info) prints it.
  - Reads ctcli's C(--json) output format 1 (ctcli's docs/json.md); a ctcli
    that prints another format fails the task, naming both.
  - Supports check mode (nothing is changed; the result says what would be)
    and diff mode (the release id and every app's version and image digest,
    before and after).
version_added: "0.1.0"
requirements:
  - ctcli on the managed host (the C(ctcli) Debian package puts it in /usr/bin)
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
      - C(restarted) the apps (all, or I(apps)) are restarted (C(ctcli restart)).
      - C(absent) no release is installed (C(ctcli -y delete)).
    type: str
    choices: [present, started, stopped, restarted, absent]
    default: present
  apps:
    description: With C(started), C(stopped) or C(restarted), only these apps.
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
  allow_downgrade:
    description:
      - Upgrade to a package older than the installed release (C(upgrade --allow-downgrade)).
      - Without it, a downgrade fails the task (also in check mode) and changes nothing.
    type: bool
    default: false
  purge:
    description: With C(state=absent), also remove configs, data, logs and backups.
    type: bool
    default: false
  hook_timeout:
    description: Time limit of one hook in seconds (C(--hook-timeout)).
    type: int
  wait:
    description:
      - When another ctcli command holds the root's lock (an upgrade started
        by hand, a systemd timer's log rotation), wait for it up to this many
        seconds (ctcli's global C(--wait)) instead of failing at once.
      - Unset, a held lock fails the task with ctcli's message naming the
        holder.
    type: int
    version_added: "0.2.0"
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

- name: Restart the web app, waiting up to 10 minutes for a running upgrade
  ctcli.host.ctcli_release:
    root: /srv/app
    state: restarted
    apps: [web]
    wait: 600

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
  choices: [install, upgrade, start, stop, restart, delete, none]
  sample: upgrade
release:
  description: The current release after the task (id, name, version), null when none.
  returned: always
  type: dict
  sample: {"id": "20250101T120000Z-1a2b3c4d", "name": "shop", "version": "2.0.0"}
previous:
  description: The release before the task (id, name, version), null when none.
  returned: always
  type: dict
  sample: {"id": "20241201T120000Z-5e6f7a8b", "name": "shop", "version": "1.0.0"}
changes:
  description: Per app, added / changed / removed / unchanged (state=present).
  returned: when state is present
  type: list
  elements: dict
  sample: [{"name": "web", "change": "changed", "old_version": "1.0.0", "new_version": "2.0.0",
            "old_image": "registry.example/web:1.0.0", "new_image": "registry.example/web:2.0.0",
            "old_digest": "sha256:3d3c...", "new_digest": "sha256:77ba..."}]
apps:
  description: ctcli status of each app after the task.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "web", "state": "running", "version": "2.0.0", "image": "registry.example/web:2.0.0",
            "digest": "sha256:77ba..."}]
result:
  description: The JSON ctcli printed for the changing command.
  returned: when changed and not in check mode
  type: dict
  sample: {"format": 1, "restarted": ["web"]}
'''

import hashlib
import json
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule

# The --json output format this module reads (ctcli's docs/json.md).
JSON_FORMAT = 1


def ctcli_argv(binary, root, args, json_out=True, wait=None, hook_timeout=None):
    """The command line of one ctcli call: the global options, then args."""
    argv = [binary, '--root', root, '--no-color']
    if json_out:
        argv.append('--json')
    if wait is not None:
        # One word: an option whose value is optional never takes the next one.
        argv.append('--wait=%d' % wait)
    if hook_timeout is not None:
        argv += ['--hook-timeout', str(hook_timeout)]
    return argv + list(args)


def error_message(rc, out, err):
    """ctcli's one-line error: the JSON error object on stdout (--json), else
    its last 'ctcli: ' line on stderr, else the last line it printed."""
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get('error'), str):
        msg = doc['error']
        return msg if msg.startswith('ctcli: ') else 'ctcli: ' + msg
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('ctcli: ')]
    return errors[-1] if errors else (lines[-1] if lines else 'ctcli exited %d' % rc)


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
        self.wait = p['wait']
        self._has = {}

    def run(self, args, json_out=True):
        argv = ctcli_argv(self.binary, self.root, args, json_out, self.wait, self.hook_timeout)
        rc, out, err = self.module.run_command(argv, environ_update={'NO_COLOR': '1'})
        return rc, out, err, argv

    def call(self, args, **extra):
        """Runs ctcli; fails the task with ctcli's error line unless it exits 0."""
        rc, out, err, argv = self.run(args)
        if rc != 0:
            self.module.fail_json(msg=error_message(rc, out, err), rc=rc, stdout=out, stderr=err, cmd=argv, **extra)
        try:
            doc = json.loads(out) if out.strip() else {}
        except ValueError:
            self.module.fail_json(msg="ctcli %s printed no JSON document" % ' '.join(args), stdout=out, stderr=err,
                                  cmd=argv, **extra)
        if not isinstance(doc, dict) or doc.get('format') != JSON_FORMAT:
            self.module.fail_json(msg="ctcli %s printed --json format %r; this module reads format %d (ctcli's "
                                      "docs/json.md): update the collection or ctcli"
                                      % (' '.join(args), doc.get('format') if isinstance(doc, dict) else None,
                                         JSON_FORMAT), stdout=out, cmd=argv, **extra)
        return doc

    def has_command(self, name):
        if name not in self._has:
            rc, dummy, dummy, dummy = self.run(['help', name], json_out=False)
            self._has[name] = (rc == 0)
        return self._has[name]

    def initialised(self):
        return os.path.exists(os.path.join(self.root, '.ctcli-init'))

    def release_info(self):
        if not self.initialised():
            return None
        doc = self.call(['release-info'])
        rel = doc.get('release')
        if not isinstance(rel, dict) or not rel.get('id'):
            return None
        # The release with its apps beside it, as the diff shows them.
        rel = dict(rel)
        rel['apps'] = doc.get('apps') or []
        return rel

    def status(self):
        if not self.initialised():
            return {'release': None, 'apps': []}
        return self.call(['status'])


def summary(rel):
    if not rel:
        return None
    return {'id': rel.get('id'), 'name': rel.get('name'), 'version': rel.get('version')}


def app_digest(app):
    """An app's image digest: "digest" in release-info, status and a package's
    apps, "new_digest" in a plan's changes (docs/json.md: "image" is the
    reference, never the digest)."""
    for key in ('digest', 'new_digest'):
        v = app.get(key)
        if isinstance(v, str) and v.startswith('sha256:'):
            return v
    return None


def release_view(rel, apps):
    """The diff mode view of a release: its id, name, version and each app's
    version and image digest. rel['id'] is None for a release not made yet."""
    if not rel:
        return {}
    return {
        'release': rel.get('id'),
        'name': rel.get('name'),
        'version': rel.get('version'),
        'apps': dict((a['name'], {'version': a.get('version'), 'digest': app_digest(a)}) for a in apps),
    }


def read_package(module, path):
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
    return parse_package(path, manifest, meta, versions, module.fail_json)


def parse_package(path, manifest, meta, versions, fail):
    """read_package's result from the files read: manifest.json's bytes, or
    the original layout's meta.json and version.json of each app."""
    if manifest is not None:
        doc = json.loads(manifest.decode('utf-8'))
        rel = doc.get('release', {})
        apps = [{'name': a.get('name'), 'version': a.get('version'),
                 'image': (a.get('image') or {}).get('name'),
                 'digest': (a.get('image') or {}).get('digest')} for a in doc.get('apps', [])]
        return 'manifest', manifest, {'name': rel.get('name'), 'version': rel.get('version')}, apps
    if meta is None:
        fail(msg="package %s: not a ctcli package (no manifest.json, no meta.json)" % path)
    # packageVersion is the package's format, not the release's version: a
    # release of the original layout is named by releaseMeta only.
    rmeta = meta.get('releaseMeta') or {}
    apps = []
    for name in sorted(versions):
        v = versions[name]
        apps.append({'name': v.get('appName', name), 'version': v.get('imageTag'), 'image': v.get('image'),
                     'digest': v.get('imageSha')})
    return 'legacy', None, {'name': rmeta.get('id') or rmeta.get('name'), 'version': None}, apps


def predict_changes(cur, cur_apps, fmt, manifest, prel, papps):
    """Per app changes and whether the package differs, without ctcli plan."""
    old = dict((a['name'], a) for a in cur_apps)
    new = dict((a['name'], a) for a in papps)
    changes = []
    for a in papps:
        o = old.get(a['name'])
        if not o:
            change = 'added'
        elif app_digest(o) != a.get('digest') or o.get('version') != a.get('version'):
            change = 'changed'
        else:
            change = 'unchanged'
        changes.append({'name': a['name'], 'change': change,
                        'old_version': o.get('version') if o else None, 'new_version': a.get('version'),
                        'old_image': o.get('image') if o else None, 'new_image': a.get('image'),
                        'old_digest': app_digest(o) if o else None, 'new_digest': a.get('digest')})
    for a in cur_apps:
        if a['name'] not in new:
            changes.append({'name': a['name'], 'change': 'removed', 'old_version': a.get('version'),
                            'new_version': None, 'old_image': a.get('image'), 'new_image': None,
                            'old_digest': app_digest(a), 'new_digest': None})
    if fmt == 'manifest':
        # A release id ends with 8 hex of its manifest's sha256.
        same = cur['id'].endswith('-' + hashlib.sha256(manifest).hexdigest()[:8])
    else:
        same = all(c['change'] == 'unchanged' for c in changes)
    return changes, not same


def planned_view(prel, changes):
    """The diff's "after" before the release exists: no id yet, each app's
    version and digest as the plan (or the package) gives them."""
    apps = [{'name': c['name'], 'version': c.get('new_version'), 'digest': c.get('new_digest')}
            for c in changes if c.get('change') != 'removed']
    return release_view({'id': None, 'name': prel.get('name'), 'version': prel.get('version')}, apps)


def present(module, ctcli):
    p = module.params
    pkg = p['package']
    if not pkg:
        module.fail_json(msg="state=present needs package")
    if not os.path.isfile(pkg):
        module.fail_json(msg="package %s: no such file" % pkg)
    cur = ctcli.release_info()
    result = {'previous': summary(cur)}
    fmt, manifest, prel, papps = read_package(module, pkg)
    if cur is None:
        action = 'install'
        changes = [{'name': a['name'], 'change': 'added', 'old_version': None, 'new_version': a.get('version'),
                    'old_image': None, 'new_image': a.get('image'), 'old_digest': None, 'new_digest': a.get('digest')}
                   for a in papps]
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
                prel = {'name': to.get('name', prel.get('name')), 'version': to.get('version', prel.get('version'))}
                differs = (any(c.get('change') != 'unchanged' for c in changes)
                           or frm.get('version') != to.get('version') or frm.get('name') != to.get('name'))
                if isinstance(doc.get('noop'), bool):
                    # ctcli's own answer: a changed hook file alone is a new release too.
                    differs = not doc['noop']
                if doc.get('downgrade') and not p['allow_downgrade']:
                    module.fail_json(msg="refusing a downgrade: %s (allow_downgrade=true to go ahead)"
                                     % doc['downgrade'], **result)
        if changes is None:
            changes, differs = predict_changes(cur, cur_apps, fmt, manifest, prel, papps)
        action = 'upgrade' if differs else 'none'
    result.update(action=action, changes=changes, changed=differs)
    if differs:
        result['diff'] = {'before': release_view(cur, cur.get('apps') or []) if cur else {},
                          'after': planned_view(prel, changes),
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
            if p['allow_downgrade']:
                args += ['--allow-downgrade']
            result['result'] = ctcli.call(args + [pkg], **result)
        # The release as made: its id, and the digests ctcli unpacked.
        new = ctcli.release_info()
        if new is not None:
            result['diff']['after'] = release_view(new, new.get('apps') or [])
            result['diff']['after_header'] = '%s (%s)' % (p['root'], new['id'])
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
    before = dict((a['name'], a.get('state')) for a in st.get('apps', []))
    if want == 'restarted':
        # Restarted is an act, not a state: every target, every time.
        todo, cmd, after_state = list(targets), 'restart', 'running'
    else:
        running = dict((a['name'], a.get('state') in ('running', 'paused')) for a in st.get('apps', []))
        todo = [n for n in targets if running.get(n) != (want == 'started')]
        cmd = 'start' if want == 'started' else 'stop'
        after_state = 'running' if want == 'started' else 'stopped'
    result = {'previous': rel, 'changed': bool(todo), 'action': cmd if todo else 'none'}
    if todo:
        after = dict(before)
        for n in todo:
            after[n] = after_state
        result['diff'] = {'before': before, 'after': after}
        if not module.check_mode:
            args = [cmd] + (todo if p['apps'] else [])
            result['result'] = ctcli.call(args, **result)
            st = ctcli.status()
            result['diff']['after'] = dict((a['name'], a.get('state')) for a in st.get('apps', []))
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


ARGUMENT_SPEC = dict(
    root=dict(type='path', required=True),
    package=dict(type='path'),
    state=dict(type='str', default='present', choices=['present', 'started', 'stopped', 'restarted', 'absent']),
    apps=dict(type='list', elements='str', default=[]),
    binary=dict(type='str', default='ctcli'),
    keep=dict(type='int'),
    allow_downgrade=dict(type='bool', default=False),
    purge=dict(type='bool', default=False),
    hook_timeout=dict(type='int'),
    wait=dict(type='int'),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[('state', 'present', ['package'])],
        supports_check_mode=True,
    )
    if module.params['wait'] is not None and module.params['wait'] < 0:
        module.fail_json(msg="wait must be 0 or more seconds")
    ctcli = Ctcli(module)
    state = module.params['state']
    if state == 'present':
        result = present(module, ctcli)
    elif state in ('started', 'stopped', 'restarted'):
        result = apps_state(module, ctcli, state)
    else:
        result = absent(module, ctcli)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
