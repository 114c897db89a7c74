-- The release lifecycle end to end on real runc containers, with packages
-- in the original ctcli layout built by mkpkg from busybox-static.
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

local app_state = H.app_state

local log_of = H.log_of

local function wait_log(root, app, text)
  return H.wait_for(function() return log_of(root, app):find(text, 1, true) end, 20)
end

for _, format in ipairs({ "legacy", "manifest" }) do
describe("lifecycle (" .. format .. " packages)", function()
  local v1, v2
  setup(function()
    v1 = H.package({ "--format", format, "--version", "1.0.0", "--app", "web:mark=web-one", "--app", "worker:mark=worker-one" })
    v2 = H.package({ "--format", format, "--version", "1.1.0", "--app", "web:mark=web-two,version=1.1.0",
      "--app", "worker:mark=worker-one,version=1.0.0" })
  end)
  teardown(H.cleanup)

  it("answers reading commands on a root with no release, refuses changing ones, stops and deletes nothing", function()
    local root = H.root()
    assert.truthy(H.ok(root, { "status" }):find("no release installed", 1, true))
    assert.same({}, H.json(root, { "status" }).apps)
    H.ok(root, { "release-info" })
    H.ok(root, { "list-releases" })
    for _, cmd in ipairs({ { "start" }, { "backup" }, { "upgrade", v2 }, { "logs", "web" } }) do
      local r = H.ctcli(root, cmd)
      assert.equals(1, r.code, cmd[1])
      assert.truthy(r.stderr:find("install PKG", 1, true), r.stderr)
    end
    -- stop and delete are idempotent: nothing runs, nothing to remove
    assert.truthy(H.ok(root, { "stop" }):find("nothing to stop", 1, true))
    assert.truthy(H.ok(root, { "-y", "delete" }):find("nothing to delete", 1, true))
  end)

  it("installs, starts the apps and reports them running", function()
    local root = H.root()
    local out = H.ok(root, { "install", v1 })
    assert.truthy(out:find("installed", 1, true))
    local st = H.json(root, { "status" })
    assert.equals(2, #st.apps)
    for _, a in ipairs(st.apps) do
      assert.equals("running", a.state, a.name)
      assert.truthy(a.pid > 0)
      assert.truthy(a.digest:match("^sha256:"))
    end
    assert.truthy(wait_log(root, "web", "web-one"))
    -- the config was seeded from the image and the data path bound
    assert.truthy(ct.fs.read(root .. "/config/web/etc/web/app.conf"):find("greeting", 1, true))
    assert.truthy(H.wait_for(function() return ct.fs.exists(root .. "/data/web/var/lib/web/starts.log") end, 20))
    -- the zero backup
    local list = H.json(root, { "list-releases" })
    assert.equals(1, #list.releases)
    assert.is_true(list.releases[1].current)
    assert.equals(1, #list.backups)
    -- a second install is refused
    local r = H.ctcli(root, { "install", v1 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("use 'ctcli upgrade", 1, true))
  end)

  it("leaves the root byte-identical when the upgrade is refused", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", v1 })
    local before = H.root_hash(root)
    -- no terminal to ask on and no -y: cancelled (exit 3), with the hint
    local r = H.ctcli(root, { "upgrade", v2 }, { stdin = "y\n" })
    assert.equals(3, r.code)
    assert.truthy(r.stdout:find("changed", 1, true))
    assert.truthy(r.stdout:find("unchanged", 1, true))
    assert.truthy(r.stderr:find("cancelled", 1, true))
    assert.truthy(r.stderr:find("-y", 1, true))
    assert.equals(before, H.root_hash(root))
    r = H.ctcli(root, { "upgrade", v2 })
    assert.equals(3, r.code)
    assert.equals(before, H.root_hash(root))
  end)

  it("upgrades only the changed app; the unchanged one keeps its pid; configs survive", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    assert.truthy(wait_log(root, "web", "web-one"))
    local conf = root .. "/config/web/etc/web/app.conf"
    assert(ct.fs.write_atomic(conf, "greeting=edited by the operator\n"))
    local worker_pid = app_state(root, "worker").pid
    local web_pid = app_state(root, "web").pid
    local out = H.ok(root, { "-y", "upgrade", v2 })
    assert.truthy(out:find("upgraded", 1, true))
    assert.equals(worker_pid, app_state(root, "worker").pid)
    local web = app_state(root, "web")
    assert.equals("running", web.state)
    assert.are_not.equal(web_pid, web.pid)
    assert.equals("1.1.0", web.version)
    assert.truthy(wait_log(root, "web", "web-two"))
    assert.truthy(wait_log(root, "web", "edited by the operator"))
    assert.equals("greeting=edited by the operator\n", ct.fs.read(conf))
    -- the run before is still readable
    assert.truthy(H.ok(root, { "logs", "--previous", "web" }):find("web-one", 1, true))
    -- and after a restart the edit is still there
    H.ok(root, { "restart", "web" })
    assert.equals("greeting=edited by the operator\n", ct.fs.read(conf))
    local info = H.json(root, { "release-info" }).release
    assert.equals("1.1.0", info.version)
    assert.truthy(info.previous:match("^%d+T%d+Z%-%x+$"))
  end)

  it("starts, stops and restarts named apps; an unknown app lists the known ones", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    H.ok(root, { "stop", "worker" })
    assert.equals("stopped", app_state(root, "worker").state)
    assert.equals("running", app_state(root, "web").state)
    local out = H.ok(root, { "start" })
    assert.truthy(out:find("web is already running", 1, true))
    assert.truthy(out:find("started worker", 1, true))
    local r = H.ctcli(root, { "stop", "nope" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("unknown app 'nope'", 1, true))
    assert.truthy(r.stderr:find("web, worker", 1, true) or r.stderr:find("worker, web", 1, true))
    H.ok(root, { "stop" })
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("stopped", a.state) end
  end)

  it("prints the last N lines with --tail and the last N bytes with --bytes", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    assert.truthy(wait_log(root, "web", "web-one"))
    H.ok(root, { "stop", "web" })
    local all = log_of(root, "web")
    local lines = {}
    for l in all:gmatch("[^\n]*\n") do lines[#lines + 1] = l end
    assert.truthy(#lines >= 2)
    assert.equals(lines[#lines - 1] .. lines[#lines], H.ok(root, { "logs", "--tail", "2", "web" }))
    assert.equals(all:sub(-5), H.ok(root, { "logs", "--bytes", "5", "web" }))
    assert.equals(all, H.ok(root, { "logs", "web" }))
  end)

  it("runs a command in the running container and passes its exit status", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local r = H.ctcli(root, { "exec", "web", "cat", "/etc/web/app.conf" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("greeting", 1, true))
    r = H.ctcli(root, { "exec", "web", "sh", "-c", "exit 7" })
    assert.equals(7, r.code)
    -- a stopped app gets a temporary container with its data
    H.ok(root, { "stop", "web" })
    r = H.ctcli(root, { "exec", "web", "cat", "/var/lib/web/starts.log" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(#r.stdout > 0)
    assert.equals("stopped", app_state(root, "web").state)
  end)

  it("passes its own stdin to the command, the app running or stopped", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local r = H.ctcli(root, { "exec", "web", "cat" }, { stdin = "hi from the running app\n" })
    assert.equals(0, r.code, r.stderr)
    assert.equals("hi from the running app\n", r.stdout)
    H.ok(root, { "stop", "web" })
    -- The temporary container once got the word "inherit" as its input.
    r = H.ctcli(root, { "exec", "web", "cat" }, { stdin = "hi\n" })
    assert.equals(0, r.code, r.stderr)
    assert.equals("hi\n", r.stdout)
    r = H.ctcli(root, { "exec", "web", "sh", "-c", "read x; test \"$x\" = two && exit 9" }, { stdin = "two\n" })
    assert.equals(9, r.code, r.stdout .. r.stderr)
    assert.equals("stopped", app_state(root, "web").state)
    assert.same({}, ct.fs.dir(root .. "/tmp"))
  end)

  it("restores data from a backup after it changed", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local data = root .. "/data/web/var/lib/web/records.db"
    assert(ct.fs.write_atomic(data, "precious v1 records\n"))
    local out = H.json(root, { "backup" })
    assert.truthy(ct.fs.exists(out.path))
    assert.is_true(out.data)
    assert(ct.fs.write_atomic(data, "corrupted\n"))
    ct.fs.unlink(root .. "/config/web/etc/web/app.conf")
    H.ok(root, { "-y", "rollback", out.path })
    assert.equals("precious v1 records\n", ct.fs.read(data))
    assert.truthy(ct.fs.exists(root .. "/config/web/etc/web/app.conf"))
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("running", a.state, a.name) end
  end)

  it("rolls back to the previous release and forward again by id", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local first = H.json(root, { "release-info" }).release.id
    H.ok(root, { "-y", "upgrade", v2 })
    local second = H.json(root, { "release-info" }).release.id
    H.ok(root, { "-y", "rollback" })
    assert.equals(first, H.json(root, { "release-info" }).release.id)
    assert.equals("1.0.0", app_state(root, "web").version)
    assert.equals("running", app_state(root, "web").state)
    H.ok(root, { "-y", "rollback", second })
    assert.equals(second, H.json(root, { "release-info" }).release.id)
    assert.equals("running", app_state(root, "web").state)
  end)

  it("deletes the release but keeps configs, data and backups", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local r = H.ctcli(root, { "delete" }, { stdin = "y\n" })
    assert.equals(3, r.code)
    H.ok(root, { "-y", "delete" })
    assert.falsy(ct.fs.exists(root .. "/current-release"))
    assert.truthy(ct.fs.exists(root .. "/config/web/etc/web/app.conf"))
    assert.truthy(ct.fs.exists(root .. "/data/web/var/lib/web"))
    assert.equals(1, #H.json(root, { "list-releases" }).backups)
    assert.same({}, H.json(root, { "status" }).apps)
    local list = ct.proc.run({ "runc", "--root", root .. "/runc-root", "list", "-q" })
    assert.equals("", list.stdout)
  end)

  it("refuses a second changing command while one holds the lock, naming it", function()
    local root = H.root()
    local lock = assert(ct.lock.acquire(root .. "/state/lock",
      string.format("pid=%d command=upgrade since=2026-01-01T00:00:00Z\n", ct.proc.getpid())))
    local r = H.ctcli(root, { "install", v1 })
    lock:release()
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("pid " .. ct.proc.getpid(), 1, true))
    assert.truthy(r.stderr:find("command upgrade", 1, true))
  end)
end)
end
