-- What commands do with the apps of a release: choose them, prepare their
-- files, start and stop them in dependency order, read their state.
-- The hook runner, the image store and appfs are required where they are
-- used (preparing, starting, stopping), so a reader such as status does not
-- load them.
local ct = require("ct")
local health = require("ctcli.runtime.health")
local monitor = require("ctcli.runtime.runc").monitor
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local report = require("ctcli.base.report")
local runtime = require("ctcli.runtime.runc")
local userns = require("ctcli.runtime.userns")

local M = {}

-- select(rel, names) -> array of app records (all when names is empty) | nil, msg
function M.select(rel, names)
  if not names or #names == 0 then
    local out = {}
    for _, n in ipairs(rel.order) do out[#out + 1] = rel.by_name[n] end
    return out
  end
  local known = {}
  for _, n in ipairs(rel.order) do known[#known + 1] = n end
  local want = {}
  for _, n in ipairs(names) do
    if not rel.by_name[n] then
      return nil, string.format("unknown app '%s'; this release has: %s", n, table.concat(known, ", "))
    end
    want[n] = true
  end
  local out = {}
  for _, n in ipairs(rel.order) do
    if want[n] then out[#out + 1] = rel.by_name[n] end
  end
  return out
end

-- prepare_files(paths, app) -> true | nil, msg: the app's config, data
-- and logs dirs, seeded from its image (appfs.prepare).
function M.prepare_files(paths, app)
  local store = require("ctcli.store.images")
  return require("ctcli.runtime.appfs").prepare(paths, app, store.image_seed(paths, app))
end

-- move_to_mapping(paths, uc, rel, app) -> mapping | false | nil, msg: a
-- stopped app's image and files moved to the mapping it is to run with,
-- its bundle regenerated (see ctcli.runtime.userns). Done at every start: cheap
-- when nothing moves, and it finishes a move a crash cut short.
local function move_to_mapping(paths, uc, rel, app)
  local m, err = userns.prepare_image(paths, uc, app)
  if m == nil then return nil, err end
  m, err = userns.prepare_files(paths, uc, app)
  if m == nil then return nil, err end
  local ok, ferr = userns.finish(paths, uc, rel, app, m)
  if not ok then return nil, ferr end
  return m
end

function M.container(ctx, rel, app, tools)
  tools = tools or runtools.of(rel)
  return {
    rt = runtime.rt(ctx.paths, tools, ctx.report),
    id = runtime.container_id(ctx.paths, app.name),
    bundle = release.bundle_dir(rel, app.name),
    paths = ctx.paths,
    signal = app.stop_signal,
    timeout = app.stop_timeout,
    app = app,
  }
end

-- states(ctx, rel [, tools]) -> map app name -> runc state (nil when no
-- container); tools as runtools.of(rel) gives them, when the caller has them.
function M.states(ctx, rel, tools)
  tools = tools or runtools.of(rel)
  local list, err = runtime.list(runtime.rt(ctx.paths, tools, ctx.report))
  if not list then return nil, err end
  local out = {}
  for _, app in ipairs(rel.apps) do
    out[app.name] = list[runtime.container_id(ctx.paths, app.name)]
  end
  return out
end

-- hooks_for(ctx, rel, opts) -> a hook context running rel's hooks.
-- opts: from, to (release models, for the versions), fired
function M.hooks_for(ctx, rel, opts)
  opts = opts or {}
  return require("ctcli.hooks.runner").context(ctx, {
    base = rel.dir, release_id = rel.id, runc = runtools.of(rel).runc, bundle_dir = rel.dir,
    from = opts.from, to = opts.to, fired = opts.fired,
  })
end

-- start(ctx, rel, list, opts) -> started names | nil, msg, step, started
-- opts.hooks: a hook context (pre_start -> start -> post_start per app);
-- opts.health: run each started app's health check afterwards.
function M.start(ctx, rel, list, opts)
  opts = opts or {}
  local hooks = require("ctcli.hooks.runner")
  local tools = runtools.of(rel)
  local hc = opts.hooks
  local rep = report.of(ctx.report)
  local started, started_at = {}, {}
  local uc, uerr = userns.context(ctx.paths)
  if not uc then return nil, uerr, "start", started end
  local states = M.states(ctx, rel) or {}
  local mapping = {}
  -- A running app whose monitor was killed has no reader of its output (its
  -- next write fails) and no restart policy: it is started again, cleanly,
  -- under a new monitor.
  for _, app in ipairs(list) do
    if runtime.running(states[app.name]) and monitor.lost(monitor.state(ctx.paths, app.name)) then
      local ok, err = runtime.stop_many({ M.container(ctx, rel, app, tools) })
      if not ok then return nil, "cannot restart " .. app.name .. " (its monitor is gone): " .. err, "start", started end
      states[app.name] = nil
    end
  end
  for _, app in ipairs(list) do
    -- A running app's trees are its own to change: seeding waits for a
    -- start of a stopped app, when nothing inside can race it.
    local ok, err = true, nil
    if not runtime.running(states[app.name]) then ok, err = M.prepare_files(ctx.paths, app) end
    if not ok then return nil, "cannot prepare " .. app.name .. ": " .. err, "start", started end
    if hc then
      ok, err = hooks.run(hc, app, "pre_start")
      if not ok then return nil, err, "pre_start", started end
    end
    -- After pre_start, which may write into the app's trees as host root.
    if not runtime.running(states[app.name]) then
      ok, err = move_to_mapping(ctx.paths, uc, rel, app)
      if ok == nil then return nil, "cannot prepare " .. app.name .. ": " .. err, "start", started end
      mapping[app.name] = ok
    end
    rep.step("starting %s", app.name)
    local c = M.container(ctx, rel, app, tools)
    c.idmap = mapping[app.name]
    c.policy = monitor.policy(rel, app, uc.conf)
    local res, note = runtime.start(c)
    if not res then
      local hint = userns.hint(ctx.paths, app, mapping[app.name])
      return nil, "cannot start " .. app.name .. ": " .. note .. (hint and ("; " .. hint) or ""), "start", started
    end
    started[#started + 1] = app.name
    started_at[app.name] = ct.time.monotonic()
    if hc then
      ok, err = hooks.run(hc, app, "post_start")
      if not ok then return nil, err, "post_start", started end
    end
  end
  if opts.health then
    local rt = runtime.rt(ctx.paths, tools, ctx.report)
    for _, name in ipairs(started) do
      local ok, err = health.check(ctx.paths, rt, rel.by_name[name], started_at[name])
      if ok and ok > 0 then
        rep.step("health %s: ok after %d attempt%s", name, ok, ok == 1 and "" or "s")
      end
      if not ok then
        local hint = userns.hint(ctx.paths, rel.by_name[name], mapping[name])
        return nil, err .. (hint and ("; " .. hint) or ""), "health", started
      end
    end
  end
  return started
end

-- stop(ctx, rel, list, opts) -> true | nil, msg, step; reverse dependency
-- order, in parallel within a level. opts.force: SIGKILL at once;
-- opts.hooks: pre_stop before and post_stop after, per app.
function M.stop(ctx, rel, list, opts)
  if type(opts) ~= "table" then opts = { force = opts } end
  local hooks = require("ctcli.hooks.runner")
  local tools = runtools.of(rel)
  local hc = opts.hooks
  local want = {}
  for _, app in ipairs(list) do want[app.name] = app end
  local levels = rel.levels or { rel.order }
  for i = #levels, 1, -1 do
    local batch = {}
    for _, n in ipairs(levels[i]) do
      if want[n] then
        if hc then
          local ok, err = hooks.run(hc, want[n], "pre_stop")
          if not ok then return nil, err, "pre_stop" end
        end
        batch[#batch + 1] = M.container(ctx, rel, want[n], tools)
      end
    end
    if #batch > 0 then
      local names = {}
      for _, c in ipairs(batch) do names[#names + 1] = c.app.name end
      report.of(ctx.report).step("%s %s", opts.force and "killing" or "stopping", table.concat(names, ", "))
      local ok, err = runtime.stop_many(batch, opts.force)
      if not ok then return nil, err, "stop" end
      for _, c in ipairs(batch) do health.forget(ctx.paths, c.app.name) end
      if hc then
        for _, c in ipairs(batch) do
          local hok, herr = hooks.run(hc, c.app, "post_stop")
          if not hok then return nil, herr, "post_stop" end
        end
      end
    end
  end
  return true
end

return M
