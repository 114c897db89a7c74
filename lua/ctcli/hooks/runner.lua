-- Per-app Lua hooks and migrations. Every call runs in a forked child (its
-- own process group and cgroup) under a deadline: the parent kills the
-- whole cgroup, and any `runc exec` the hook started, when it passes. The chunk gets a
-- fresh environment, is loaded as text only, and sees the host only through
-- ctx. The sandbox prevents accidents, not attacks: trust in a package's
-- hooks comes from its signature.
local ct = require("ct")
local json = require("ctcli.base.json")
local appfs = require("ctcli.runtime.appfs")
local store = require("ctcli.store.images")
local runtime = require("ctcli.runtime.runc")
local hookcgroup = require("ctcli.hooks.cgroup")
local clock = require("ctcli.base.clock")
local wanted = require("ctcli.store.wanted")

local M = {}

local ENOENT = ct.fs.errno.ENOENT

-- append(path, s): s at the end of the file (made 0644 when missing).
local function append(path, s)
  local f = ct.fs.open(path, { write = true, create = true, append = true, mode = 420 })
  if f then f:write(s) f:close() end
end

M.POINTS = {
  "pre_install", "post_install", "pre_upgrade", "post_upgrade", "pre_start", "post_start",
  "pre_stop", "post_stop", "pre_rollback", "post_rollback",
}
M.DEFAULT_TIMEOUT = 60

