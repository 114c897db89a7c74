-- Containers: ids, state, start, stop (in parallel within a dependency
-- level), exec. Every runc call goes through the release's runc with the
-- root's runc-root.
local ct = require("ct")
local json = require("ctcli.base.json")

-- The overlay (and through it the layer store) is loaded by what starts,
-- stops or unmounts a container, not by what reads states (status).
local function overlay() return require("ctcli.runtime.overlay") end

-- The monitors' side of the runtime (runtime.monitor, here as runtime.monitor too).
local monitor = require("ctcli.runtime.monitor")

local M = {}

-- runc's command lines, built here and run by ct.proc (the engine only
-- starts programs). oci.runc(rt, args, opts) -> ct.proc.run's result for
-- `runc --root R args...`; oci.exec_tty / oci.run_tty -> the status of a
-- runc command sharing our stdio (see M.exec_tty).
local oci = {}

local function runc_argv(rt, log, args)
  local argv = { rt.runc, "--root", rt.root }
  -- runc's own errors go to log as JSON lines, for command_status to read.
  if log then
    for _, a in ipairs({ "--log", log, "--log-format", "json" }) do argv[#argv + 1] = a end
  end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

local told = monitor.told

function oci.runc(rt, args, opts)
  local argv, t0 = runc_argv(rt, nil, args), ct.time.monotonic()
  local r, err, errno = ct.proc.run(argv, opts)
  told(rt, argv, t0)
  return r, err, errno
end

-- Our process group and stdio, so a terminal's reads and ^C reach the command.
local function foreground(rt, opts, args)
  local r, err, errno = ct.proc.run(runc_argv(rt, opts and opts.log, args), { foreground = true })
  if not r then return nil, err, errno end
  return r.code
end

function oci.exec_tty(rt, id, argv, opts)
  assert(type(argv) == "table" and #argv >= 1, "argv must be a non-empty array of strings")
  local args = { "exec" }
  if ct.term.isatty(0) then args[#args + 1] = "--tty" end
  args[#args + 1] = id
  for _, a in ipairs(argv) do args[#args + 1] = a end
  return foreground(rt, opts, args)
end

-- The bundle's process.terminal says whether runc makes a terminal.
function oci.run_tty(rt, bundle, id, opts)
  return foreground(rt, opts, { "run", "--bundle", bundle, id })
end

local SIGNALS = {
  SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGKILL = 9, SIGUSR1 = 10, SIGUSR2 = 12, SIGTERM = 15,
}

-- The Go tool's container ids: md5 of the absolute root, then the app, so
-- several roots never collide and its containers are recognised. The root
-- is the one recorded in the root's state (paths.id_base, root.open), not
-- the path this command was given, which may be a symlink to it.
function M.container_id(paths, app)
  assert(type(paths) == "table" and paths.id_base, "container_id needs the paths of an opened root")
  return ct.hash.md5(paths.id_base) .. "-" .. app
end

-- rt(paths, tools [, report]) -> how runc is run: the release's binary on
-- the root's runc-root; report (ctx.report) hears of every call with -v.
function M.rt(paths, tools, report)
  return { runc = tools.runc, root = paths.runc_root, report = report }
end

-- message(text) -> what runc said went wrong, from its output: the msg of
-- a logrus line (`time=… level=error msg="…"`) or of a JSON log line
-- (`--log-format json`), else the last line. The one place runc's log
-- lines are read.
function M.message(text)
  text = tostring(text or ""):gsub("%s+$", "")
  local last
  for line in text:gmatch("[^\n]+") do
    local e = line:sub(1, 1) == "{" and json.decode(line)
    if type(e) == "table" and type(e.msg) == "string" then
      if e.level == "error" or e.level == "fatal" then last = e.msg end
    else
      last = line:match('msg="(.-)"') or last or line
    end
  end
  return last or text
end

local function runc_error(what, r, err)
  if not r then return what .. ": " .. tostring(err) end
  return what .. ": " .. M.message(r.stderr ~= "" and r.stderr or r.stdout)
end

-- run(rt, args, opts) -> ct.proc.run's result: one runc command (a health
-- check's exec) for the modules that have no business building its argv.
function M.run(rt, args, opts)
  return oci.runc(rt, args, opts)
end

-- exec_tty(rt, id, argv, opts) / run_tty(rt, bundle_dir, id, opts) -> the
-- command's status: with the caller's stdin, stdout and stderr (a terminal
-- when stdin is one), in the running container or in a temporary one.
function M.exec_tty(rt, id, argv, opts) return oci.exec_tty(rt, id, argv, opts) end
function M.run_tty(rt, dir, id, opts) return oci.run_tty(rt, dir, id, opts) end

-- argv(rt, ...) -> a runc command line on the root's runc-root.
function M.argv(rt, ...)
  local a = { rt.runc, "--root", rt.root }
  for _, x in ipairs({ ... }) do a[#a + 1] = x end
  return a
end

-- pause(rt, id) / resume(rt, id) -> true | nil, msg
function M.pause(rt, id)
  local r, err
  -- cgroup v1's freezer gives up when a task is caught mid-fork (runc says
  -- "unable to freeze" and thaws it again): on a busy host, a few tries.
  for attempt = 1, 4 do
    r, err = oci.runc(rt, { "pause", id }, { timeout = 30 })
    if r and r.code == 0 then return true end
    if not (r and (r.stderr or ""):find("unable to freeze", 1, true)) then break end
    ct.time.sleep(0.1 * attempt)
  end
  return nil, runc_error("runc pause " .. id, r, err)
end

function M.resume(rt, id)
  local r, err = oci.runc(rt, { "resume", id }, { timeout = 30 })
  if r and r.code == 0 then return true end
  return nil, runc_error("runc resume " .. id, r, err)
end

-- delete(rt, id): a container gone whatever its state (a temporary one's end).
function M.delete(rt, id)
  return oci.runc(rt, { "delete", "--force", id }, { timeout = 30 })
end

-- stats(rt, id) -> {memory=bytes, memory_limit=, cpu_seconds=, pids=} | nil
function M.stats(rt, id)
  local r = oci.runc(rt, { "events", "--stats", id }, { timeout = 10 })
  if not r or r.code ~= 0 then return nil end
  local ev = json.decode(r.stdout)
  local d = ev and ev.data
  if type(d) ~= "table" then return nil end
  local mem = type(d.memory) == "table" and d.memory.usage or {}
  local cpu = type(d.cpu) == "table" and d.cpu.usage or {}
  local limit = mem.limit
  if limit and limit >= 2 ^ 60 then limit = nil end
  return {
    memory = mem.usage or json.null,
    memory_limit = limit or json.null,
    cpu_seconds = cpu.total and (cpu.total / 1e9) or json.null,
    pids = type(d.pids) == "table" and d.pids.current or json.null,
  }
end

-- runc's state.json is ~30 KB, nearly all of it the container's config
-- (its seccomp rules); status needs five fields of it. They are taken
-- from the text (runc writes the top-level fields before "config", and
-- "cgroup_paths" appears nowhere else); a file they are not found in is
-- decoded whole. Memoized per path and size: one read serves list,
-- oom_kills and exit_time.
local state_memo = {}
local function runc_state(file)
  local text = ct.fs.read(file)
  if not text then return nil end
  local memo = state_memo[file]
  if memo and memo.text == text then return memo.st end
  -- plain finds (memchr speed): a pattern scan of 30 KB costs more than
  -- the rest of status
  local config_at = text:find(',"config":', 1, true)
  local head = config_at and text:sub(1, config_at)
  local pid = head and tonumber(head:match('"init_process_pid":(%d+)'))
  local start = head and tonumber(head:match('"init_process_start":(%d+)'))
  local created = head and head:match('"created":"([^"]*)"')
  -- runc writes cgroup_paths after the config, about 1 KB before the end:
  -- looked for there first (a scan of the whole config finds a comma or a
  -- quote every few bytes, each a compare).
  local cg_at = text:find('"cgroup_paths":{', math.max(1, #text - 4095), true) or
    text:find('"cgroup_paths":{', 1, true)
  local cg = cg_at and text:match("^%b{}", cg_at + #'"cgroup_paths":')
  local st
  if pid and start and created and cg then
    st = { init_process_pid = pid, init_process_start = start, created = created, cgroup_paths = json.decode(cg) }
  else
    st = json.decode(text)
  end
  if type(st) ~= "table" then return nil end
  state_memo[file] = { text = text, st = st }
  return st
end

-- cgroups(rt, id) -> runc's cgroup paths of a container (from its state
-- file), or {}.
function M.cgroups(rt, id)
  local st = runc_state(rt.root .. "/" .. id .. "/state.json")
  return st and type(st.cgroup_paths) == "table" and st.cgroup_paths or {}
end

-- oom_kills(rt, id) -> processes the kernel killed for passing the memory
-- limit (cgroup v2 memory.events, v1 memory.oom_control), or nil.
function M.oom_kills(rt, id)
  local cg = M.cgroups(rt, id)
  local text = (cg[""] and ct.fs.read(cg[""] .. "/memory.events")) or
    (cg.memory and ct.fs.read(cg.memory .. "/memory.oom_control"))
  return text and tonumber(text:match("oom_kill (%d+)"))
end

-- exit_time(rt, id) -> epoch seconds of a stopped container's exit, from
-- its cgroup's last change, or nil.
function M.exit_time(rt, id)
  local paths = M.cgroups(rt, id)
  local cg = paths[""] or paths.memory
  local ev = cg and ct.fs.stat(cg .. "/cgroup.events")
  if ev and ev.mtime and ev.mtime > 0 then return ev.mtime end
  return nil
end

-- temporary(bundle, dir, argv, tty) -> true | nil, msg: a bundle in dir
-- for a temporary container of the app whose bundle is given, running
-- argv (exec of a stopped app, a hook's ctx.exec): the app's own config.json
-- with another process, so the same mounts, mapping and limits.
function M.temporary(bundle, dir, argv, tty)
  local text = ct.fs.read(bundle .. "/config.json")
  local cfg = text and json.decode(text)
  if type(cfg) ~= "table" or type(cfg.process) ~= "table" then
    return nil, "cannot read the bundle " .. bundle .. "/config.json"
  end
  cfg.process.args = json.array({ table.unpack(argv) })
  cfg.process.terminal = tty and true or false
  local ok, err = ct.fs.write_atomic(dir .. "/config.json", json.encode(cfg, true))
  if not ok then return nil, err end
  -- The app's rootfs, mounted for the time of the temporary container when
  -- the app's own is not (see temporary_done).
  local rpaths, app, id = overlay().of_path(type(cfg.root) == "table" and cfg.root.path)
  if rpaths then
    local mok, now = overlay().ensure_upper(rpaths, app, id)
    if not mok then return nil, now end
    if now then ct.fs.write_atomic(dir .. "/mounted", cfg.root.path, 384) end
  end
  return true
end

-- unmount(paths, app) -> true | nil, msg: a stopped app's rootfs mount
-- gone (reset swaps its upper; a leftover of a killed command).
function M.unmount(paths, app)
  return overlay().release(paths, app)
end

-- mounted(paths, app) -> whether the app's rootfs is mounted now.
function M.mounted(paths, app)
  return overlay().mounted(paths, app)
end

-- temporary_done(dir): after the temporary container of the bundle in dir
-- is deleted, the rootfs mount temporary made for it goes.
function M.temporary_done(dir)
  local root_path = ct.fs.read(dir .. "/mounted")
  local rpaths, app, id = overlay().of_path(root_path)
  if rpaths then return overlay().release_upper(rpaths, app, id) end
  return true
end

-- temporary_id(paths, app, kind, n) -> the id of a temporary container: the
-- app's own id, then what made it, so `runc list` shows whose it is.
function M.temporary_id(paths, app, kind, n)
  return string.format("%s-%s-%d%s", M.container_id(paths, app), kind, ct.proc.getpid(), n and ("-" .. n) or "")
end

-- command_status(code, log) -> code | nil, why, kind: a command run with
-- `runc exec`/`runc run --log LOG --log-format json`: its own status unless
-- runc logged that it could not start it; kind is "not-found",
-- "not-executable" or "runc".
function M.command_status(code, log)
  if code == 0 or not log then return code end
  local why
  for line in (ct.fs.read(log) or ""):gmatch("[^\n]+") do
    local e = json.decode(line)
    if type(e) == "table" and (e.level == "error" or e.level == "fatal") and type(e.msg) == "string" then why = e.msg end
  end
  if not why then return code end
  if why:find("executable file not found", 1, true) or why:find("no such file or directory", 1, true) then
    return nil, why, "not-found"
  elseif why:find("permission denied", 1, true) or why:find("is a directory", 1, true) or
    why:find("exec format error", 1, true) then
    return nil, why, "not-executable"
  end
  return nil, why, "runc"
end

-- runc's own view of a container, read from its state.json the way runc
-- decides it (init gone: stopped; exec.fifo still there: created; cgroup
-- frozen: paused; else running), without starting a runc process: status
-- costs a few file reads. nil when a state file cannot be read.
local function read_state(dir, id)
  local st = runc_state(dir .. "/" .. id .. "/state.json")
  if type(st) ~= "table" or type(st.init_process_pid) ~= "number" then return nil end
  local pid = st.init_process_pid
  local status = "stopped"
  local stat = pid > 0 and ct.fs.read("/proc/" .. pid .. "/stat")
  if stat then
    local fields = {}
    for f in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
    -- fields[1] is the state; fields[20] the start time (field 22 of stat)
    if fields[1] ~= "Z" and fields[1] ~= "X" and tonumber(fields[20]) == st.init_process_start then
      status = "running"
      if ct.fs.exists(dir .. "/" .. id .. "/exec.fifo") then
        status = "created"
      else
        local freezer = type(st.cgroup_paths) == "table" and st.cgroup_paths.freezer
        local fs = freezer and ct.fs.read(freezer .. "/freezer.state")
        if fs and fs:match("^FROZEN") then status = "paused" end
      end
    end
  end
  return { status = status, pid = status ~= "stopped" and pid or 0, created = st.created }
end

-- list(rt) -> map id -> {status=, pid=, created=} for every container of
-- runc-root: from the state files, else (one unreadable) from `runc list`.
function M.list(rt)
  local out = {}
  local ok = true
  for _, id in ipairs(ct.fs.dir(rt.root) or {}) do
    local st = read_state(rt.root, id)
    if not st then ok = false break end
    out[id] = st
  end
  if ok then return out end
  return M.runc_list(rt)
end

function M.runc_list(rt)
  if not rt.runc then return nil, "runc not found: install it or ship it in the package" end
  local r, err = oci.runc(rt, { "list", "--format", "json" }, { timeout = 30 })
  if not r or r.code ~= 0 then return nil, runc_error("runc list", r, err) end
  local out = {}
  local items = json.decode(r.stdout ~= "" and r.stdout or "null") or {}
  for _, c in ipairs(items) do
    out[c.id] = { status = c.status, pid = c.pid, created = c.created, bundle = c.bundle }
  end
  return out
end

function M.state(rt, id)
  local r = oci.runc(rt, { "state", id }, { timeout = 30 })
  if not r or r.code ~= 0 then return nil end
  return json.decode(r.stdout)
end

-- running(st) -> whether a listed container counts as running.
function M.running(st)
  return st ~= nil and (st.status == "running" or st.status == "paused")
end

local alive = monitor.alive
M.alive = alive

-- hand_over(paths, app): a monitor still supervising the app (waiting out a
-- restart's backoff) is told to stop and waited for, so the new one owns
-- the state directory alone.
local function hand_over(paths, app)
  local st = monitor.state(paths, app)
  if not monitor.live(st) then return true end
  monitor.stop(paths, app)
  local deadline = ct.time.monotonic() + 10
  while monitor.live(monitor.state(paths, app)) and ct.time.monotonic() < deadline do ct.time.sleep(0.02) end
  if monitor.live(monitor.state(paths, app)) then
    return nil, "the monitor of " .. app .. " (pid " .. tostring(st.monitor_pid) .. ") does not let go of it"
  end
  return true
end

-- start(c) where c = {rt=, id=, bundle=, paths=, app=, idmap=, policy=}: a
-- monitor (runtime.monitor) creates and starts the container and supervises
-- it; a stopped leftover container with the same id is deleted first.
function M.start(c)
  local st = M.state(c.rt, c.id)
  if st and (st.status == "running" or st.status == "paused") then return true, "already running" end
  local ok, err = hand_over(c.paths, c.app.name)
  if not ok then return nil, err end
  if st then oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 }) end
  -- The app is stopped: nothing inside can change its trees between this
  -- check and runc's bind mounts (runc follows symlinks in path strings).
  ok, err = require("ctcli.runtime.appfs").check_binds(c.paths, c.app)
  if not ok then return nil, err end
  -- Its rootfs (an overlay of its image's layers and its upper), before runc
  -- create; it stays for the monitor's restarts until the app is stopped.
  ok, err = overlay().ensure(c.paths, c.app)
  if not ok then return nil, err end
  local pid, serr = monitor.spawn(c, c.policy or { restart = "no", log_max = 0, log_keep = 0 })
  if not pid then
    oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 })
    overlay().release(c.paths, c.app)
    return nil, M.message(serr)
  end
  return true
end

-- wait_monitor(paths, app): until the app's monitor has recorded the exit
-- and left (a second at most; it exits right after the container does).
local function wait_monitor(paths, app)
  local deadline = ct.time.monotonic() + 1
  while monitor.live(monitor.state(paths, app)) and ct.time.monotonic() < deadline do ct.time.sleep(0.01) end
end

-- stop_many(list) where each item is {rt=, id=, signal=, timeout=}: sends
-- every stop signal first, then waits for all together, so N apps cost one
-- timeout; SIGKILL for those past it; then deletes the containers.
function M.stop_many(items, force)
  local waiting = {}
  for _, c in ipairs(items) do
    -- The monitor first: this exit is ctcli's doing, not one to restart.
    if c.paths and c.app then monitor.stop(c.paths, c.app.name) end
    local st = M.state(c.rt, c.id)
    c.listed = st ~= nil
    if st then
      if st.status == "paused" then oci.runc(c.rt, { "resume", c.id }, { timeout = 30 }) end
      if st.status == "running" or st.status == "paused" then
        local sig = force and "KILL" or (c.signal or "SIGTERM"):gsub("^SIG", "")
        oci.runc(c.rt, { "kill", c.id, sig }, { timeout = 30 })
        c.pid = st.pid
        c.deadline = ct.time.monotonic() + (force and 0 or (c.timeout or 10))
        waiting[#waiting + 1] = c
      else
        c.pid = nil
        waiting[#waiting + 1] = c
      end
    end
  end
  local pending = #waiting
  while pending > 0 do
    pending = 0
    local now = ct.time.monotonic()
    for _, c in ipairs(waiting) do
      if c.pid and alive(c.pid) then
        if now >= c.deadline and not c.killed then
          oci.runc(c.rt, { "kill", "--all", c.id, "KILL" }, { timeout = 30 })
          c.killed = true
        end
        -- SIGKILL cannot be ignored; past 10 s more, runc delete --force finishes it.
        if now < c.deadline + 10 then pending = pending + 1 end
      end
    end
    if pending > 0 then ct.time.sleep(0.02) end
  end
  local errors = {}
  local deleted = {}
  for _, c in ipairs(waiting) do
    local r, err = oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 })
    if not r or r.code ~= 0 then
      errors[#errors + 1] = runc_error("runc delete " .. c.id, r, err)
    else
      deleted[c] = true
    end
  end
  -- The monitors record the exits and leave; their cgroups go with them.
  for _, c in ipairs(items) do
    if c.paths and c.app then
      wait_monitor(c.paths, c.app.name)
      monitor.forget_cgroup(c.id)
      -- Its rootfs mount goes with the container (none was there: nothing to do).
      if deleted[c] or not c.listed then
        local ok, err = overlay().release(c.paths, c.app)
        if not ok then errors[#errors + 1] = err end
      end
    end
  end
  if #errors > 0 then return nil, table.concat(errors, "; ") end
  return true
end

M.monitor = monitor

M.SIGNALS = SIGNALS

return M
