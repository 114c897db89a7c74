# -*- coding: utf-8 -*-
# Unit tests of ctcli.host.ctcli_release that need no host, no ctcli and no
# network: its documentation against its argument spec (the checks of
# ansible-test's validate-modules that matter here), the command lines it
# builds, how it reads ctcli's errors and packages, and its diff.
#
# Run offline with the standard library:
#   PYTHONPATH=ansible/collections /usr/bin/python3 -m unittest discover -v \
#     -s ansible/collections/ansible_collections/ctcli/host/tests/unit/plugins/modules
# or, where ansible-test can install its requirements, `ansible-test units`.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import unittest

import yaml

from ansible_collections.ctcli.host.plugins.modules import ctcli_release as m


class Fail(Exception):
    pass


def fail(**kw):
    raise Fail(kw['msg'])


class TestDocumentation(unittest.TestCase):
    def setUp(self):
        self.doc = yaml.safe_load(m.DOCUMENTATION)
        self.options = self.doc['options']

    def test_every_option_is_documented_with_its_type_default_and_choices(self):
        self.assertEqual(sorted(self.options), sorted(m.ARGUMENT_SPEC))
        for name, spec in m.ARGUMENT_SPEC.items():
            opt = self.options[name]
            self.assertTrue(opt.get('description'), name)
            self.assertEqual(opt.get('type', 'str'), spec.get('type', 'str'), name)
            self.assertEqual(opt.get('default'), spec.get('default'), name)
            self.assertEqual(opt.get('choices'), spec.get('choices'), name)
            self.assertEqual(bool(opt.get('required')), bool(spec.get('required')), name)
            self.assertEqual(opt.get('elements'), spec.get('elements'), name)

    def test_states_include_restarted_and_wait_is_an_option(self):
        self.assertIn('restarted', self.options['state']['choices'])
        self.assertEqual('int', self.options['wait']['type'])

    def test_examples_use_documented_options_only(self):
        for task in yaml.safe_load(m.EXAMPLES):
            args = task['ctcli.host.ctcli_release']
            self.assertLessEqual(set(args), set(self.options), task['name'])
            if 'state' in args:
                self.assertIn(args['state'], self.options['state']['choices'])

    def test_return_values_are_described(self):
        ret = yaml.safe_load(m.RETURN)
        for name, r in ret.items():
            for key in ('description', 'returned', 'type'):
                self.assertIn(key, r, name)

    def test_module_shebang_is_the_one_ansible_rewrites(self):
        with open(m.__file__, 'rb') as f:
            self.assertEqual(b'#!/usr/bin/python\n', f.readline())


class TestArgv(unittest.TestCase):
    def test_global_options_come_before_the_command(self):
        self.assertEqual(['/usr/bin/ctcli', '--root', '/srv/app', '--no-color', '--json', 'status'],
                         m.ctcli_argv('/usr/bin/ctcli', '/srv/app', ['status']))

    def test_wait_is_one_word_so_it_never_takes_the_command(self):
        argv = m.ctcli_argv('ctcli', '/r', ['restart', 'web'], wait=600, hook_timeout=30)
        self.assertEqual(['ctcli', '--root', '/r', '--no-color', '--json', '--wait=600',
                          '--hook-timeout', '30', 'restart', 'web'], argv)
        self.assertIn('--wait=0', m.ctcli_argv('ctcli', '/r', ['stop'], wait=0))
        self.assertNotIn('--json', m.ctcli_argv('ctcli', '/r', ['help', 'plan'], json_out=False))


class TestErrors(unittest.TestCase):
    def test_a_json_error_on_stdout_wins(self):
        out = json.dumps({'format': 1, 'error': 'no release installed'})
        self.assertEqual('ctcli: no release installed', m.error_message(1, out, 'noise\n'))

    def test_the_last_ctcli_line_of_stderr(self):
        err = 'unpacking\nctcli: error: post_upgrade of web failed\n  rolled back\n'
        self.assertEqual('ctcli: error: post_upgrade of web failed', m.error_message(1, '', err))
        self.assertEqual('boom', m.error_message(1, 'not json', 'x\nboom\n'))
        self.assertEqual('ctcli exited 3', m.error_message(3, '', ''))


D1 = 'sha256:' + '1' * 64
D2 = 'sha256:' + '2' * 64