-- sources(paths, app, base) -> array of {label=, text=}: the package's hook
-- file (base is the release dir, or the extracted package before one
-- exists), then the operator's <root>/hooks/<app>.lua.
function M.sources(paths, app, base, package_rel)
  local out = {}
  local rel = package_rel or app.hooks
  if rel then
    local text = ct.fs.read(base .. "/" .. rel)
    if text then out[#out + 1] = { label = (package_rel or app.hooks), text = text } end
  end
  local op = paths.hooks .. "/" .. app.name .. ".lua"
  local text = ct.fs.read(op)
  if text then out[#out + 1] = { label = op, text = text } end
  return out
end

-- check(sources) -> true | nil, msg: every file compiles as text (nothing runs).
function M.check(sources)
  for _, s in ipairs(sources) do
    if s.text:sub(1, 4) == "\27Lua" then
      return nil, s.label .. ": precompiled (binary) hook files are refused; ship the source"
    end
    local ok, err = load(s.text, "@" .. s.label, "t", {})
    if not ok then return nil, err end
  end
  return true
end

local copy = require("ctcli.base.tables").copy

-- The environment a hook file runs in: no io, no os beyond the clock and
-- getenv, no require/dofile/loadfile/debug/package, no bytecode.
local function sandbox_env(log)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, xpcall = xpcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, rawequal = rawequal, rawget = rawget, rawset = rawset, rawlen = rawlen,
    setmetatable = setmetatable, getmetatable = getmetatable,
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
    os = { time = os.time, date = os.date, clock = os.clock, getenv = os.getenv },
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      log(table.concat(parts, "\t"))
    end,
    _VERSION = _VERSION,
  }
  env.string.dump = nil
  env.load = function(chunk, name, mode, e)
    if type(chunk) ~= "string" then error("load: only text chunks are allowed here", 2) end
    if mode ~= nil and mode ~= "t" then error("load: only text mode is allowed here", 2) end
    if type(e) ~= "table" then error("load: give an explicit environment table", 2) end
    return load(chunk, name, "t", e)
  end
  env._G = env
  return env
end

-- Resolves a host path under one of the app's own directories.
local function beneath(dirs, path)
  if type(path) ~= "string" then error("expected a path string", 3) end
  for _, base in ipairs(dirs) do
    if path == base then return nil end
    if path:sub(1, #base + 1) == base .. "/" then return base, path:sub(#base + 2) end
  end
  error(string.format("%s is outside this app's config, data and logs directories", path), 3)
end

-- The ctx a hook function gets (built in the child).
local function make_ctx(info, emit, workdir)
  local hp = info.paths
  local dirs = { hp.config, hp.data, hp.logs }
  local exec_n = 0
  local ctx = {
    app = info.app, phase = info.phase, from_version = info.from_version,
    to_version = info.to_version, release = info.release,
    paths = { config = hp.config, data = hp.data, logs = hp.logs, rootfs = hp.rootfs },
    json = { encode = json.encode, decode = json.decode },
  }
  function ctx.log(msg) emit("log\t" .. tostring(msg)) end
  -- `hook test` shows what a hook did: each command and file it wrote.
  local function trace(kind, what)
    if info.trace then emit(kind .. "\t" .. json.encode(what)) end
  end
  function ctx.fail(msg) error(tostring(msg), 2) end
  function ctx.run(argv, opts)
    opts = opts or {}
    if type(argv) ~= "table" then error("ctx.run: argv must be an array of strings", 2) end
    local r, err = ct.proc.run(argv, { stdin = opts.stdin, env_add = opts.env, cwd = opts.cwd, timeout = opts.timeout })
    trace("run", { argv = json.array(argv), code = r and r.code or json.null, error = err })
    if not r then return nil, err end
    return { code = r.code, stdout = r.stdout, stderr = r.stderr }
  end
  function ctx.exec(argv, opts)
    opts = opts or {}
    if type(argv) ~= "table" then error("ctx.exec: argv must be an array of strings", 2) end
    exec_n = exec_n + 1
    local pidfile = string.format("%s/exec-%d.pid", workdir, exec_n)
    local full
    local rt = { runc = info.runc, root = info.runc_root }
    if info.running then
      full = runtime.argv(rt, "exec", "--pid-file", pidfile, info.container)
    else
      -- The app is stopped: a temporary container of its bundle runs the
      -- command. runc follows symlinks in bind sources: check them first,
      -- each time (an earlier temporary container may have planted one).
      local bok, berr = appfs.check_binds(info.root_paths, info.app_model)
      if not bok then return nil, berr end
      local tdir = string.format("%s/bundle-%d", workdir, exec_n)
      ct.fs.mkdir(tdir, 448)
      local tok, terr = runtime.temporary(info.bundle, tdir, argv, false)
      if not tok then return nil, terr end
      local tid = runtime.temporary_id(info.root_paths, info.app, "hook", exec_n)
      append(workdir .. "/temporary-ids", tid .. "\n")
      full = runtime.argv(rt, "run", "--pid-file", pidfile, "--bundle", tdir, tid)
      local r, err = ct.proc.run(full, { stdin = opts.stdin, timeout = opts.timeout })
      trace("exec", { argv = json.array(argv), code = r and r.code or json.null, error = err })
      runtime.delete(rt, tid)
      runtime.temporary_done(tdir)
      if not r then return nil, err end
      return { code = r.code, stdout = r.stdout, stderr = r.stderr }
    end
    for _, a in ipairs(argv) do full[#full + 1] = a end
    local r, err = ct.proc.run(full, { stdin = opts.stdin, timeout = opts.timeout })
    trace("exec", { argv = json.array(argv), code = r and r.code or json.null, error = err })
    if not r then return nil, err end
    return { code = r.code, stdout = r.stdout, stderr = r.stderr }
  end
  -- The app's dirs are its own to plant links and FIFOs in: a hook reads
  -- and writes them beneath the dir, following no symlink (appfs rules).
  -- A missing file is nil (a hook may test for it); anything else that
  -- stops the read (a path leaving the dir through .. or a symlink, a
  -- directory, a FIFO) is an error, never a silent nil.
  function ctx.read(path)
    local base, rel = beneath(dirs, path)
    if not base then error("ctx.read " .. path .. ": a directory, not a file", 2) end
    local d, derr, dno = ct.fs.opendir(base)
    if not d then
      if dno == ENOENT then return nil end
      error("ctx.read " .. path .. ": " .. tostring(derr), 2)
    end
    local data, err, errno = d:read(rel)
    d:close()
    if data == nil and errno ~= ENOENT then error("ctx.read " .. path .. ": " .. tostring(err), 2) end
    return data
  end
  function ctx.write(path, text)
    local base, rel = beneath(dirs, path)
    if not base then error("cannot write a directory", 2) end
    if type(text) ~= "string" then error("ctx.write: text must be a string", 2) end
    if info.read_only then error("ctx.write " .. path .. ": refused, the live dirs are read-only here (hook test --live)", 2) end
    -- The app's own directory is ours to create (before its first start);
    -- deeper parents must exist, so no symlink an app planted is followed.
    if not ct.fs.exists(base) then ct.fs.mkdir(base, 448, true) end
    local d, err = ct.fs.opendir(base)
    local ok
    if d then
      -- A file that exists keeps its permission bits and owner (an
      -- operator's 0640 app:app config stays so); a new one is 0600 root.
      local st = d:stat(rel)
      local existing = st and st.type == "file"
      ok, err = d:write_atomic(rel, text, existing and (st.mode & 511) or 384)
      if ok and existing and (st.uid ~= 0 or st.gid ~= 0) then ok, err = d:chown(rel, st.uid, st.gid) end
      d:close()
    end
    if not ok then error("ctx.write " .. path .. ": " .. tostring(err), 2) end
    trace("write", { path = path, bytes = #text })
    return true
  end
  return ctx
end

-- The time limit of one hook call: the app's own, else --hook-timeout, else 60 s.
local function time_limit(hc, app)
  return app.hook_timeout or hc.timeout or M.DEFAULT_TIMEOUT
end

-- Loads a source in the child and returns its table.
local function load_source(src, env)
  local chunk, err = load(src.text, "@" .. src.label, "t", env)
  if not chunk then error(err, 0) end
  local t = chunk()
  if type(t) ~= "table" then error(src.label .. ": a hook file must return a table of functions", 0) end
  return t
end

-- table_problems(t) -> array of {key=, message=}: what in a hook file's
-- table cannot run: a hook point that is not a function, migrations that
-- are not a table of functions keyed by string ids.
local function table_problems(t)
  local out = {}
  for _, p in ipairs(M.POINTS) do
    if t[p] ~= nil and type(t[p]) ~= "function" then
      out[#out + 1] = { key = p, message = "expected a function, got a " .. type(t[p]) }
    end
  end
  local m = t.migrations
  if m ~= nil and type(m) ~= "table" then
    out[#out + 1] = { key = "migrations", message = "expected a table of functions keyed by id, got a " .. type(m) }
  elseif m ~= nil then
    for k, v in pairs(m) do
      if type(k) ~= "string" or k == "" then
        out[#out + 1] = { key = "migrations", message = string.format(
          "key %s is not an id; migrations are keyed by string ids such as [\"0001-add-index\"]", tostring(k)) }
      elseif type(v) ~= "function" then
        out[#out + 1] = { key = "migrations[\"" .. k .. "\"]", message = "expected a function, got a " .. type(v) }
      end
    end
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

-- The time limit of evaluating a hook file's top level for `validate`.
local SHAPE_TIMEOUT = 10

-- shape(text, label) -> {problems = {{key=, message=}}, migrations = {ids}} | nil, msg.
-- Runs the file's top level (what builds its table; no hook is called) in a
-- sandboxed child under a short deadline: only that shows what a value is.
function M.shape(text, label)
  local ok, _, result, _, kind = ct.proc.fork_call(function()
    string.dump = nil -- luacheck: ignore 122
    local t = load_source({ text = text, label = label }, sandbox_env(function() end))
    local ids = {}
    if type(t.migrations) == "table" then
      for k in pairs(t.migrations) do
        if type(k) == "string" then ids[#ids + 1] = k end
      end
    end
    table.sort(ids)
    return json.encode({ problems = json.array(table_problems(t)), migrations = json.array(ids) })
  end, SHAPE_TIMEOUT)
  if not ok then
    if kind == "timeout" then
      return nil, string.format("its top level did not finish within %ds", SHAPE_TIMEOUT)
    end
    return nil, tostring(result)
  end
  return json.decode(result)
end

local log_line
local cgroup_warned = false

-- Runs fn(emit) in a sandboxed child, in a cgroup of its own, under the
-- deadline. When the call ends, at the deadline or not, every process it
-- started on the host is killed (the cgroup holds a `setsid` daemon too;
-- without a cgroup, only its process group is, and the first call says so
-- in the log). -> ok, result_or_error, log lines, kind of failure (as
-- ct.proc.fork_call: "timeout", "error", "signal", "exit", "malformed")
local function in_child(hc, timeout, fn, app_name, point)
  local workdir = ct.fs.mkdtemp(hc.paths.tmp .. "/hook-XXXXXX")
  local cgroup, why = hookcgroup.next()
  local ok, lines, result, note, kind = ct.proc.fork_call(function(emit)
    -- The string metatable reaches the real library: take dump out of it.
    string.dump = nil -- luacheck: ignore 122
    return fn(emit, workdir)
  end, timeout, { cgroup = cgroup })
  note = note or why
  if note and not cgroup_warned then
    cgroup_warned = true
    log_line(hc, app_name, point, "no cgroup for hooks (" .. note .. "): a process a hook starts" ..
      " in a new session (setsid) can outlive the hook")
  end
  if not ok then
    -- Commands it ran inside containers are not in its process group.
    for _, f in ipairs(ct.fs.dir(workdir) or {}) do
      if f:match("%.pid$") then
        local pid = tonumber(ct.fs.read(workdir .. "/" .. f) or "")
        if pid then ct.proc.kill(pid, ct.proc.signals.KILL) end
      end
    end
    for tid in (ct.fs.read(workdir .. "/temporary-ids") or ""):gmatch("%S+") do
      runtime.delete({ runc = hc.runc, root = hc.paths.runc_root }, tid)
    end
    for _, f in ipairs(ct.fs.dir(workdir) or {}) do
      if f:match("^bundle%-%d+$") then runtime.temporary_done(workdir .. "/" .. f) end
    end
  end
  ct.fs.rmtree(workdir)
  return ok, result, lines or {}, kind
end

function log_line(hc, app, point, msg)
  wanted.log(hc.paths, "%s %s: %s", app, point, msg)
  if hc.print then hc.print(string.format("%s %s: %s", app, point, msg)) end
end

local function relay(hc, app, point, lines)
  for _, l in ipairs(lines) do
    local msg = l:match("^log\t(.*)$")
    if msg then log_line(hc, app, point, msg) end
    if hc.trace then
      local kind, rest = l:match("^(%a+)\t(.*)$")
      if kind then hc.trace(kind, kind == "log" and rest or json.decode(rest)) end
    end
  end
end

-- info(hc, app, point, extra) -> the plain data the child's ctx is made of.
local function info_for(hc, app, point)
  local hp = appfs.host_paths(hc.paths, app.name)
  return {
    app = app.name, phase = point, from_version = hc.from_versions and hc.from_versions[app.name],
    to_version = hc.to_versions and hc.to_versions[app.name], release = hc.release_id,
    paths = { config = hp.config, data = hp.data, logs = hp.logs,
      rootfs = store.rootfs(hc.paths, app) },
    running = hc.running[app.name],
    root_paths = hc.paths, app_model = app,
    runc = hc.runc, runc_root = hc.paths.runc_root,
    container = runtime.container_id(hc.paths, app.name),
    bundle = hc.bundle_dir and (hc.bundle_dir .. "/apps/" .. app.name) or nil,
    trace = hc.trace ~= nil, read_only = hc.read_only,
  }
end

-- context(ctx, opts) -> a hook context. opts: base (the dir app.hooks is
-- relative to), release_id, from (release the apps come from), to (release
-- model they go to), runc, bundle_dir, fired.
function M.context(ctx, opts)
  local from_versions, to_versions = {}, {}
  for _, a in ipairs(opts.from and opts.from.apps or {}) do from_versions[a.name] = a.version end
  for _, a in ipairs(opts.to and opts.to.apps or {}) do to_versions[a.name] = a.version end
  local hc = {
    paths = ctx.paths, base = opts.base, release_id = opts.release_id,
    runc = opts.runc or require("ctcli.runtime.tools").which("runc"),
    bundle_dir = opts.bundle_dir, from_versions = from_versions, to_versions = to_versions,
    timeout = ctx.hook_timeout, fired = opts.fired,
    -- ctx.log lines (also in logs/ctcli.log) and, with -v, each hook that
    -- runs: the command's reporter (ctcli.base.report) says them, not this.
    print = ctx.report and function(line) ctx.report.step("%s", line) end,
    report = ctx.report,
  }
  hc.running = setmetatable({}, { __index = function(_, name)
    if not hc.runc then return false end
    local st = runtime.state({ runc = hc.runc, root = ctx.paths.runc_root }, runtime.container_id(ctx.paths, name))
    return st and st.status == "running" or false
  end })
  return hc
end

-- run(hc, app, point) -> true | nil, msg. hc (a hook context) = {paths=,
-- base= (dir the app's hook path is relative to), release_id=, runc=,
-- running= {name=true}, from_versions=, to_versions=, timeout=, print=,
-- fired= (array to record "app:point" in)}.
function M.run(hc, app, point)
  local sources = M.sources(hc.paths, app, hc.base)
  if #sources == 0 then return true end
  local ok, err = M.check(sources)
  if not ok then return nil, err end
  local info = info_for(hc, app, point)
  for _, src in ipairs(sources) do
    local timeout = time_limit(hc, app)
    local t0 = ct.time.monotonic()
    local done, result, lines, kind = in_child(hc, timeout, function(emit, workdir)
      local ctx = make_ctx(info, emit, workdir)
      local t = load_source(src, sandbox_env(ctx.log))
      local f = t[point]
      local mid = point:match("^migration:(.+)$")
      if mid then f = type(t.migrations) == "table" and t.migrations[mid] or nil end
      if f == nil then return "absent" end
      if type(f) ~= "function" then error(src.label .. ": " .. point .. " is not a function", 0) end
      f(ctx)
      return "ran"
    end, app.name, point)
    relay(hc, app.name, point, lines)
    if hc.report and result ~= "absent" then
      hc.report.detail("hook %s of %s (%s): %s (%.2f s)", point, app.name, src.label, done and "ran" or "failed",
        ct.time.monotonic() - t0)
    end
    if not done then
      if kind == "timeout" then
        return nil, string.format("%s hook of %s (%s) hit its time limit of %gs and was killed",
          point, app.name, src.label, timeout)
      end
      return nil, result
    end
    if result == "ran" and hc.fired then hc.fired[#hc.fired + 1] = app.name .. ":" .. point end
  end
  return true
end

-- The migration record lives with the data it describes.
function M.applied(hc, app)
  local text = appfs.read_migrations(hc.paths, app.name)
  local rec = text and json.decode(text) or {}
  local done = {}
  for _, r in ipairs(rec) do done[r.id] = r end
  return done, rec
end

-- migration_ids(hc, app [, sources]) -> ordered ids defined for app | nil, msg
function M.migration_ids(hc, app, sources)
  sources = sources or M.sources(hc.paths, app, hc.base)
  if #sources == 0 then return {} end
  local ok, err = M.check(sources)
  if not ok then return nil, err end
  local info = info_for(hc, app, "migrations")
  local done, result = in_child(hc, time_limit(hc, app), function(emit, workdir)
    local ctx = make_ctx(info, emit, workdir)
    local ids = {}
    for _, src in ipairs(sources) do
      local t = load_source(src, sandbox_env(ctx.log))
      -- Found before any migration runs, so nothing fails half-way.
      local bad = table_problems(t)[1]
      if bad then error(string.format("%s: %s: %s", src.label, bad.key, bad.message), 0) end
      if type(t.migrations) == "table" then
        for id in pairs(t.migrations) do ids[#ids + 1] = tostring(id) end
      end
    end
    return json.encode(json.array(ids))
  end, app.name, "migrations")
  if not done then return nil, result end
  local defined = json.decode(result) or {}
  local set = {}
  for _, id in ipairs(defined) do set[id] = true end
  local order = {}
  if app.migrations then
    for _, id in ipairs(app.migrations) do
      if not set[id] then
        return nil, string.format("migration %s of %s is listed in the manifest but no hook file defines it", id, app.name)
      end
      order[#order + 1] = id
    end
  else
    for id in pairs(set) do order[#order + 1] = id end
    table.sort(order)
  end
  return order
end

-- migrate(hc, app) -> ran ids | nil, msg: each pending migration once, in
-- order, recorded under data/<app>/.ctcli/ as soon as it succeeds.
function M.migrate(hc, app)
  local sources = M.sources(hc.paths, app, hc.base)
  local order, err = M.migration_ids(hc, app, sources)
  if not order then return nil, err end
  local done, rec = M.applied(hc, app)
  local ran = {}
  for _, id in ipairs(order) do
    if not done[id] then
      local info = info_for(hc, app, "migration " .. id)
      local timeout = time_limit(hc, app)
      local ok, result, lines, kind = in_child(hc, timeout, function(emit, workdir)
        local ctx = make_ctx(info, emit, workdir)
        for _, src in ipairs(sources) do
          local t = load_source(src, sandbox_env(ctx.log))
          local f = type(t.migrations) == "table" and t.migrations[id]
          if f ~= nil and type(f) ~= "function" then
            error(string.format("%s: migration %s is not a function (a %s)", src.label, id, type(f)), 0)
          end
          if f then f(ctx) return "ran" end
        end
        return "absent"
      end, app.name, "migration " .. id)
      relay(hc, app.name, "migration " .. id, lines)
      if hc.report then hc.report.detail("migration %s of %s: %s", id, app.name, ok and "ran" or "failed") end
      if not ok then
        if kind == "timeout" then
          return nil, string.format("migration %s of %s hit its time limit of %gs and was killed", id, app.name, timeout)
        end
        return nil, string.format("migration %s of %s: %s", id, app.name, result)
      end
      rec[#rec + 1] = { id = id, release = hc.release_id, time = clock.iso() }
      local wok, werr = appfs.write_migrations(hc.paths, app.name, json.encode(json.array(rec), true) .. "\n")
      if not wok then return nil, werr end
      if hc.fired then hc.fired[#hc.fired + 1] = app.name .. ":migration:" .. id end
      ran[#ran + 1] = id
    end
  end
  return ran
end

return M
