-- The Ansible collection ctcli.host and ansible/playbooks/rolling-upgrade.yml,
-- run for real by ansible-playbook against three hosts that are three roots
-- on this machine (ansible_connection: local): check mode, a clean rolling
-- upgrade, idempotence, and a post_upgrade hook failing on the second host.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

local function have(cmd)
  local r = ct.proc.run({ "sh", "-c", "command -v " .. cmd })
  return r and r.code == 0
end

describe("Ansible ctcli.host.ctcli_release and the rolling upgrade", function()
  local dir, roots, v1, v2, v3

  -- playbook(pkg, extra args) -> result, the recap {host = {ok=, changed=, failed=}}
  local function playbook(pkg, extra)
    local hosts = {}
    for i, root in ipairs(roots) do hosts["host" .. i] = { ctcli_root = root } end
    local inv = dir .. "/inventory.json"
    assert(ct.fs.write_atomic(inv, json.encode({
      all = {
        vars = {
          ansible_connection = "local",
          ansible_python_interpreter = "/usr/bin/python3",
          ctcli_binary = H.bin,
        },
        children = { fleet = { hosts = hosts } },
      },
    })))
    local argv = { "ansible-playbook", "-i", inv, H.src .. "/ansible/playbooks/rolling-upgrade.yml",
      "-e", "ctcli_package=" .. pkg, "-e", "ctcli_hosts=fleet" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local r = assert(ct.proc.run(argv, {
      cwd = dir, timeout = 600,
      env_add = {
        ANSIBLE_COLLECTIONS_PATH = H.src .. "/ansible/collections",
        ANSIBLE_HOME = dir .. "/ansible-home",
        ANSIBLE_LOCAL_TEMP = dir .. "/ansible-local-tmp",
        ANSIBLE_REMOTE_TEMP = dir .. "/ansible-remote-tmp",
        ANSIBLE_CONFIG = dir .. "/no-ansible.cfg",
        ANSIBLE_STDOUT_CALLBACK = "default",
        ANSIBLE_NOCOLOR = "1",
        ANSIBLE_RETRY_FILES_ENABLED = "False",
        ANSIBLE_LOCALHOST_WARNING = "False",
        ANSIBLE_DEPRECATION_WARNINGS = "False",
      },
    }))
    local recap = {}
    for host, ok, changed, unreachable, failed in r.stdout:gmatch(
        "\n(host%d)%s+: ok=(%d+)%s+changed=(%d+)%s+unreachable=(%d+)%s+failed=(%d+)") do
      recap[host] = { ok = tonumber(ok), changed = tonumber(changed), failed = tonumber(failed) + tonumber(unreachable) }
    end
    assert(next(recap), "no PLAY RECAP from ansible-playbook:\n" .. r.stdout .. r.stderr)
    return r, recap
  end

  local function version(root)
    return H.json(root, { "release-info" }).release.version
  end

  -- the playbook's final status line of a host
  local function final(r, host)
    return r.stdout:match('"msg": "(' .. host .. ': [^"\n]*)"')
  end

  lazy_setup(function()
    H.need_root()
    if not have("ansible-playbook") then
      if os.getenv("CI") == "true" then error("ansible-playbook is missing (scripts/install-deps.sh installs ansible-core)") end
      io.stderr:write("SKIP: ansible-playbook is not installed (apt-get install ansible-core)\n")
      os.exit(77)
    end
    dir = H.tmpdir()
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:mark=v1" })
    v2 = H.package({ "--format", "manifest", "--version", "2.0.0", "--app", "web:mark=v2" })
    v3 = H.package({ "--format", "manifest", "--version", "3.0.0", "--app", "web:mark=v3" })
    roots = {}
    for i = 1, 3 do
      roots[i] = H.root()
      H.ok(roots[i], { "-y", "install", v1 })
    end
  end)
  lazy_teardown(H.cleanup)

  it("changes nothing in check mode, and says what it would do", function()
    local before = {}
    for i, root in ipairs(roots) do before[i] = H.root_hash(root) end
    local r, doc = playbook(v2, { "--check", "--diff" })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    for i, root in ipairs(roots) do
      assert.equals(before[i], H.root_hash(root), root .. " changed in check mode")
      assert.equals("1.0.0", version(root))
      local host = "host" .. i
      assert.equals(1, doc[host].changed, host)
      -- the action it would take, and the release still there
      local line = final(r, host)
      assert.truthy(line and line:find(host .. ": upgrade; release ", 1, true), line)
      assert.truthy(line:find("web running 1.0.0", 1, true), line)
    end
  end)

  it("upgrades every host, one at a time", function()
    local r, doc = playbook(v2)
    assert.equals(0, r.code, r.stdout .. r.stderr)
    for i, root in ipairs(roots) do
      assert.equals("2.0.0", version(root))
      local st = H.json(root, { "status" })
      assert.equals("running", st.apps[1].state)
      assert.equals(1, doc["host" .. i].changed)
      assert.equals(0, doc["host" .. i].failed)
      assert.truthy(final(r, "host" .. i):find("web running 2.0.0", 1, true))
    end
    -- serial: 1, each host its own batch, in inventory order
    local _, batches = r.stdout:gsub("\nPLAY %[Rolling upgrade with ctcli%]", "")
    assert.equals(3, batches)
    local p1, p2, p3 = r.stdout:find("host1: upgrade", 1, true), r.stdout:find("host2: upgrade", 1, true),
      r.stdout:find("host3: upgrade", 1, true)
    assert.truthy(p1 < p2 and p2 < p3)
  end)

  it("is idempotent: the same package again changes nothing", function()
    local ids = {}
    for i, root in ipairs(roots) do ids[i] = H.json(root, { "release-info" }).release.id end
    local r, doc = playbook(v2)
    assert.equals(0, r.code, r.stdout .. r.stderr)
    for i, root in ipairs(roots) do
      assert.equals(0, doc["host" .. i].changed, "host" .. i)
      assert.truthy(final(r, "host" .. i):find("host" .. i .. ": none;", 1, true))
      assert.equals(ids[i], H.json(root, { "release-info" }).release.id)
    end
  end)

  it("stops at the host whose post_upgrade fails: rolled back there, the next one untouched", function()
    assert(ct.fs.write_atomic(roots[2] .. "/hooks/web.lua",
      'return { post_upgrade = function(ctx) ctx.fail("smoke test failed") end }\n'))
    local third = H.root_hash(roots[3])
    local r, doc = playbook(v3)
    assert.not_equals(0, r.code)
    assert.equals("3.0.0", version(roots[1]))
    assert.equals("2.0.0", version(roots[2]))
    assert.equals("running", H.json(roots[2], { "status" }).apps[1].state)
    assert.equals("2.0.0", version(roots[3]))
    assert.equals(third, H.root_hash(roots[3]))
    assert.equals(0, doc.host1.failed)
    assert.equals(1, doc.host2.failed)
    assert.is_nil(doc.host3)
    -- the task fails with ctcli's one-line error
    local fatal = r.stdout:match("fatal: %[host2%]: FAILED! => (%b{})")
    local res = assert(json.decode(fatal), r.stdout)
    assert.truthy(res.msg:find("smoke test failed", 1, true), res.msg)
    assert.truthy(res.msg:find("^ctcli: "), res.msg)
    assert.is_nil(res.msg:find("\n", 1, true))
    assert.equals(1, res.rc)
  end)

  -- module(host, args, opts) -> result, the module's JSON result, through
  -- an ad-hoc `ansible` run; opts.check, opts.bin (another ctcli)
  local function module(host, args, opts)
    opts = opts or {}
    local kv = {}
    for k, v in pairs(args) do kv[#kv + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v)) end
    table.sort(kv)
    kv[#kv + 1] = "binary=" .. (opts.bin or H.bin)
    local argv = { "ansible", host, "-i", dir .. "/inventory.json", "-m", "ctcli.host.ctcli_release",
      "-a", table.concat(kv, " ") }
    if opts.check then argv[#argv + 1] = "--check" end
    if opts.diff then argv[#argv + 1] = "--diff" end
    local r = assert(ct.proc.run(argv, { cwd = dir, timeout = 300, env_add = {
      ANSIBLE_COLLECTIONS_PATH = H.src .. "/ansible/collections",
      ANSIBLE_HOME = dir .. "/ansible-home",
      ANSIBLE_LOCAL_TEMP = dir .. "/ansible-local-tmp",
      ANSIBLE_REMOTE_TEMP = dir .. "/ansible-remote-tmp",
      ANSIBLE_CONFIG = dir .. "/no-ansible.cfg",
      ANSIBLE_NOCOLOR = "1",
      ANSIBLE_LOCALHOST_WARNING = "False",
    } }))
    -- with --diff, the diff comes first and the result last
    local body = r.stdout:match("\n?" .. host .. " | %u+!? => ({.*})%s*$")
    local res = body and json.decode(body)
    assert(type(res) == "table", "no module result:\n" .. r.stdout .. r.stderr)
    return r, res
  end

  it("module: without 'plan' it decides from the package; started, stopped, absent", function()
    -- a ctcli that has no plan command, as before it existed
    local old = dir .. "/ctcli-without-plan"
    assert(ct.fs.write_atomic(old, "#!/bin/sh\n" ..
      "for a in \"$@\"; do [ \"$a\" = plan ] && { echo \"ctcli: unknown command 'plan'\" >&2; exit 2; }; done\n" ..
      "exec '" .. H.bin .. "' \"$@\"\n", tonumber("755", 8)))
    local root = roots[1]
    local _, res = module("host1", { root = root, package = v3 }, { bin = old })
    assert.is_false(res.changed)
    assert.equals("none", res.action)
    local before = H.root_hash(root)
    _, res = module("host1", { root = root, package = v2 }, { bin = old, check = true })
    assert.is_true(res.changed)
    assert.equals("upgrade", res.action)
    assert.equals("changed", res.changes[1].change)
    assert.equals(before, H.root_hash(root))

    _, res = module("host1", { root = root, state = "stopped" })
    assert.is_true(res.changed)
    assert.equals("stopped", H.json(root, { "status" }).apps[1].state)
    _, res = module("host1", { root = root, state = "stopped" })
    assert.is_false(res.changed)
    _, res = module("host1", { root = root, state = "started", apps = { "web" } })
    assert.is_true(res.changed)
    assert.equals("running", H.json(root, { "status" }).apps[1].state)
    _, res = module("host1", { root = root, state = "started" })
    assert.is_false(res.changed)
    local r
    r, res = module("host1", { root = root, state = "started", apps = { "nope" } })
    assert.not_equals(0, r.code)
    assert.truthy(res.msg:find("no app 'nope'", 1, true))

    before = H.root_hash(root)
    _, res = module("host1", { root = root, state = "absent" }, { check = true })
    assert.is_true(res.changed)
    assert.equals(before, H.root_hash(root))
    _, res = module("host1", { root = root, state = "absent" })
    assert.is_true(res.changed)
    assert.is_nil(H.json(root, { "release-info" }).release)
    _, res = module("host1", { root = root, state = "absent" })
    assert.is_false(res.changed)

    -- the original package layout: install, then the same package is no change
    local legacy = H.package({ "--version", "4.0.0", "--app", "web:mark=v4" })
    _, res = module("host1", { root = root, package = legacy }, { bin = old })
    assert.is_true(res.changed)
    assert.equals("install", res.action)
    assert.equals("4.0.0", version(root))
    _, res = module("host1", { root = root, package = legacy }, { bin = old })
    assert.is_false(res.changed)
    _, res = module("host1", { root = root, package = legacy })
    assert.is_false(res.changed)
  end)
  it("module: restarted restarts every time (only the named apps with apps), check mode restarts nothing", function()
    local root = H.root()
    H.ok(root, { "-y", "install", H.package({ "--format", "manifest", "--version", "5.0.0",
      "--app", "web:mark=v5", "--app", "worker:mark=w5" }) })
    local function pids()
      local out = {}
      for _, a in ipairs(H.json(root, { "status" }).apps) do out[a.name] = a.pid end
      return out
    end
    local p0 = pids()
    local _, res = module("host1", { root = root, state = "restarted" }, { check = true })
    assert.is_true(res.changed)
    assert.equals("restart", res.action)
    assert.same(p0, pids())
    _, res = module("host1", { root = root, state = "restarted", apps = { "web" } })
    assert.is_true(res.changed)
    assert.same({ "web" }, res.result.restarted)
    local p1 = pids()
    assert.not_equals(p0.web, p1.web)
    assert.equals(p0.worker, p1.worker)
    -- again: a restart is an act, so again a change
    _, res = module("host1", { root = root, state = "restarted" })
    assert.is_true(res.changed)
    local p2 = pids()
    assert.not_equals(p1.web, p2.web)
    assert.not_equals(p1.worker, p2.worker)
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("running", a.state) end
    -- a stopped app is started by a restart
    H.ok(root, { "stop", "worker" })
    _, res = module("host1", { root = root, state = "restarted", apps = { "worker" } })
    assert.is_true(res.changed)
    assert.equals("running", H.app_state(root, "worker").state)
  end)

  it("module: wait waits for another command holding the root's lock; without it the task fails at once", function()
    local root = H.root()
    H.ok(root, { "-y", "install", v1 })
    local lock = root .. "/state/lock"
    -- another holder of the root's lock (flock(2) on the same file, as ctcli takes it) until
    -- told to let go (a file appears), then for 1.5 s more: no timing a loaded machine can miss
    local go = H.tmpdir() .. "/go"
    local holder = assert(ct.proc.spawn({ "flock", lock, "sh", "-c",
      "while [ ! -e " .. go .. " ]; do sleep 0.1; done; sleep 1.5" }, { stdout = "null", stderr = "null" }))
    assert.truthy(H.wait_for(function()
      return ct.proc.run({ "flock", "-n", lock, "true" }).code ~= 0
    end, 10), "the lock was not taken")
    local pid0 = H.json(root, { "status" }).apps[1].pid
    local r, res = module("host1", { root = root, state = "restarted" })
    assert.not_equals(0, r.code)
    assert.truthy(res.msg:find("holds the root's lock", 1, true), res.msg)
    assert.equals(pid0, H.json(root, { "status" }).apps[1].pid)
    assert(ct.fs.write_atomic(go, ""))
    local t0 = ct.time.monotonic()
    r, res = module("host1", { root = root, state = "restarted", wait = 60 })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.is_true(res.changed)
    assert.truthy(ct.time.monotonic() - t0 > 1, "it did not wait")
    assert.equals(0, holder:wait(30))
    holder:close()
    assert.not_equals(pid0, H.json(root, { "status" }).apps[1].pid)
  end)

  it("module: the diff names the releases by id, and after carries each app's digest", function()
    local root = H.root()
    H.ok(root, { "-y", "install", v1 })
    local before = H.json(root, { "release-info" })
    local plan = H.json(root, { "plan", v2 })
    local want = plan.changes[1].new_digest
    assert.truthy(want:match("^sha256:%x+$"))
    -- check mode: the planned release, no id yet
    local r = module("host1", { root = root, package = v2 }, { check = true, diff = true })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find('"release": "' .. before.release.id .. '"', 1, true), r.stdout)
    assert.truthy(r.stdout:find('"digest": "' .. before.apps[1].digest .. '"', 1, true), r.stdout)
    assert.truthy(r.stdout:find('"digest": "' .. want .. '"', 1, true), r.stdout)
    local _, res = module("host1", { root = root, package = v2 })
    local after = H.json(root, { "release-info" })
    assert.equals(after.release.id, res.release.id)
    assert.equals(before.release.id, res.previous.id)
    assert.equals(want, after.apps[1].digest)
    -- the real run: the new release's id and digests
    H.ok(root, { "-y", "rollback" })
    r = module("host1", { root = root, package = v2 }, { diff = true })
    local now = H.json(root, { "release-info" })
    assert.truthy(r.stdout:find('"release": "' .. now.release.id .. '"', 1, true), r.stdout)
    assert.truthy(r.stdout:find('"digest": "' .. want .. '"', 1, true), r.stdout)
  end)

  it("passes its offline checks: unit tests, ansible-doc and ansible-test sanity", function()
    local coll = H.src .. "/ansible/collections/ansible_collections/ctcli/host"
    -- the system Python, which has Debian's ansible-core
    local r = assert(ct.proc.run({ "/usr/bin/python3", "-m", "unittest", "discover", "-s", coll .. "/tests/unit/plugins/modules" },
      { timeout = 120, env_add = { PYTHONPATH = H.src .. "/ansible/collections", PYTHONDONTWRITEBYTECODE = "1" } }))
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("\nOK", 1, false), r.stderr)
    r = assert(ct.proc.run({ "ansible-doc", "--json", "ctcli.host.ctcli_release" }, { timeout = 120, env_add = {
      ANSIBLE_COLLECTIONS_PATH = H.src .. "/ansible/collections", ANSIBLE_HOME = dir .. "/ansible-home" } }))
    assert.equals(0, r.code, r.stderr)
    local doc = json.decode(r.stdout)["ctcli.host.ctcli_release"].doc
    assert.truthy(doc.options.wait)
    assert.truthy(doc.options.state.choices)
    -- ansible-test on a copy (it writes tests/output into the collection);
    -- the tests that install checkers from PyPI cannot run offline.
    local copy = dir .. "/sanity/ansible_collections/ctcli"
    assert(ct.fs.mkdir(copy, 493, true))
    assert.equals(0, assert(ct.proc.run({ "cp", "-r", coll, copy .. "/host" })).code)
    r = assert(ct.proc.run({ "ansible-test", "sanity", "--python", "3.11",
      "--skip-test", "ansible-doc", "--skip-test", "import", "--skip-test", "pep8", "--skip-test", "pylint",
      "--skip-test", "runtime-metadata", "--skip-test", "validate-modules", "--skip-test", "yamllint" },
      { cwd = copy .. "/host", timeout = 600, env_add = { ANSIBLE_HOME = dir .. "/ansible-home" } }))
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find('Running sanity test "shebang"', 1, true), r.stdout)
  end)
  it("verifies the package first when ctcli_verify is true", function()
    -- hosts trust key a; a package signed with key b fails verification on
    -- host1, before any host is upgraded
    H.ok(nil, { "keygen", dir .. "/a" })
    H.ok(nil, { "keygen", dir .. "/b" })
    for _, root in ipairs(roots) do
      assert(ct.fs.write_atomic(root .. "/trusted-keys/a.pub", assert(ct.fs.read(dir .. "/a.pub"))))
    end
    ct.fs.unlink(roots[2] .. "/hooks/web.lua")
    local bad, good = dir .. "/v3-b.tar.gz", dir .. "/v3-a.tar.gz"
    H.ok(nil, { "sign", v3, "--key", dir .. "/b.key", "-o", bad })
    H.ok(nil, { "sign", v3, "--key", dir .. "/a.key", "-o", good })
    local before = {}
    for i, root in ipairs(roots) do before[i] = H.root_hash(root) end
    local r, recap = playbook(bad, { "-e", "ctcli_verify=true" })
    assert.not_equals(0, r.code)
    assert.truthy(r.stdout:find("TASK [Verify the package's signature]", 1, true))
    assert.equals(1, recap.host1.failed)
    assert.is_nil(recap.host2)
    for i, root in ipairs(roots) do assert.equals(before[i], H.root_hash(root)) end
    -- host1 holds 4.0.0 (the module test above): v3 is a downgrade there,
    -- refused unless allowed, in check mode too
    local mr, res = module("host1", { root = roots[1], package = good }, { check = true })
    assert.not_equals(0, mr.code)
    assert.truthy(res.msg:find("refusing a downgrade: release version 3.0.0 is lower than the installed 4.0.0", 1, true),
      res.msg)
    -- signed with the trusted key: verified on every host (in check mode, so
    -- the upgrade itself is only predicted)
    r, recap = playbook(good, { "-e", "ctcli_verify=true", "-e", "ctcli_allow_downgrade=true", "--check" })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    local _, verified = r.stdout:gsub("TASK %[Verify the package's signature%] %**\nok: %[host%d%]", "")
    assert.equals(3, verified)
    for i, root in ipairs(roots) do
      assert.equals(1, recap["host" .. i].changed)
      assert.equals(before[i], H.root_hash(root))
    end
  end)
end)
