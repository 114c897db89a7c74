-- Containers: ids, state, start, stop (in parallel within a dependency
-- level), exec. Every runc call goes through the release's runc with the
-- root's runc-root.
local ct = require("ct")
local appfs = require("ctcli.appfs")
local json = require("ctcli.json")
local monitor = require("ctcli.monitor")

local M = {}

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

function M.rt(paths, tools)
  return { runc = tools.runc, root = paths.runc_root }
end

local function runc_error(what, r, err)
  if not r then return what .. ": " .. tostring(err) end
  local msg = (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "")
  msg = msg:match("msg=\"(.-)\"") or msg:match("[^\n]*$")
  return what .. ": " .. msg
end

-- runc's own view of a container, read from its state.json the way runc
-- decides it (init gone: stopped; exec.fifo still there: created; cgroup
-- frozen: paused; else running), without starting a runc process: status
-- costs a few file reads. nil when a state file cannot be read.
local function read_state(dir, id)
  local text = ct.fs.read(dir .. "/" .. id .. "/state.json")
  local st = text and json.decode(text)
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
  local r, err = ct.oci.runc(rt, { "list", "--format", "json" }, { timeout = 30 })
  if not r or r.code ~= 0 then return nil, runc_error("runc list", r, err) end
  local out = {}
  local items = json.decode(r.stdout ~= "" and r.stdout or "null") or {}
  for _, c in ipairs(items) do
    out[c.id] = { status = c.status, pid = c.pid, created = c.created, bundle = c.bundle }
  end
  return out
end

function M.state(rt, id)
  local r = ct.oci.runc(rt, { "state", id }, { timeout = 30 })
  if not r or r.code ~= 0 then return nil end
  return json.decode(r.stdout)
end

-- running(st) -> whether a listed container counts as running.
function M.running(st)
  return st ~= nil and (st.status == "running" or st.status == "paused")
end

-- alive(pid): a zombie (exited, not yet reaped by its new parent) is gone.
local function alive(pid)
  local stat = ct.fs.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end
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
-- monitor (ctcli.monitor) creates and starts the container and supervises
-- it; a stopped leftover container with the same id is deleted first.
function M.start(c)
  local st = M.state(c.rt, c.id)
  if st and (st.status == "running" or st.status == "paused") then return true, "already running" end
  local ok, err = hand_over(c.paths, c.app.name)
  if not ok then return nil, err end
  if st then ct.oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 }) end
  -- The app is stopped: nothing inside can change its trees between this
  -- check and runc's bind mounts (runc follows symlinks in path strings).
  ok, err = appfs.check_binds(c.paths, c.app)
  if not ok then return nil, err end
  local pid, serr = monitor.spawn(c, c.policy or { restart = "no", log_max = 0, log_keep = 0 })
  if not pid then
    ct.oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 })
    return nil, serr
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
    if st then
      if st.status == "paused" then ct.oci.runc(c.rt, { "resume", c.id }, { timeout = 30 }) end
      if st.status == "running" or st.status == "paused" then
        local sig = force and "KILL" or (c.signal or "SIGTERM"):gsub("^SIG", "")
        ct.oci.runc(c.rt, { "kill", c.id, sig }, { timeout = 30 })
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
          ct.oci.runc(c.rt, { "kill", "--all", c.id, "KILL" }, { timeout = 30 })
          c.killed = true
        end
        -- SIGKILL cannot be ignored; past 10 s more, runc delete --force finishes it.
        if now < c.deadline + 10 then pending = pending + 1 end
      end
    end
    if pending > 0 then ct.time.sleep(0.02) end
  end
  local errors = {}
  for _, c in ipairs(waiting) do
    local r, err = ct.oci.runc(c.rt, { "delete", "--force", c.id }, { timeout = 30 })
    if not r or r.code ~= 0 then
      errors[#errors + 1] = runc_error("runc delete " .. c.id, r, err)
    end
  end
  -- The monitors record the exits and leave; their cgroups go with them.
  for _, c in ipairs(items) do
    if c.paths and c.app then
      wait_monitor(c.paths, c.app.name)
      monitor.forget_cgroup(c.id)
    end
  end
  if #errors > 0 then return nil, table.concat(errors, "; ") end
  return true
end

M.SIGNALS = SIGNALS

return M
