-- Supervision (ctcli.runtime.monitor; DESIGN "Settled — processes"): every running container has a
-- monitor (engine/monitor.c; its protocol and files in
-- docs/architecture.md). This module decides everything the monitor does
-- not: where its files are, the restart policy and its numbers, the log
-- sizes, and what a dead monitor means. Its files live in state/runs/<app>/,
-- outside every tree bound into the container: state.json, monitor.sock,
-- current.log and the rotated NNNNNNNN.log.
local ct = require("ct")
local json = require("ctcli.base.json")
local rootconf = require("ctcli.store.rootconf")

local monitor = {}

-- told(rt, argv, t0): with -v, each runc call with its argv and time
-- (rt.report, the command's reporter, when the caller gave one): runc's
-- own calls and the ones a monitor makes for us.
function monitor.told(rt, argv, t0)
  if rt.report and rt.report.verbose then
    rt.report.detail("runc: %s (%.3f s)", table.concat(argv, " "), ct.time.monotonic() - t0)
  end
end

-- alive(pid): ct.proc.alive for what a state file recorded (maybe nothing);
-- a zombie (exited, not yet reaped by its new parent) is gone.
function monitor.alive(pid)
  return math.type(pid) == "integer" and pid > 0 and ct.proc.alive(pid)
end

monitor.POLICIES = { ["no"] = true, ["on-failure"] = true, ["always"] = true }

-- The numbers of a policy, unless ctcli.json's "supervision" says otherwise
-- (the tests shorten them there).
monitor.DEFAULTS = {
  backoff_initial = 1, backoff_max = 60, crash_limit = 5, quick_run = 10,
  log_max = 64 * 1024 * 1024, log_keep = 5,
  journal_socket = "/run/systemd/journal/socket",
}

function monitor.dir(paths, app)
  return paths.state .. "/runs/" .. app
end

-- open(paths, app [, create]) -> Dir of state/runs/<app> | nil, msg
function monitor.open(paths, app, create)
  local dir = monitor.dir(paths, app)
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
function monitor.policy(rel, app, conf)
  local over = rootconf.app(conf, app.name).restart
  local restart = over or app.restart
  if not restart then restart = (rel.format == "manifest") and "on-failure" or "no" end
  local p = { restart = restart }
  local sup = type(conf.supervision) == "table" and conf.supervision or {}
  for k, v in pairs(monitor.DEFAULTS) do p[k] = sup[k] or v end
  -- Forwarding to the journal: the manifest's opt-in, or ctcli.json's say.
  local jd = rootconf.app(conf, app.name).journald
  if jd == nil then jd = app.journald == true end
  p.journald = jd
  return p
end

-- state(paths, app) -> the monitor's state.json, or nil (never supervised).
function monitor.state(paths, app)
  local text = ct.fs.read(monitor.dir(paths, app) .. "/state.json")
  local st = text and json.decode(text)
  if type(st) ~= "table" then return nil end
  return st
end

-- shown(st, mon) -> an app's state as status and events show it, from
-- runc's state st and its monitor's record mon: runc's ("exited" for a
-- container still listed but stopped: ctcli deletes those it stops), or,
-- when none runs, "failed" after a crash loop and "restarting" while a live
-- monitor waits out a backoff.
function monitor.shown(st, mon)
  local state = st and st.status or "stopped"
  if state == "stopped" and st then state = "exited" end
  if mon and state ~= "running" and state ~= "paused" then
    if mon.state == "failed" then return "failed" end
    if mon.state == "restarting" and monitor.live(mon) then return "restarting" end
  end
  return state
end

-- live(st) -> true when the monitor that wrote st still runs.
function monitor.live(st)
  return st ~= nil and monitor.alive(st.monitor_pid)
end

-- SUPERVISING: the states in which a live monitor holds the app.
local SUPERVISING = { starting = true, running = true, restarting = true, stopping = true }

-- lost(st) -> true when a monitor was supervising and is gone (killed):
-- the app has no stdout reader and no restart policy until its next start.
function monitor.lost(st)
  return st ~= nil and SUPERVISING[st.state] == true and not monitor.live(st)
end

-- request(paths, app, line) -> reply | nil, msg
function monitor.request(paths, app, line)
  local d, err = monitor.open(paths, app)
  if not d then return nil, err end
  local reply, rerr = ct.monitor.request(d, line, 5000)
  d:close()
  return reply, rerr
