-- The container→host boundary, played as an attacker inside the container
-- would (issue 11): every attack is planted from inside a real container in
-- the trees bound into it, then every host-side command runs against them
-- all. Each command either works on the app's own files or refuses with one
-- clear line; a canary outside the root is never opened or changed
-- (inotify watches it for the whole spec).
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- refused(r, what): exit 1, one line on stderr that names what.
local function refused(r, what, cmd)
  assert.equals(1, r.code, cmd .. " should have refused:\n" .. r.stdout .. r.stderr)
  assert.equals(1, lines(r.stderr), cmd .. " should refuse with one line, got:\n" .. r.stderr)
  assert.truthy(r.stderr:find(what, 1, true), cmd .. ": " .. r.stderr)
end

local function ok(root, args, opts)
  local r = H.ctcli(root, args, opts)
  assert.equals(0, r.code, table.concat(args, " ") .. " failed:\n" .. r.stdout .. r.stderr)
  return r
end

-- plant(root, script): run script inside the app's container (the running
-- one, or a temporary one when it is stopped), as the app would.
local function plant(root, script)
  ok(root, { "exec", "web", "sh", "-c", script })
end

local function runc_state(root, app)
  local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", H.container_id(root, app) })
  return r and r.code == 0 and json.decode(r.stdout) or nil
end

-- kill_app(root): the container's init killed from outside (a crash, a
-- reboot), waited for until runc sees it stopped.
-- kill_app(root): the app's monitor, then its container die (a crash of
-- the host, say): nothing restarts it on its own.
local function kill_app(root)
  H.kill_monitors(root)
  local st = assert(runc_state(root, "web"))
  ct.proc.kill(st.pid, ct.proc.signals.KILL)
  assert.truthy(H.wait_for(function()
    local s = runc_state(root, "web")
    return s and s.status == "stopped"
  end, 10))
end

