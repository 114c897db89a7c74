-- The preview of an upgrade (or install) that 'plan' prints and 'upgrade'
-- can show before it asks: per app changes, stops and starts in order, the
-- hooks that would fire, pending migrations, disk space. It reads the root
-- and the extracted package only; it changes nothing.
local ct = require("ct")
local appfs = require("ctcli.runtime.appfs")
local apps = require("ctcli.services.apps")
local json = require("ctcli.base.json")
local lint = require("ctcli.services.lint")
local plan = require("ctcli.services.plan")
local rootconf = require("ctcli.store.rootconf")
local store = require("ctcli.store.images")
local tools = require("ctcli.runtime.tools")
local userns = require("ctcli.runtime.userns")
local versions = require("ctcli.base.versions")

local M = {}

-- hook_sources(paths, base, app) -> {{label=, points=set}} in the order they run
local function hook_sources(paths, base, app)
  local out = {}
  if base and app.hooks then
    local text = ct.fs.read(base .. "/" .. app.hooks)
    if text then out[#out + 1] = { label = "package " .. app.hooks, scan = lint.scan_hooks(text) } end
  end
  local op = paths.hooks .. "/" .. app.name .. ".lua"
  local text = ct.fs.read(op)
  if text then out[#out + 1] = { label = "operator " .. op, scan = lint.scan_hooks(text) } end
  return out
end

-- migration ids of app in the order they would run (manifest list, else sorted)
local function migration_order(sources, app)
  if app.migrations then return app.migrations end
  local set, out = {}, {}
  for _, s in ipairs(sources) do
    for _, id in ipairs(s.scan.migrations) do set[id] = true end
  end
  for id in pairs(set) do out[#out + 1] = id end
  table.sort(out)
  return out
end

local function recorded(paths, name)
  local text = appfs.read_migrations(paths, name)
  local rec = text and json.decode(text) or {}
  local done = {}
  for _, r in ipairs(type(rec) == "table" and rec or {}) do
    if type(r) == "table" and r.id then done[r.id] = true end
  end
  return done
end

local function plan_has(model, name)
  for _, a in ipairs(model.apps) do
    if a.name == name then return true end
  end
  return false
end

-- build(ctx, pkg, cur) -> the plan table (cur: the current release or nil)
function M.build(ctx, pkg, cur)
  local paths = ctx.paths
  local diff = plan.diff(paths, cur, pkg.release, pkg.dir)
  local affected, to_stop_set = {}, {}
  for _, d in ipairs(diff) do
    if d.change == "changed" or d.change == "added" then affected[#affected + 1] = d.new end
    if d.change == "changed" or d.change == "removed" then to_stop_set[d.name] = true end
  end
  local states = cur and apps.states(ctx, cur) or {}
  local any_running = false
  for _, st in pairs(states) do
    if st.status == "running" or st.status == "paused" then any_running = true end
  end
  -- Stops: reverse dependency levels of the current release.
  local stop = json.array({})
  if cur then
    local levels = cur.levels or { cur.order }
    for i = #levels, 1, -1 do
      for _, n in ipairs(levels[i]) do
        if to_stop_set[n] and states[n] then stop[#stop + 1] = n end
      end
    end
  end
  local restart_set = {}
  for _, n in ipairs(stop) do
    local st = states[n]
    if (st.status == "running" or st.status == "paused") and plan_has(pkg.release, n) then
      restart_set[n] = true
    end
  end
  for _, d in ipairs(diff) do
    if d.change == "added" and (any_running or not cur) then restart_set[d.name] = true end
  end
  local start = json.array({})
  for _, n in ipairs(pkg.release.order) do
    if restart_set[n] then start[#start + 1] = n end
  end
  -- Hooks, in the order upgrade runs them.
  local hooks_list = json.array({})
  local function add_points(list_apps, base_of, point)
    for _, app in ipairs(list_apps) do
      local base, rec = base_of(app)
      for _, s in ipairs(hook_sources(paths, base, rec or app)) do
        if s.scan.points[point] then
          hooks_list[#hooks_list + 1] = { app = app.name, point = point, source = s.label }
        end
      end
    end
  end
  local new_base = function(app) return pkg.dir, app end
  local old_base = function(app) return cur and cur.dir, cur and cur.by_name[app.name] end
  local by_new = {}
  for _, a in ipairs(pkg.release.apps) do by_new[a.name] = a end
  local function named(list, rel_apps)
    local out = {}
    for _, n in ipairs(list) do out[#out + 1] = rel_apps[n] end
    return out
  end
  add_points(affected, new_base, cur and "pre_upgrade" or "pre_install")
  if cur then
    -- Per dependency level (reverse): pre_stop of each, stop, post_stop of each.
    local levels = cur.levels or { cur.order }
    for i = #levels, 1, -1 do
      local batch = {}
      for _, n in ipairs(levels[i]) do
        if to_stop_set[n] and states[n] then batch[#batch + 1] = cur.by_name[n] end
      end
      add_points(batch, old_base, "pre_stop")
      add_points(batch, old_base, "post_stop")
    end
  end
  -- Migrations pending per affected app.
  local migrations = json.array({})
  for _, app in ipairs(affected) do
    local done = recorded(paths, app.name)
    for _, id in ipairs(migration_order(hook_sources(paths, pkg.dir, app), app)) do
      if not done[id] then migrations[#migrations + 1] = { app = app.name, id = id } end
    end
  end
  if cur then
    for _, app in ipairs(named(start, by_new)) do
      add_points({ app }, new_base, "pre_start")
      add_points({ app }, new_base, "post_start")
    end
  end
  add_points(affected, new_base, cur and "post_upgrade" or "post_install")
  -- Disk: the extracted package in tmp/, plus the images the store lacks.
  local extracted = ct.fs.du(pkg.dir) or 0
  local images = 0
  for _, app in ipairs(pkg.release.apps) do
    if not store.has(paths, app.name, app.image.digest) then
      images = images + (ct.fs.du(pkg.dir .. "/" .. app.image.layout) or 0)
    end
  end
  -- The pre-upgrade backup holds config/ and data/ (at most their size).
  local backup = cur and ((ct.fs.du(paths.config) or 0) + (ct.fs.du(paths.data) or 0)) or 0
  local vfs = ct.fs.statvfs(paths.root) or {}
  local needed = extracted + 2 * images + backup
  -- Which apps would run without a user namespace (container root = host root).
  local conf = rootconf.load(paths) or { apps = {} }
  local privileged = json.array({})
  for _, app in ipairs(pkg.release.apps) do
    local by = userns.opted_out(app, conf)
    if by then privileged[#privileged + 1] = { app = app.name, opted_out_in = by } end
  end
  local runc_note = tools.refused_runc_note(pkg.release.runtime and pkg.release.runtime.runc
    and (pkg.dir .. "/" .. pkg.release.runtime.runc))
  local down = versions.downgrade(cur, pkg.release, pkg.format)
  return {
    noop = plan.noop(diff, cur, pkg.release),
    downgrade = down and down.what or json.null,
    privileged = privileged, runc = runc_note or json.null,
    from = json.release(cur), to = json.release({ name = pkg.release.name, version = pkg.release.version }),
    changes = plan.to_json(diff), diff = diff,
    stop = stop, start = start, hooks = hooks_list, migrations = migrations,
    disk = { needed = needed, extracted = extracted, images = 2 * images, backup = backup,
      free = vfs.avail or json.null,
      enough = vfs.avail == nil or vfs.avail >= needed },
  }
end

-- print(p, cur, ui): the plan for people, through the command's ui
-- (ctcli.ui.console); p.signature_text and p.delta are optional.
function M.print(p, cur, ui)
  if cur then
    ui.print("plan: %s %s (%s) -> %s", p.downgrade ~= json.null and "DOWNGRADE" or "upgrade",
      ui.release_label(cur), cur.id, ui.release_label(p.to))
    if p.downgrade ~= json.null then ui.print("downgrade %s", p.downgrade) end
    if p.noop then ui.print("already at %s: the package is the installed release again", cur.id) end
  else
    ui.print("plan: install %s (no release installed)", ui.release_label(p.to))
  end
  plan.print(p.diff, ui)
  ui.print("")
  ui.print("stop      %s", #p.stop > 0 and table.concat(p.stop, ", ") or "nothing")
  ui.print("start     %s", #p.start > 0 and table.concat(p.start, ", ") or "nothing")
  local hl = {}
  for _, h in ipairs(p.hooks) do hl[#hl + 1] = string.format("%s %s (%s)", h.app, h.point, h.source) end
  ui.print("hooks     %s", #hl > 0 and table.concat(hl, "\n          ") or "none")
  local ml = {}
  for _, m in ipairs(p.migrations) do ml[#ml + 1] = m.app .. " " .. m.id end
  ui.print("migrate   %s", #ml > 0 and table.concat(ml, ", ") or "nothing pending")
  ui.print("disk      needs about %s, %s free%s", ui.bytes(p.disk.needed),
    p.disk.free ~= json.null and ui.bytes(p.disk.free) or "?", p.disk.enough and "" or " (NOT ENOUGH)")
  local pl = {}
  for _, x in ipairs(p.privileged) do pl[#pl + 1] = string.format("%s (opted out in %s)", x.app, x.opted_out_in) end
  ui.print("privileged %s", #pl > 0 and (table.concat(pl, ", ") .. ": container root is host root")
    or "none (every app runs in the root's user namespace)")
  if p.runc ~= json.null then ui.print("runtime   %s", p.runc) end
  if p.signature_text then ui.print("signature %s", p.signature_text) end
  local delta = type(p.delta) == "table" and p.delta or nil
  if delta then
    local needs = {}
    for name, digest in pairs(delta.images) do needs[#needs + 1] = name .. "@" .. digest:sub(8, 19) end
    local n = 0
    for _, list in pairs(type(delta.blobs) == "table" and delta.blobs or {}) do n = n + #list end
    if n > 0 then needs[#needs + 1] = string.format("%d blob%s", n, n == 1 and "" or "s") end
    table.sort(needs)
    ui.print("delta     of %s; takes from this root's store: %s", tostring(delta.base), table.concat(needs, ", "))
  end
end

return M