end

-- stop(paths, app): tells the app's monitor that the coming exit is
-- ctcli's doing (no restart); nothing when no monitor supervises it.
function monitor.stop(paths, app)
  local st = monitor.state(paths, app)
  if not monitor.live(st) then return true end
  return monitor.request(paths, app, "stop")
end

-- cgroup(id) -> the cgroup a monitor moves itself into, or nil: its own,
-- outside the cgroup of whatever started it, so that a systemd unit (a
-- oneshot's or a timer's) ending or being stopped does not kill it (as
-- podman puts conmon in a cgroup of its own). The unified hierarchy (v2),
-- else v1's name=systemd hierarchy, by which systemd tracks (and kills) a
-- unit's processes; nothing when neither is there.
monitor.CGROUP_DIR = "ctcli-monitors"
function monitor.cgroup(id)
  local mnt = "/sys/fs/cgroup"
  if ct.fs.exists(mnt .. "/cgroup.controllers") then return mnt .. "/" .. monitor.CGROUP_DIR .. "/" .. id end
  if ct.fs.exists(mnt .. "/systemd/cgroup.procs") then return mnt .. "/systemd/" .. monitor.CGROUP_DIR .. "/" .. id end
  return nil
end

-- forget_cgroup(id): the empty cgroup of an exited monitor goes.
function monitor.forget_cgroup(id)
  local dir = monitor.cgroup(id)
  if dir then ct.fs.rmdir(dir) end
end

-- The monitor's configuration (engine/monitor.h): the string options as
-- records of these names, the numbers scaled to whole units (ms), the argvs
-- one record per argument.
local CONFIG_STRINGS = {
  { "id", "id" }, { "pid_file", "pid_file" }, { "restart", "restart" }, { "cgroup", "cgroup" },
  { "journal", "journal" }, { "journal_name", "journal_name" },
}
local CONFIG_NUMBERS = { -- option, record, scale, when absent (nil: needed; "policy": needed unless restart is "no")
  { "log_max", "log_max", 1 }, { "log_keep", "log_keep", 1 },
  { "backoff_initial", "backoff_ms", 1000, "policy" }, { "backoff_max", "backoff_max_ms", 1000, "policy" },
  { "crash_limit", "limit", 1, "policy" }, { "quick_run", "quick_ms", 1000, "policy" },
  { "runc_timeout", "runc_ms", 1000, 0 }, { "uid", "uid", 1, -1 }, { "gid", "gid", 1, -1 },
  { "log_seq", "log_seq", 1, 0 },
}

