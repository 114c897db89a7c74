-- Operating one host: the wanted state and boot, restarting apps that
-- exited, systemd units, log rotation, memory limits, reset, images and
-- prune — on real runc containers.
local ct = require("ct")
local json = require("ctcli.json")
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

    -- a reboot: every container dies, runc's state stays on disk
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

  it("restarts a wanted app killed from outside and logs it", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    H.ok(root, { "stop", "cron" })
    kill_app(root, "worker")
    -- nothing for a wanted running app or an unwanted one
    local out = H.json(root, { "start", "--restart-exited" })
    assert.same({ "worker" }, out.started)
    assert.equals("running", app_state(root, "worker").state)
    assert.equals("stopped", app_state(root, "cron").state)
    local log = ct.fs.read(root .. "/logs/ctcli.log")
    assert.truthy(log:find("worker exited by itself", 1, true), log)
    assert.truthy(log:find("restart #1", 1, true), log)
    kill_app(root, "worker")
    H.ok(root, { "start", "--restart-exited" })
    log = ct.fs.read(root .. "/logs/ctcli.log")
    assert.truthy(log:find("restart #2", 1, true), log)
    assert.equals(2, app_state(root, "worker").restarts)
    out = H.json(root, { "start", "--restart-exited" })
    assert.same({}, out.started)
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
  -- collapses(dir) -> whether the filesystem of dir can cut a file's head
  -- in place (ext4, xfs: yes; tmpfs, /tmp on many hosts: no).
  local function collapses(dir)
    local d = assert(ct.fs.opendir(dir))
    local f = assert(d:open("probe", { write = true, create = true }))
    f:write(string.rep("x", 65536))
    local n = f:collapse(32768)
    f:close()
    d:unlink("probe")
    d:close()
    return n ~= nil
  end

  it("rotates a log 5+ times while the app writes fast and loses no line (where the filesystem collapses)", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    local collapse = collapses(root .. "/logs")
    local total = 300000
    -- paced (a pause every 500 lines) so it outlasts 5 rotations on a loaded machine
    local writer = assert(ct.proc.spawn({ H.bin, "--root", root, "exec", "web", "sh", "-c",
      "i=0; while [ $i -lt " .. total .. " ]; do echo line $i; i=$((i+1)); " ..
      "[ $((i % 500)) -eq 0 ] && usleep 10000; done >> /proc/1/fd/1" },
      { stdout = "null", stderr = "null" }))
    local rotations = 0
    local deadline = ct.time.monotonic() + 120
    repeat
      local out = H.json(root, { "rotate-logs", "--max-size", "8K", "--keep", "1000" })
      for _, l in ipairs(out.logs) do
        if l.app == "web" and l.rotated > 0 then
          -- the fallback copies and truncates, and says it may lose lines
          assert.equals(collapse and "collapse" or "truncate", l.method)
          rotations = rotations + 1
        end
      end
      ct.time.sleep(0.05)
    until writer:wait(0) or ct.time.monotonic() > deadline
    writer:close()
    assert.truthy(rotations >= 5, "only " .. rotations .. " rotations")
    local dir = root .. "/logs/web"
    local chunks = {}
    for _, name in ipairs(ct.fs.dir(dir)) do
      if name:match("%.zst$") then chunks[#chunks + 1] = name end
    end
    table.sort(chunks)
    assert.truthy(#chunks >= 5)
    local text = {}
    for _, name in ipairs(chunks) do
      local r = assert(ct.proc.run({ "zstd", "-dc", dir .. "/" .. name }))
      assert.equals(0, r.code)
      text[#text + 1] = r.stdout
    end
    text[#text + 1] = ct.fs.read(dir .. "/stdout-stderr.log")
    local want = 0
    for n in table.concat(text):gmatch("line (%d+)\n") do
      if collapse then
        assert.equals(want, tonumber(n))
      else
        assert.is_true(tonumber(n) >= want, "a line out of order") -- lines may be lost, never repeated
      end
      want = tonumber(n) + 1
    end
    assert.equals(total, want)
    -- keep N: only the newest parts stay
    H.ok(root, { "rotate-logs", "--keep", "2" })
    local left = 0
    for _, name in ipairs(ct.fs.dir(dir)) do
      if name:match("%.zst$") then left = left + 1 end
    end
    assert.equals(2, left)
    local r = H.ctcli(root, { "rotate-logs", "--max-size", "lots" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("--max-size expects", 1, true))
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
  it("reset restores an app's rootfs to its image and keeps its configs and data", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    H.ok(root, { "exec", "web", "sh", "-c", "echo junk > /junk; rm /app/mark; echo mine >> /var/lib/web/mine" })
    local cfg = root .. "/config/web/etc/web/app.conf"
    assert(ct.fs.append(cfg, "operator=edit\n"))
    local key
    for _, k in ipairs(ct.fs.dir(root .. "/images")) do
      if k:match("^web@") then key = k end
    end
    local rootfs = root .. "/images/" .. key .. "/rootfs"
    assert.truthy(ct.fs.exists(rootfs .. "/junk"))
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
    assert.truthy(ct.fs.exists(rootfs .. "/app/mark"))
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
      assert.truthy(im.size > 0)
      assert.truthy(#im.releases >= 1)
    end
    assert.equals(3, by.web)
    assert.equals(1, by.worker)
    assert.equals(1, by.cron)
    assert.truthy(H.ok(root, { "images" }):find("DIGEST", 1, true))
    local cur = H.json(root, { "release-info" })
    -- keep 2: the oldest release goes, with the web image only it used
    local out = H.json(root, { "prune", "--keep", "2" })
    assert.equals(1, #out.releases)
    assert.equals(1, #out.images)
    assert.equals("web", out.images[1].app)
    assert.truthy(out.freed > 0)
    -- keep 0: only the current release stays, with every image it uses
    H.ok(root, { "prune", "--keep", "0" })
    local left = H.json(root, { "images" }).images
    assert.equals(3, #left)
    -- the worker image the first release also used is still there
    for _, im in ipairs(left) do
      assert.is_true(im.current)
      assert.truthy(ct.fs.exists(root .. "/images/" .. im.app .. "@" .. im.digest .. "/rootfs/app/run.sh"))
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

  it("logs -f follows a log across rotations without losing or repeating a line", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    local out = H.tmpdir() .. "/followed"
    local follower = assert(ct.proc.spawn({ H.bin, "--root", root, "logs", "-f", "web" },
      { stdout = { append = out }, stderr = "null" }))
    ct.time.sleep(0.5)
    -- about 250 KB/s: a follower polling every 0.2 s stays well within
    -- the part a rotation leaves in the live file (512 KiB here)
    local total = 300000
    local writer = assert(ct.proc.spawn({ H.bin, "--root", root, "exec", "web", "sh", "-c",
      "i=0; while [ $i -lt " .. total .. " ]; do echo line $i; i=$((i+1)); " ..
      "[ $((i % 500)) -eq 0 ] && usleep 20000; done >> /proc/1/fd/1" },
      { stdout = "null", stderr = "null" }))
    local rotations = 0
    repeat
      local res = H.json(root, { "rotate-logs", "--max-size", "1M" })
      for _, l in ipairs(res.logs) do
        if l.app == "web" and l.rotated > 0 then rotations = rotations + 1 end
      end
      ct.time.sleep(0.3)
    until writer:wait(0)
    writer:close()
    -- until the last line arrives
    H.wait_for(function() return (ct.fs.read(out) or ""):find("line " .. (total - 1) .. "\n", 1, true) end, 30)
    follower:close()
    assert.truthy(rotations >= 2, "only " .. rotations .. " rotations")
    -- Where the filesystem cannot collapse (tmpfs), rotation copies and
    -- truncates and says lines written meanwhile are lost: then none may
    -- be repeated or out of order, and the last one arrives.
    local collapse = collapses(root .. "/logs")
    local want = 0
    for n in (ct.fs.read(out) or ""):gmatch("line (%d+)\n") do
      if collapse then
        assert.equals(want, tonumber(n))
      else
        assert.is_true(tonumber(n) >= want, "line " .. n .. " repeated or out of order")
      end
      want = tonumber(n) + 1
    end
    assert.equals(total, want)
  end)
end)