class TestPackages(unittest.TestCase):
    def test_a_manifest_package(self):
        manifest = json.dumps({'release': {'name': 'shop', 'version': '2.0.0'},
                               'apps': [{'name': 'web', 'version': '2.0.0',
                                         'image': {'name': 'registry.example/web:2.0.0', 'digest': D2}}]}).encode()
        fmt, raw, rel, apps = m.parse_package('p', manifest, None, {}, fail)
        self.assertEqual('manifest', fmt)
        self.assertEqual(manifest, raw)
        self.assertEqual({'name': 'shop', 'version': '2.0.0'}, rel)
        self.assertEqual([{'name': 'web', 'version': '2.0.0', 'image': 'registry.example/web:2.0.0', 'digest': D2}],
                         apps)

    def test_a_legacy_package_is_not_named_by_its_package_version(self):
        meta = {'packageVersion': '7', 'releaseMeta': {'id': 'shop-2024.12', 'name': 'shop'}}
        versions = {'web': {'appName': 'web', 'imageTag': '1.2', 'imageSha': D1}}
        fmt, raw, rel, apps = m.parse_package('p', None, meta, versions, fail)
        self.assertEqual('legacy', fmt)
        self.assertIsNone(raw)
        self.assertEqual({'name': 'shop-2024.12', 'version': None}, rel)
        self.assertEqual([{'name': 'web', 'version': '1.2', 'image': None, 'digest': D1}], apps)

    def test_not_a_package(self):
        self.assertRaises(Fail, m.parse_package, 'p', None, None, {}, fail)


class TestChanges(unittest.TestCase):
    cur_apps = [{'name': 'web', 'version': '1.2', 'digest': D1}]

    def test_legacy_same_apps_is_no_change_whatever_the_package_version(self):
        cur = {'id': '20250101T000000Z-00000000', 'version': '1'}
        changes, differs = m.predict_changes(cur, self.cur_apps, 'legacy', None, {'name': 'x', 'version': None},
                                             [{'name': 'web', 'version': '1.2', 'digest': D1}])
        self.assertFalse(differs)
        self.assertEqual('unchanged', changes[0]['change'])

    def test_legacy_another_digest_added_and_removed_apps(self):
        cur = {'id': '20250101T000000Z-00000000'}
        changes, differs = m.predict_changes(cur, self.cur_apps, 'legacy', None, {},
                                             [{'name': 'web', 'version': '1.3', 'digest': D2},
                                              {'name': 'worker', 'version': '1', 'digest': D1}])
        self.assertTrue(differs)
        self.assertEqual({'web': 'changed', 'worker': 'added'}, dict((c['name'], c['change']) for c in changes))
        # the plan's names (docs/json.md): digests in *_digest, references in *_image
        self.assertEqual((D1, D2), (changes[0]['old_digest'], changes[0]['new_digest']))
        changes, differs = m.predict_changes(cur, self.cur_apps, 'legacy', None, {}, [])
        self.assertEqual('removed', changes[0]['change'])
        self.assertTrue(differs)

    def test_manifest_same_when_the_release_id_ends_with_its_hash(self):
        manifest = b'{"release": {}}'
        cur = {'id': '20250101T000000Z-' + hashlib.sha256(manifest).hexdigest()[:8]}
        dummy, differs = m.predict_changes(cur, self.cur_apps, 'manifest', manifest, {}, [])
        self.assertFalse(differs)
        dummy, differs = m.predict_changes(cur, self.cur_apps, 'manifest', manifest + b' ', {}, [])
        self.assertTrue(differs)


class TestDiff(unittest.TestCase):
    def test_before_names_the_release_by_id_with_each_digest(self):
        rel = {'id': '20250101T000000Z-1a2b3c4d', 'name': 'shop', 'version': '1.0.0'}
        apps = [{'name': 'web', 'version': '1.0.0', 'digest': D1, 'image': 'web'}]
        self.assertEqual({'release': rel['id'], 'name': 'shop', 'version': '1.0.0',
                          'apps': {'web': {'version': '1.0.0', 'digest': D1}}}, m.release_view(rel, apps))
        # "image" is the reference (docs/json.md): never taken for the digest
        self.assertIsNone(m.release_view(rel, [{'name': 'web', 'image': 'web'}])['apps']['web']['digest'])
        self.assertEqual({}, m.release_view(None, []))

    def test_after_carries_the_new_digests(self):
        changes = [{'name': 'web', 'change': 'changed', 'new_version': '2.0.0', 'new_image': 'web', 'new_digest': D2},
                   {'name': 'old', 'change': 'removed', 'new_version': None, 'new_image': None, 'new_digest': None}]
        view = m.planned_view({'name': 'shop', 'version': '2.0.0'}, changes)
        self.assertIsNone(view['release'])
        self.assertEqual({'web': {'version': '2.0.0', 'digest': D2}}, view['apps'])


if __name__ == '__main__':
    unittest.main()
