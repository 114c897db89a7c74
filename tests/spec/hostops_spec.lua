-- Operating one host: the wanted state and boot, restarting apps that
-- exited, systemd units, log rotation, memory limits, reset, images and
-- prune — on real runc containers.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local app_state = H.app_state

local function runc_state(root, app)
  local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", H.container_id(root, app) })
  return r and r.code == 0 and json.decode(r.stdout) or nil
end

-- kill_app(root, app): SIGKILL the container's init from outside (its pid
-- read from runc's state), as a crash or a reboot would.
local function kill_app(root, app)
  local st = assert(runc_state(root, app), "no container for " .. app)
  ct.proc.kill(st.pid, ct.proc.signals.KILL)
  assert.truthy(H.wait_for(function()
    local s = runc_state(root, app)
    return s and s.status == "stopped"
  end, 10), app .. " did not stop")
end

-- monitor_state(root, app) -> the app's monitor record (state/runs/<app>/state.json)
local function monitor_state(root, app)
  return json.decode(ct.fs.read(root .. "/state/runs/" .. app .. "/state.json") or "null")
end

-- kill_monitor(root, app): SIGKILL the app's monitor, as a reboot would.
local function kill_monitor(root, app)
  local st = assert(monitor_state(root, app), "no monitor record for " .. app)
  ct.proc.kill(st.monitor_pid, ct.proc.signals.KILL)
  assert.truthy(H.wait_for(function() return not ct.fs.exists("/proc/" .. st.monitor_pid .. "/stat") or
    (ct.fs.read("/proc/" .. st.monitor_pid .. "/stat") or ""):match("%) Z") end, 10))
end

-- fast(root, extra): restart numbers short enough for a spec (ctcli.json).
local function fast(root, extra)
  local doc = { supervision = { backoff_initial = 0.1, backoff_max = 0.4, crash_limit = 5, quick_run = 5 } }
  for k, v in pairs(extra or {}) do doc.supervision[k] = v end
  assert(ct.fs.write_atomic(root .. "/ctcli.json", json.encode(doc)))
end