-- config(o) -> the configuration a monitor reads; raises on a bad option
-- (a caller's bug: the values come from policy() and monitor.spawn).
function monitor.config(o)
  assert(monitor.POLICIES[o.restart], "opts.restart must be \"no\", \"on-failure\" or \"always\"")
  local recs = { "ctcli-monitor-config=" .. ct.monitor.config_version }
  local function add(key, v)
    assert(type(v) == "string" and not v:find("\0", 1, true), "opts." .. key .. " must be a string without NUL")
    recs[#recs + 1] = key .. "=" .. v
  end
  for _, f in ipairs(CONFIG_STRINGS) do
    if o[f[1]] ~= nil or f[1] == "id" or f[1] == "pid_file" then add(f[2], o[f[1]]) end
  end
  -- What fits a datagram and a socket address (engine/monitor.h).
  assert(o.journal == nil or (o.journal:sub(1, 1) == "/" and #o.journal < 108),
    "opts.journal must be an absolute socket path below 108 bytes")
  for _, k in ipairs({ "id", "journal_name" }) do
    assert(#(o[k] or "") <= 255 and not (o[k] or ""):find("\n", 1, true),
      "opts." .. k .. ": at most 255 bytes, no newline (a journal field)")
  end
  for _, f in ipairs(CONFIG_NUMBERS) do
    local v, absent = o[f[1]], f[4]
    if absent == "policy" then absent = o.restart == "no" and 0 or nil end
    if v == nil then v = absent end
    assert(type(v) == "number" and (v >= 0 or v == absent) and v * f[3] < 9e15,
      "opts." .. f[1] .. " must be a number >= 0")
    recs[#recs + 1] = string.format("%s=%d", f[2], math.floor(v * f[3] + 0.5))
  end
  for _, key in ipairs({ "create", "start", "delete" }) do
    assert(type(o[key]) == "table" and #o[key] >= 1 and #o[key] <= 64, "opts." .. key .. " must be an argv: 1 to 64 strings")
    for _, a in ipairs(o[key]) do add(key, a) end
  end
  return table.concat(recs, "\0") .. "\0"
end

-- launch(o) -> monitor pid, init pid | nil, msg, errno: starts a monitor
-- with o's configuration (config), its Dirs o.logs and o.state, waiting at
-- most o.timeout seconds for its report.
function monitor.launch(o)
  o.log_seq = monitor.rotated(o.logs, o.log_keep)
  return ct.monitor.spawn(o.id, monitor.config(o), o.logs, o.state, o.timeout)
end

-- rotated(d, keep) -> the number of the newest rotated log (NNNNNNNN.log)
-- in Dir d, 0 for none, having removed those beyond the newest keep: the
-- monitor numbers its next rotation from there.
function monitor.rotated(d, keep)
  local seqs = {}
  for _, n in ipairs(d:list("") or {}) do
    local seq = n:match("^(%d%d%d%d%d%d%d%d)%.log$")
    if seq then seqs[#seqs + 1] = tonumber(seq) end
  end
  table.sort(seqs)
  local newest = seqs[#seqs] or 0
  for _, seq in ipairs(seqs) do
    if seq + keep <= newest then d:unlink(string.format("%08d.log", seq)) end
  end
  return newest
end

-- spawn(c, policy) -> init pid | nil, msg: a monitor for container c
-- (runtime.start's c), which creates and starts it.
function monitor.spawn(c, policy)
  local paths, app = c.paths, c.app.name
  local d, err = monitor.open(paths, app, true)
  if not d then return nil, err end
  local base = { c.rt.runc, "--root", c.rt.root }
  local function argv(...)
    local a = { table.unpack(base) }
    for _, x in ipairs({ ... }) do a[#a + 1] = x end
    return a
  end
  local opts = {
    id = c.id,
    create = argv("create", "--bundle", c.bundle, "--pid-file", monitor.dir(paths, app) .. "/init.pid", c.id),
    start = argv("start", c.id),
    delete = argv("delete", "--force", c.id),
    pid_file = "init.pid",
    logs = d, state = d,
    restart = policy.restart,
    backoff_initial = policy.backoff_initial, backoff_max = policy.backoff_max,
    crash_limit = policy.crash_limit, quick_run = policy.quick_run,
    log_max = policy.log_max, log_keep = policy.log_keep,
    timeout = 60, runc_timeout = 60,
    cgroup = monitor.cgroup(c.id),
  }
  -- Its parent directory first (mkdir is not recursive in the monitor).
  if opts.cgroup then ct.fs.mkdir(opts.cgroup:match("^(.*)/[^/]+$"), 493, true) end
  -- The pipes belong to the app's mapped root, so /dev/stdout opens inside.
  if c.idmap and not c.idmap.go then opts.uid, opts.gid = c.idmap.uid, c.idmap.gid end
  -- Only where a journal listens (a host without systemd has no socket).
  if policy.journald and ct.fs.exists(policy.journal_socket) then
    opts.journal, opts.journal_name = policy.journal_socket, app
  end
  local t0 = ct.time.monotonic()
  local mpid, pid, serr = monitor.launch(opts)
  d:close()
  -- The monitor runs create and start itself: told as one call.
  monitor.told(c.rt, { table.concat(opts.create, " "), "&&", table.concat(opts.start, " "), "(by its monitor)" }, t0)
  if not mpid then return nil, tostring(pid) end -- runc's words, read by runtime.message
  return pid or true, serr
end

-- exit_text(e) -> "exit code 3" | "signal 9 (exit 137)" | nil
function monitor.exit_text(e)
  if type(e) ~= "table" then return nil end
  if e.signal then return string.format("signal %d (exit %d)", e.signal, 128 + e.signal) end
  if e.code then return "exit code " .. tostring(e.code) end
  return nil
end

-- tail(paths, app, max) -> the last max bytes of the app's current log
-- records, as text (for hints after a failed start), or nil.
function monitor.tail(paths, app, max)
  local d = monitor.open(paths, app)
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

return monitor