describe("breakout", function()
  local root, canary, watcher, events, canary_hash
  local pkg1, pkg2

  setup(function()
    pkg1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:mark=web-one,heartbeat=1" })
    -- release 2 declares a data path inside the one of release 1, which
    -- the app can prepare while release 1 runs
    pkg2 = H.package({ "--format", "manifest", "--version", "2.0.0",
      "--app", "web:mark=web-two,version=2.0.0,heartbeat=1,data=/var/lib/web/db" })
    local t = H.tmpdir()
    canary = t .. "/canary"
    assert(ct.fs.mkdir(canary, 493))
    assert(ct.fs.write_atomic(canary .. "/secret", "canary\n", 420))
    assert(ct.fs.mkdir(canary .. "/cron.d", 493))
    canary_hash = H.tree_hash(canary)
    events = t .. "/events"
    watcher = assert(ct.proc.spawn({ "inotifywait", "-m", "-r", "-q", "--format", "%e %w%f",
      "-e", "open,access,modify,attrib,create,delete,move", canary },
      { stdout = H.appender(events), stderr = "null" }))
    -- inotifywait prints nothing once its watches are set: give it a moment
    -- and prove it sees an open (then start from an empty log).
    assert.truthy(H.wait_for(function()
      ct.fs.read(canary .. "/secret")
      return (ct.fs.read(events) or ""):find("OPEN", 1, true)
    end, 10), "inotifywait sees nothing")
    ct.fs.write_atomic(events, "")
    ct.time.sleep(0.2)
    assert.equals("", ct.fs.read(events) or "")
    root = H.root()
    ok(root, { "install", pkg1 })
  end)

  teardown(function()
    if watcher then watcher:kill(ct.proc.signals.TERM) watcher:wait() watcher:close() end
    H.cleanup()
  end)

  local function canary_untouched(step)
    assert.equals(canary_hash, (H.tree_hash(canary)), step .. ": the canary changed")
    assert.equals("", ct.fs.read(events) or "", step .. ": the canary was touched")
  end

  it("names planted in the app's logs folder are never opened: logs and rotate-logs read the monitor's files", function()
    -- attack: the names the Go tool and the first ctcli used for the live
    -- log, its rotations, lock and count, as symlinks to a host file and a
    -- FIFO, where a writer running as root would have followed them.
    plant(root, table.concat({
      "cd /var/log/web",
      "ln -sf " .. canary .. "/secret stdout-stderr.log",
      "ln -s " .. canary .. "/secret stdout-stderr.log.lock",
      "ln -s " .. canary .. "/secret stdout-stderr.log.collapsed",
      "ln -s " .. canary .. "/secret stdout-stderr.log.20200101T000000.000000Z.zst",
      "busybox mkfifo stdout-stderr.log.1",
    }, "; "))
    for _, args in ipairs({ { "logs", "web" }, { "logs", "--tail", "5", "web" }, { "logs", "--previous", "web" },
      { "logs" } }) do
      local r = H.ctcli(root, args, { timeout = 20 })
      assert.truthy(r.code == 0 or (args[2] == "--previous" and r.code == 1), table.concat(args, " ") .. ": " .. r.stderr)
      assert.falsy(r.stdout:find("canary\n", 1, true))
    end
    assert.truthy(H.ok(root, { "logs", "web" }):find("web-one", 1, true))
    ok(root, { "rotate-logs", "--max-size", "1", "--keep", "0" }, { timeout = 60 })
    -- what the app planted stays its own business: nothing followed or removed
    assert.equals("link", ct.fs.lstat(root .. "/logs/web/stdout-stderr.log").type)
    assert.equals("fifo", ct.fs.lstat(root .. "/logs/web/stdout-stderr.log.1").type)
    canary_untouched("logs/rotate-logs")
  end)

  it("restart writes the app's output where the app cannot reach, whatever it planted", function()
    ok(root, { "restart", "web" }, { timeout = 120 })
    plant(root, "i=0; while [ $i -lt 3000 ]; do echo web-one line $i; i=$((i+1)); done >> /proc/1/fd/1")
    assert.truthy(H.wait_for(function()
      local r = H.ctcli(root, { "logs", "web" })
      return r.code == 0 and r.stdout:find("web-one line 2999", 1, true)
    end, 20), "the new run's log is not read")
    assert.equals("link", ct.fs.lstat(root .. "/logs/web/stdout-stderr.log").type)
    -- The app sees none of the monitor's files.
    local r = H.ctcli(root, { "exec", "web", "sh", "-c", "ls -a /var/log/web /var/lib/web /etc/web" })
    assert.falsy(r.stdout:find("current.log", 1, true))
    assert.falsy(r.stdout:find("monitor.sock", 1, true))
    local res = H.json(root, { "rotate-logs", "--max-size", "1" })
    assert.equals("monitor", res.logs[1].method)
    assert.truthy(ct.fs.exists(root .. "/state/runs/web/" .. res.logs[1].part))
    canary_untouched("restart/rotate-logs")
  end)

  it("a FIFO where the old live log was neither hangs start --boot nor later commands", function()
    ok(root, { "stop", "web" })
    ok(root, { "start", "web" })
    plant(root, "cd /var/log/web; rm -f stdout-stderr.log; busybox mkfifo stdout-stderr.log; " ..
      "ln -sf " .. canary .. "/cron.d stdout-stderr.log.5")
    ok(root, { "logs", "web" }, { timeout = 20 })
    -- a reboot: the monitor and the container die; boot starts the wanted apps again
    kill_app(root)
    ok(root, { "start", "--boot" }, { timeout = 60 })
    assert.equals("running", H.app_state(root, "web").state)
    assert.equals("fifo", ct.fs.lstat(root .. "/logs/web/stdout-stderr.log").type)
    canary_untouched("start --boot")
  end)

  it("--restart-exited and the watch do not write through a planted log", function()
    plant(root, "cd /var/log/web; rm -f stdout-stderr.log; ln -sf " .. canary .. "/secret stdout-stderr.log")
    kill_app(root)
    ok(root, { "start", "--restart-exited" }, { timeout = 60 })
    assert.equals("running", H.app_state(root, "web").state)
    canary_untouched("start --restart-exited")
  end)

  it("a symlink where a later release declares data is refused, not bound", function()
    -- attack: release 2 binds /var/lib/web/db read-write; the app makes it
    -- a symlink to the host's / first
    plant(root, "ln -s / /var/lib/web/db; ln -s " .. canary .. " /var/lib/web/canary; " ..
      "busybox mkfifo /var/lib/web/fifo; ln -s " .. canary .. "/secret /var/lib/web/secret")
    local before = H.current(root)
    -- -q: the refusal alone on stderr, without the step lines before it
    local r = H.ctcli(root, { "-q", "-y", "upgrade", pkg2 }, { timeout = 300 })
    refused(r, "symlink", "upgrade with a planted data path")
    assert.truthy(r.stderr:find("var/lib/web/db", 1, true), r.stderr)
    assert.equals(before, H.current(root))
    assert.equals("running", H.app_state(root, "web").state)
    canary_untouched("upgrade")
  end)

  it("backup, reset, rollback and prune work on the app's files and follow nothing", function()
    local b = H.json(root, { "backup" })
    assert.truthy(b.path or b.archive, json.encode(b))
    local listing = ct.proc.run({ "tar", "-tvf", b.path or (root .. "/releases/backups/" .. b.archive) })
    assert.equals(0, listing.code, listing.stderr)
    -- the planted symlinks are archived as symlinks, not as what they point at
    assert.truthy(listing.stdout:find("var/lib/web/secret -> " .. canary .. "/secret", 1, true), listing.stdout)
    ok(root, { "-y", "reset", "web" }, { timeout = 120 })
    ok(root, { "-y", "rollback", b.path or (root .. "/releases/backups/" .. b.archive) }, { timeout = 300 })
    assert.equals("running", H.app_state(root, "web").state)
    assert.equals("link", ct.fs.lstat(root .. "/data/web/var/lib/web/db").type)
    ok(root, { "prune" }, { timeout = 120 })
    canary_untouched("backup/reset/rollback/prune")
  end)

  it("cgroups, device nodes and setuid files: nothing the app makes reaches the host", function()
    -- attack: write the host's cgroups (freeze or move host services,
    -- leave its own cgroup), make a device node for host users, leave a
    -- setuid-root shell in its data
    local r = ok(root, { "exec", "web", "sh", "-c", table.concat({
      "for f in /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/*/freezer.state; do " ..
        "[ -e $f ] && (echo 1 > $f) 2>/dev/null && echo WROTE $f; done",
      "mkdir /sys/fs/cgroup/pids/escape 2>/dev/null && echo WROTE mkdir",
      "busybox mknod /var/lib/web/mem c 1 1 2>/dev/null && echo MADE mknod",
      "cp /bin/busybox /var/lib/web/sh && chmod 4755 /var/lib/web/sh && echo made suid",
    }, "; ") })
    assert.is_nil(r.stdout:find("WROTE", 1, true), r.stdout)
    assert.is_nil(r.stdout:find("MADE", 1, true), r.stdout)
    assert.truthy(r.stdout:find("made suid", 1, true), r.stdout)
    assert.is_nil(ct.fs.lstat(root .. "/data/web/var/lib/web/mem"))
    local st = assert(ct.fs.lstat(root .. "/data/web/var/lib/web/sh"))
    local range = json.decode(ct.fs.read(root .. "/state/idmap.json"))
    assert.equals(range.uid, st.uid) -- setuid to an id no host user has
    assert.equals(2048, st.mode & 2048)
    canary_untouched("cgroups/mknod/setuid")
  end)

  it("stop and delete --purge remove the app's trees without following a link", function()
    ok(root, { "stop" }, { timeout = 60 })
    ok(root, { "-y", "delete", "--purge" }, { timeout = 120 })
    assert.is_nil(ct.fs.lstat(root .. "/data/web"))
    canary_untouched("delete --purge")
  end)
end)