describe("hostops", function()
  local pkg
  setup(function()
    pkg = H.package({ "--format", "manifest", "--version", "1.0.0",
      "--app", "web:mark=web-one", "--app", "worker:mark=worker-one,version=1.0.0,depends=web",
      "--app", "cron:mark=cron-one,version=1.0.0" })
  end)
  teardown(H.cleanup)

  it("keeps the wanted state across a simulated reboot and starts exactly the wanted apps", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    H.ok(root, { "stop", "cron" })
    local doc = json.decode(ct.fs.read(root .. "/state/wanted.json"))
    assert.is_false(doc.apps.cron.wanted)
    local st = app_state(root, "cron")
    assert.equals("stopped", st.state)
    assert.is_false(st.wanted)
    assert.is_true(app_state(root, "web").wanted)
    assert.is_false(ct.fs.exists(root .. "/state/journal.json"))

    -- a reboot: every process dies (the monitors, then the containers),
    -- runc's state and the monitors' records stay on disk
    kill_monitor(root, "web")
    kill_monitor(root, "worker")
    kill_app(root, "web")
    kill_app(root, "worker")
    local s = H.json(root, { "status" })
    for _, a in ipairs(s.apps) do
      if a.name ~= "cron" then
        assert.equals("exited", a.state, a.name)
        assert.truthy(a.exited.at:match("^%d+%-%d+%-%d+T"), a.name)
      end
    end
    assert.truthy(H.ok(root, { "status" }):find("exited", 1, true))

    local out = H.json(root, { "start", "--boot" })
    table.sort(out.started)
    assert.same({ "web", "worker" }, out.started)
    assert.equals("running", app_state(root, "web").state)
    assert.equals("running", app_state(root, "worker").state)
    assert.equals("stopped", app_state(root, "cron").state)

    -- start marks wanted again; boot then starts it too
    H.ok(root, { "start", "cron" })
    assert.is_true(app_state(root, "cron").wanted)
    -- the unit's ExecStop keeps the wanted state
    H.ok(root, { "stop", "--keep-wanted" })
    assert.is_true(app_state(root, "cron").wanted)
    out = H.json(root, { "start", "--boot" })
    assert.equals(3, #out.started)
  end)

  it("restarts an app killed from outside by its policy, never one ctcli stops, and gives up on a crash loop", function()
    local root = H.root()
    fast(root)
    H.ok(root, { "install", pkg })
    H.ok(root, { "stop", "cron" })
    local before = assert(runc_state(root, "worker")).pid
    local evfile = H.tmpdir() .. "/events"
    local events = assert(ct.proc.spawn({ H.bin, "--root", root, "--json", "events", "--for", "30" },
      { stdout = H.appender(evfile), stderr = "null" }))
    -- Its first lines say where each app stands: from then on it misses nothing.
    assert.truthy(H.wait_for(function() return (ct.fs.read(evfile) or ""):find('"app":"worker"', 1, true) end, 20))
    ct.proc.kill(before, ct.proc.signals.KILL)
    local st = H.wait_for(function()
      local a = app_state(root, "worker")
      return a.state == "running" and a.pid ~= before and a.restarts == 1 and a
    end, 20)
    assert.truthy(st, "worker was not restarted")
    assert.equals(9, st.last_exit.signal)
    assert.truthy(H.ok(root, { "status" }):find("running (1 restart)", 1, true))
    -- `events` saw it live: the restart, with the exit by signal 9 that
    -- caused it (the "restarting" between them lasts 0.1 s here: a loaded
    -- machine's poll may see the new run only).
    local seen = H.wait_for(function()
      for l in (ct.fs.read(evfile) or ""):gmatch("[^\n]+") do
        local e = json.decode(l)
        if e and e.app == "worker" and type(e.from) == "string" and e.to == "running" and e.restarts == 1 then
          return e
        end
      end
    end, 20)
    events:close()
    assert.truthy(seen, "events printed no restart of worker")
    assert.equals(9, seen.last_exit.signal)
    assert.are_not.equal(before, seen.pid)
    -- The history lists the policy restart among the commands.
    local hist = H.json(root, { "history" }).entries
    local restart
    for _, e in ipairs(hist) do if e.by == "monitor" and e.app == "worker" then restart = e end end
    assert.truthy(restart, "no policy restart in the history")
    assert.equals(9, restart.exit.signal)
    -- The watch timer leaves supervised apps to their monitors.
    assert.same({}, H.json(root, { "start", "--restart-exited" }).started)
    -- A stop is ctcli's doing: no restart.
    H.ok(root, { "stop", "worker" })
    ct.time.sleep(0.6)
    assert.equals("stopped", app_state(root, "worker").state)
    assert.equals("exited", monitor_state(root, "worker").state)
    assert.is_nil(runc_state(root, "worker"))
    -- An app that exits 3 at once, five times in a row: failed, restarts stop.
    local conf = root .. "/config/cron/etc/cron/app.conf"
    assert(ct.fs.write_atomic(conf, (ct.fs.read(conf) or "") .. "exit=3\n"))
    H.ctcli(root, { "start", "cron" }) -- its health check cannot pass
    local failed = H.wait_for(function()
      local a = app_state(root, "cron")
      return a.state == "failed" and a
    end, 30)
    assert.truthy(failed, "cron did not end failed")
    assert.equals(3, failed.last_exit.code)
    local runs = monitor_state(root, "cron").runs
    assert.equals(5, runs)
    ct.time.sleep(1)
    assert.equals(runs, monitor_state(root, "cron").runs)
    assert.truthy(H.ok(root, { "status" }):find("failed (code 3)", 1, true))
    -- The operator fixes it; start brings it back under a new monitor.
    assert(ct.fs.write_atomic(conf, ((ct.fs.read(conf) or ""):gsub("exit=3\n", ""))))
    H.ok(root, { "start", "cron" })
    assert.equals("running", app_state(root, "cron").state)
  end)

  it("notices a killed monitor and brings its app back cleanly on start", function()
    local root = H.root()
    fast(root)
    H.ok(root, { "install", pkg })
    kill_monitor(root, "web")
    local r = H.ctcli(root, { "status" })
    assert.equals(0, r.code)
    assert.truthy(r.stderr:find("the monitor of web is gone", 1, true), r.stderr)
    assert.equals("lost", app_state(root, "web").monitor)
    local old = app_state(root, "web").pid
    H.ok(root, { "start", "web" })
    local a = app_state(root, "web")
    assert.equals("running", a.state)
    assert.are_not.equal(old, a.pid)
    assert.equals("running", a.monitor)
    assert.falsy(H.ctcli(root, { "status" }).stderr:find("gone", 1, true))
  end)

  it("recovers an interrupted start: nothing to undo, the app stays wanted", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", pkg })
    H.ok(root, { "stop", "cron" })
    local r = H.ctcli(root, { "start", "cron" }, { env = { CTCLI_FAULT = "start:start" } })
    assert.is_not.equals(0, r.code)
    assert.truthy(ct.fs.exists(root .. "/state/journal.json"))
    r = H.ctcli(root, { "start", "--boot" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("recovered an interrupted 'start'", 1, true), r.stderr)
    assert.truthy(r.stderr:find("nothing to undo", 1, true), r.stderr)
    assert.equals("running", app_state(root, "cron").state)
  end)
  it("rotates an app's log by size in its monitor while logs -f follows: every line once, in order", function()
    local root = H.root()
    fast(root, { log_max = 1024 * 1024, log_keep = 20 })
    H.ok(root, { "install", pkg })
    local out = H.tmpdir() .. "/followed"
    local follower = assert(ct.proc.spawn({ H.bin, "--root", root, "logs", "-f", "web" },
      { stdout = H.appender(out), stderr = "null" }))
    local total = 300000
    local writer = assert(ct.proc.spawn({ H.bin, "--root", root, "exec", "web", "sh", "-c",
      "i=0; while [ $i -lt " .. total .. " ]; do echo line $i; i=$((i+1)); done >> /proc/1/fd/1" },
      { stdout = "null", stderr = "null" }))
    assert.equals(0, writer:wait())
    writer:close()
    H.wait_for(function() return (ct.fs.read(out) or ""):find("line " .. (total - 1) .. "\n", 1, true) end, 60)
    follower:close()
    local rotated = 0
    for _, n in ipairs(ct.fs.dir(root .. "/state/runs/web")) do
      if n:match("^%d+%.log$") then rotated = rotated + 1 end
    end
    assert.truthy(rotated >= 5, "only " .. rotated .. " rotations")
    local want = 0
    for n in (ct.fs.read(out) or ""):gmatch("line (%d+)\n") do
      assert.equals(want, tonumber(n))
      want = want + 1
    end
    assert.equals(total, want)
    -- The files are outside everything bound into the container.
    for _, kind in ipairs({ "logs", "data", "config" }) do
      assert.is_nil(ct.fs.lstat(root .. "/" .. kind .. "/web/current.log"))
    end
    -- rotate-logs asks the monitor: a rename, nothing copied.
    local res = H.json(root, { "rotate-logs", "--max-size", "1" })
    local web
    for _, l in ipairs(res.logs) do if l.app == "web" then web = l end end
    assert.equals("monitor", web.method)
    assert.truthy(ct.fs.exists(root .. "/state/runs/web/" .. web.part))
    local r = H.ctcli(root, { "rotate-logs", "--max-size", "lots" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("--max-size", 1, true), r.stderr)
  end)

  it("logs: --previous shows the run before, no APP interleaves every app, --since and --timestamps", function()
    local root = H.root()
    fast(root)
    H.ok(root, { "install", pkg })
    local first = assert(runc_state(root, "web")).pid
    ct.proc.kill(first, ct.proc.signals.KILL)
    assert.truthy(H.wait_for(function()
      local a = app_state(root, "web")
      return a.state == "running" and a.pid ~= first
    end, 20))
    local prev = H.ok(root, { "logs", "--previous", "web" })
    assert.truthy(prev:find("web-one", 1, true), prev)
    local verbose = H.ok(root, { "-v", "logs", "--previous", "web" })
    assert.truthy(verbose:find("-- run 1 started", 1, true), verbose)
    assert.falsy(verbose:find("run 2 start", 1, true), verbose)
    local all = H.ok(root, { "logs" })
    assert.truthy(all:find("web    | web-one", 1, true), all)
    assert.truthy(all:find("worker | worker-one", 1, true), all)
    local stamped = H.ok(root, { "logs", "--timestamps", "--tail", "1", "web" })
    assert.truthy(stamped:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z "), stamped)
    assert.equals("", H.ok(root, { "logs", "--since", "2999-01-01T00:00:00Z", "web" }))
    assert.truthy(H.ok(root, { "logs", "--since", "1h", "web" }):find("web-one", 1, true))
    assert.equals(2, H.ctcli(root, { "logs", "--since", "yesterday", "web" }).code)
  end)

  it("prints systemd units that pass systemd-analyze verify, named from the root path", function()
    local root = H.root()
    local out = H.ok(root, { "enable", "--print", "--watch", "30" })
    local dir = H.tmpdir() .. "/units"
    assert(ct.fs.mkdir(dir))
    local files, name, buf = {}, nil, {}
    local function flush()
      if name then
        assert(ct.fs.write_atomic(dir .. "/" .. name, table.concat(buf, "\n")))
        files[#files + 1] = dir .. "/" .. name
      end
    end
    for line in (out .. "\n"):gmatch("(.-)\n") do
      local n = line:match("^# /etc/systemd/system/(%S+)$")
      if n then flush() name, buf = n, {} else buf[#buf + 1] = line end
    end
    flush()
    local esc = ct.proc.run({ "systemd-escape", "--path", root })
    local base = "ctcli-" .. esc.stdout:gsub("%s+$", "")
    local want = { base .. ".service", base .. "-rotate-logs.service", base .. "-rotate-logs.timer",
      base .. "-watch.service", base .. "-watch.timer" }
    local got = {}
    for _, f in ipairs(files) do got[#got + 1] = f:match("[^/]+$") end
    table.sort(want)
    table.sort(got)
    assert.same(want, got)
    local main = ct.fs.read(dir .. "/" .. base .. ".service")
    for _, l in ipairs({ "Type=oneshot", "RemainAfterExit=yes", "After=network-online.target local-fs.target",
      "--root " .. root .. " start --boot", "--root " .. root .. " stop --keep-wanted" }) do
      assert.truthy(main:find(l, 1, true), l)
    end
    assert.truthy(ct.fs.read(dir .. "/" .. base .. "-watch.timer"):find("OnUnitActiveSec=30s", 1, true))
    local argv = { "systemd-analyze", "verify" }
    for _, f in ipairs(files) do argv[#argv + 1] = f end
    local r = assert(ct.proc.run(argv, { timeout = 60 }))
    assert.equals(0, r.code, r.stdout .. r.stderr)
    -- without --watch no watch timer
    assert.falsy(H.ok(root, { "enable", "--print" }):find("watch", 1, true))
    -- a path systemd-escape must escape
    local odd = H.tmpdir() .. "/my root-x"
    H.ok(odd, { "init" })
    esc = ct.proc.run({ "systemd-escape", "--path", odd }).stdout:gsub("%s+$", "")
    assert.truthy(H.ok(odd, { "enable", "--print" }):find("# /etc/systemd/system/ctcli-" .. esc .. ".service", 1, true))
    if not ct.fs.exists("/run/systemd/system") then
      r = H.ctcli(root, { "enable" })
      assert.equals(1, r.code)
      assert.truthy(r.stderr:find("systemd is not running", 1, true), r.stderr)
      assert.truthy(r.stderr:find("--print", 1, true))
    end
  end)
  it("logs --previous reads the newest log the Go ctcli archived, never through a symlink the app planted", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", pkg })
    local arch = root .. "/logs/web/stdout-stderr-arch"
    local r = H.ctcli(root, { "logs", "--previous", "web" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("web: no log of an earlier run", 1, true), r.stderr)
    -- What the Go tool left: one file per earlier run, named by the UTC time
    -- it moved the log aside; other names there are not runs.
    assert(ct.fs.mkdir(arch, 493, true))
    assert(ct.fs.write_atomic(arch .. "/2024-05-01T10:00:00Z.log", "older run\n"))
    assert(ct.fs.write_atomic(arch .. "/2024-05-02T09:30:00Z.log", "one\ntwo\nthree\n"))
    assert(ct.fs.write_atomic(arch .. "/zz-notes.log", "not a run\n"))
    assert.equals("one\ntwo\nthree\n", H.ok(root, { "logs", "--previous", "web" }))
    assert.equals("two\nthree\n", H.ok(root, { "logs", "--previous", "--tail", "2", "web" }))
    assert.equals("ree\n", H.ok(root, { "logs", "--previous", "--bytes", "4", "web" }))
    r = H.ctcli(root, { "logs", "--previous", "-f", "web" })
    assert.equals(2, r.code)

    -- A newer name the app made a symlink to a host file: refused, not read.
    local outside = H.tmpdir()
    assert(ct.fs.write_atomic(outside .. "/secret", "host secret\n"))
    assert(ct.fs.symlink(outside .. "/secret", arch .. "/2024-05-03T08:00:00Z.log"))
    r = H.ctcli(root, { "logs", "--previous", "web" })
    assert.equals(1, r.code)
    assert.equals("", r.stdout)
    assert.truthy(r.stderr:find("2024-05-03T08:00:00Z.log is a symlink", 1, true), r.stderr)
    -- The archive dir itself a symlink to a dir holding a "newer run": refused too.
    assert(ct.fs.rmtree(arch))
    assert(ct.fs.mkdir(outside .. "/arch", 493))
    assert(ct.fs.write_atomic(outside .. "/arch/2030-01-01T00:00:00Z.log", "host secret\n"))
    assert(ct.fs.symlink(outside .. "/arch", arch))
    r = H.ctcli(root, { "logs", "--previous", "web" })
    assert.equals(1, r.code)
    assert.falsy(r.stdout:find("secret", 1, true))
    assert.truthy(r.stderr:find("stdout-stderr-arch is a symlink", 1, true), r.stderr)
  end)

  it("reset restores an app's rootfs to its image and keeps its configs and data", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    H.ok(root, { "exec", "web", "sh", "-c", "echo junk > /junk; rm /app/mark; echo mine >> /var/lib/web/mine" })
    local cfg = root .. "/config/web/etc/web/app.conf"
    local f = assert(ct.fs.open(cfg, { write = true, append = true }))
    assert(f:write("operator=edit\n"))
    f:close()
    local key
    for _, k in ipairs(ct.fs.dir(root .. "/images")) do
      if k:match("^web@") then key = k end
    end
    -- what the app changed is in its writable layer (a whiteout for what it removed)
    local upper = json.decode(ct.fs.read(root .. "/current-release/release.json")).apps[1].upper
    local rootfs = root .. "/uppers/web/" .. upper .. "/upper"
    assert.truthy(ct.fs.exists(rootfs .. "/junk"))
    assert.equals("char", ct.fs.lstat(rootfs .. "/app/mark").type)
    assert.truthy(ct.fs.exists(root .. "/images/" .. key .. "/oci/index.json"))
    local before_cfg = ct.fs.read(cfg)
    local before_data = ct.fs.read(root .. "/data/web/var/lib/web/mine")
    -- no terminal to ask on and no -y: cancelled (exit 3), nothing changes
    local r = H.ctcli(root, { "reset", "web" }, { stdin = "y\n" })
    assert.equals(3, r.code)
    assert.truthy(ct.fs.exists(rootfs .. "/junk"))
    local pid = app_state(root, "web").pid
    H.ok(root, { "reset", "-y", "web" })
    assert.falsy(ct.fs.exists(rootfs .. "/junk"))
    assert.falsy(ct.fs.lstat(rootfs .. "/app/mark"))
    assert.truthy(H.ok(root, { "exec", "web", "cat", "/app/mark" }):find("web", 1, true))
    assert.equals(before_cfg, ct.fs.read(cfg))
    assert.equals(before_data, ct.fs.read(root .. "/data/web/var/lib/web/mine"))
    local st = app_state(root, "web")
    assert.equals("running", st.state)
    assert.is_not.equals(pid, st.pid)
    assert.falsy(ct.fs.exists(root .. "/state/journal.json"))
    assert.same({}, ct.fs.dir(root .. "/tmp"))
    -- a stopped app stays stopped
    H.ok(root, { "stop", "worker" })
    H.ok(root, { "reset", "--yes", "worker" })
    assert.equals("stopped", app_state(root, "worker").state)
    assert.falsy((ct.fs.read("/proc/self/mountinfo") or ""):find(root .. "/uppers/worker/", 1, true))
  end)
  it("prune removes old releases and unused images, never what a kept release uses", function()
    local root = H.root()
    local v2 = H.package({ "--format", "manifest", "--version", "1.1.0",
      "--app", "web:mark=web-two,version=1.1.0", "--app", "worker:mark=worker-one,version=1.0.0,depends=web",
      "--app", "cron:mark=cron-one,version=1.0.0" })
    local v3 = H.package({ "--format", "manifest", "--version", "1.2.0",
      "--app", "web:mark=web-three,version=1.2.0", "--app", "worker:mark=worker-one,version=1.0.0,depends=web",
      "--app", "cron:mark=cron-one,version=1.0.0" })
    H.ok(root, { "install", pkg })
    H.ok(root, { "--yes", "upgrade", "--keep", "10", v2 })
    H.ok(root, { "--yes", "upgrade", "--keep", "10", v3 })
    local imgs = H.json(root, { "images" }).images
    local by = {}
    for _, im in ipairs(imgs) do
      by[im.app] = (by[im.app] or 0) + 1
      assert.truthy(im.bytes > 0)
      assert.truthy(#im.releases >= 1)
    end
    assert.equals(3, by.web)
    assert.equals(1, by.worker)
    assert.equals(1, by.cron)
    assert.truthy(H.ok(root, { "images" }):find("DIGEST", 1, true))
    local cur = H.json(root, { "release-info" })
    -- keep 2: the oldest release goes; the web image only it used stays,
    -- held by the backup the upgrade from it made (a backup's images are
    -- references too)
    local out = H.json(root, { "prune", "--keep", "2" })
    assert.equals(1, #out.releases)
    assert.equals(0, #out.images)
    assert.truthy(out.bytes > 0)
    local held = 0
    for _, im in ipairs(H.json(root, { "images" }).images) do
      if #im.releases == 0 then
        assert.equals("web", im.app)
        assert.truthy(#im.backups >= 1, "an image no release uses is held by a backup")
        held = held + 1
      end
    end
    assert.equals(1, held)
    -- keep 0: only the current release stays, with every image it uses,
    -- and the images the backups hold
    H.ok(root, { "prune", "--keep", "0" })
    local left = H.json(root, { "images" }).images
    local current = 0
    for _, im in ipairs(left) do
      if im.current then current = current + 1 else assert.truthy(#im.backups >= 1, im.app) end
    end
    assert.equals(3, current)
    -- the worker image the first release also used is still there
    for _, im in ipairs(left) do
      local info = json.decode(ct.fs.read(root .. "/images/" .. im.app .. "@" .. im.digest .. "/image.json"))
      for _, l in ipairs(info.layers) do
        assert.truthy(ct.fs.exists(root .. "/blobs/sha256/" .. l.blob:sub(8)), l.blob)
      end
    end
    assert.equals(1, #H.json(root, { "list-releases" }).releases)
    assert.same(cur, H.json(root, { "release-info" }))
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("running", a.state, a.name) end
    assert.truthy(H.ok(root, { "prune" }):find("nothing to prune", 1, true))
  end)

  it("enforces a memory limit: an allocation past it is killed and status says so", function()
    local root = H.root()
    local small = H.package({ "--format", "manifest", "--app", "web:memory=32M" })
    H.ok(root, { "install", small })
    local cfg = json.decode(ct.fs.read(root .. "/current-release/apps/web/config.json"))
    assert.equals(32 * 1024 * 1024, cfg.linux.resources.memory.limit)
    local st = H.json(root, { "-v", "status" }).apps[1]
    assert.equals(32 * 1024 * 1024, st.stats.memory_limit)
    assert.truthy(st.stats.memory > 0)
    assert.truthy(st.stats.cpu_seconds >= 0)
    assert.equals(0, st.oom_kills)
    assert.truthy(H.ok(root, { "-v", "status" }):find("32.0 MiB", 1, true))
    -- 100 MB held in a shell variable: past the limit. The kernel kills the
    -- biggest process of the cgroup, the allocating shell, or the app itself.
    local r = H.ctcli(root, { "exec", "web", "sh", "-c",
      "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}" })
    assert.is_not.equals(0, r.code, r.stdout .. r.stderr)
    assert.falsy(r.stdout:find("100000000", 1, true))
    st = H.json(root, { "status" }).apps[1]
    assert.truthy(st.oom_kills >= 1)
    assert.truthy(st.state == "running" or st.state == "exited", st.state)
    local text = H.ok(root, { "status" })
    assert.truthy(text:find("OOM kill", 1, true), text)
  end)

end)
