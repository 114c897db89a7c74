-- Supervision (DESIGN "Settled — processes"): every running container has a
-- monitor (engine/monitor.c; its protocol and files in
-- docs/architecture.md). This module decides everything the monitor does
-- not: where its files are, the restart policy and its numbers, the log
-- sizes, and what a dead monitor means. Its files live in state/runs/<app>/,
-- outside every tree bound into the container: state.json, monitor.sock,
-- current.log and the rotated NNNNNNNN.log.
local ct = require("ct")
local json = require("ctcli.json")
local rootconf = require("ctcli.rootconf")

local M = {}

M.POLICIES = { ["no"] = true, ["on-failure"] = true, ["always"] = true }

-- The numbers of a policy, unless ctcli.json's "supervision" says otherwise
-- (the tests shorten them there).
M.DEFAULTS = {
  backoff_initial = 1, backoff_max = 60, crash_limit = 5, quick_run = 10,
  log_max = 64 * 1024 * 1024, log_keep = 5,
  journal_socket = "/run/systemd/journal/socket",
}

function M.dir(paths, app)
  return paths.state .. "/runs/" .. app
end

-- open(paths, app [, create]) -> Dir of state/runs/<app> | nil, msg
function M.open(paths, app, create)
  local dir = M.dir(paths, app)
  if create and not ct.fs.exists(dir) then
    local ok, err = ct.fs.mkdir(dir, 448, true)
    if not ok then return nil, err end
    ct.fs.chmod(paths.state .. "/runs", 448)
  end
  return ct.fs.opendir(dir)
end

-- policy(rel, app, conf) -> {restart=, backoff_initial=, ...}: the app's
-- restart policy (ctcli.json's override, else the manifest's, else
-- "on-failure" for manifest packages and "no" for the Go tool's, as it did).
function M.policy(rel, app, conf)
  local over = rootconf.app(conf, app.name).restart
  local restart = over or app.restart
  if not restart then restart = (rel.format == "manifest") and "on-failure" or "no" end
  local p = { restart = restart }
  local sup = type(conf.supervision) == "table" and conf.supervision or {}
  for k, v in pairs(M.DEFAULTS) do p[k] = sup[k] or v end
  -- Forwarding to the journal: the manifest's opt-in, or ctcli.json's say.
  local jd = rootconf.app(conf, app.name).journald
  if jd == nil then jd = app.journald == true end
  p.journald = jd
  return p
end

-- state(paths, app) -> the monitor's state.json, or nil (never supervised).
function M.state(paths, app)
  local text = ct.fs.read(M.dir(paths, app) .. "/state.json")
  local st = text and json.decode(text)
  if type(st) ~= "table" then return nil end
  return st
end

local function alive(pid)
  local stat = math.type(pid) == "integer" and pid > 0 and ct.fs.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end

-- live(st) -> true when the monitor that wrote st still runs.
function M.live(st)
  return st ~= nil and alive(st.monitor_pid)
end

-- SUPERVISING: the states in which a live monitor holds the app.
local SUPERVISING = { starting = true, running = true, restarting = true, stopping = true }

-- lost(st) -> true when a monitor was supervising and is gone (killed):
-- the app has no stdout reader and no restart policy until its next start.
function M.lost(st)
  return st ~= nil and SUPERVISING[st.state] == true and not M.live(st)
end

-- request(paths, app, line) -> reply | nil, msg
function M.request(paths, app, line)
  local d, err = M.open(paths, app)
  if not d then return nil, err end
  local reply, rerr = ct.monitor.request(d, line, 5000)
  d:close()
  return reply, rerr
end

-- stop(paths, app): tells the app's monitor that the coming exit is
-- ctcli's doing (no restart); nothing when no monitor supervises it.
function M.stop(paths, app)
  local st = M.state(paths, app)
  if not M.live(st) then return true end
  return M.request(paths, app, "stop")
end

-- cgroup(id) -> the cgroup a monitor moves itself into, or nil: its own,
-- outside the cgroup of whatever started it, so that a systemd unit (a
-- oneshot's or a timer's) ending or being stopped does not kill it (as
-- podman puts conmon in a cgroup of its own). The unified hierarchy (v2),
-- else v1's name=systemd hierarchy, by which systemd tracks (and kills) a
-- unit's processes; nothing when neither is there.
M.CGROUP_DIR = "ctcli-monitors"
function M.cgroup(id)
  local mnt = "/sys/fs/cgroup"
  if ct.fs.exists(mnt .. "/cgroup.controllers") then return mnt .. "/" .. M.CGROUP_DIR .. "/" .. id end
  if ct.fs.exists(mnt .. "/systemd/cgroup.procs") then return mnt .. "/systemd/" .. M.CGROUP_DIR .. "/" .. id end
  return nil
end

-- forget_cgroup(id): the empty cgroup of an exited monitor goes.
function M.forget_cgroup(id)
  local dir = M.cgroup(id)
  if dir then ct.fs.rmdir(dir) end
end

-- spawn(c, policy) -> init pid | nil, msg: a monitor for container c
-- (runtime.start's c), which creates and starts it.
function M.spawn(c, policy)
  local paths, app = c.paths, c.app.name
  local d, err = M.open(paths, app, true)
  if not d then return nil, err end
  local base = { c.rt.runc, "--root", c.rt.root }
  local function argv(...)
    local a = { table.unpack(base) }
    for _, x in ipairs({ ... }) do a[#a + 1] = x end
    return a
  end
  local opts = {
    id = c.id,
    create = argv("create", "--bundle", c.bundle, "--pid-file", M.dir(paths, app) .. "/init.pid", c.id),
    start = argv("start", c.id),
    delete = argv("delete", "--force", c.id),
    pid_file = "init.pid",
    logs = d, state = d,
    restart = policy.restart,
    backoff_initial = policy.backoff_initial, backoff_max = policy.backoff_max,
    crash_limit = policy.crash_limit, quick_run = policy.quick_run,
    log_max = policy.log_max, log_keep = policy.log_keep,
    timeout = 60, runc_timeout = 60,
    cgroup = M.cgroup(c.id),
  }
  -- Its parent directory first (mkdir is not recursive in the monitor).
  if opts.cgroup then ct.fs.mkdir(opts.cgroup:match("^(.*)/[^/]+$"), 493, true) end
  -- The pipes belong to the app's mapped root, so /dev/stdout opens inside.
  if c.idmap and not c.idmap.go then opts.uid, opts.gid = c.idmap.uid, c.idmap.gid end
  -- Only where a journal listens (a host without systemd has no socket).
  if policy.journald and ct.fs.exists(policy.journal_socket) then
    opts.journal, opts.journal_identifier, opts.journal_container = policy.journal_socket, app, app
  end
  local mpid, pid, serr = ct.monitor.spawn(opts)
  d:close()
  if not mpid then
    local msg = tostring(pid)
    return nil, msg:match('msg="(.-)"') or msg
  end
  return pid or true, serr
end

-- exit_text(e) -> "exit code 3" | "signal 9 (exit 137)" | nil
function M.exit_text(e)
  if type(e) ~= "table" then return nil end
  if e.signal then return string.format("signal %d (exit %d)", e.signal, 128 + e.signal) end
  if e.code then return "exit code " .. tostring(e.code) end
  return nil
end

-- tail(paths, app, max) -> the last max bytes of the app's current log
-- records, as text (for hints after a failed start), or nil.
function M.tail(paths, app, max)
  local d = M.open(paths, app)
  if not d then return nil end
  local f = d:open("current.log")
  d:close()
  if not f then return nil end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - max))
  local text = f:read_all(max)
  f:close()
  return text
end

return M
