-- install PKG: the first release of a root.
local apps = require("ctcli.services.apps")
local appfs = require("ctcli.runtime.appfs")
local backup = require("ctcli.services.backup")
local common = require("ctcli.services.common")
local hooks = require("ctcli.hooks.runner")
local deploy = require("ctcli.services.deploy")
local journal = require("ctcli.journal.journal")
local release = require("ctcli.store.release")
local ui = require("ctcli.ui.console")
local wanted = require("ctcli.store.wanted")
local json = require("ctcli.base.json")
local ct = require("ct")

-- The install's phases, in the order of `steps`; each returns true | nil,
-- msg. The journal, held by `<close>` in install(), is finished when it
-- returns.

-- build(ctx, j, file) -> the new release placed in releases/ | nil, msg:
-- open the package, check its hooks, pre_install (which may veto), unpack
-- and build. The package's temp dir goes when this returns.
local function build(ctx, j, file)
  local pkg <close>, perr = deploy.open(ctx, file, j)
  if not pkg then return nil, perr end
  for _, app in ipairs(pkg.release.apps) do
    local ok, err = hooks.check(hooks.sources(ctx.paths, app, pkg.dir))
    if not ok then return nil, err end
  end
  local pkg_hc = hooks.context(ctx, { base = pkg.dir, to = pkg.release })
  local stepped, step_err = j:step("pre_install")
  if not stepped then return nil, step_err end
  for _, app in ipairs(pkg.release.apps) do
    local ok, err = hooks.run(pkg_hc, app, "pre_install")
    if not ok then return nil, "pre_install of " .. app.name .. " refused the install: " .. err end
  end
  return deploy.build(ctx, pkg, j, nil)
end

-- seeded(ctx, rel) -> the app trees this install seeds (none there
-- before): a failure before the swap removes them with the release, so
-- nothing is left.
local function seeded(ctx, rel)
  local out = {}
  for _, app in ipairs(rel.apps) do
    local hp = appfs.host_paths(ctx.paths, app.name)
    for _, dir in ipairs({ hp.config, hp.data }) do
      if not ct.fs.lstat(dir) then out[#out + 1] = dir end
    end
  end
  return out
end

local function files_and_swap(ctx, j, rel)
  local stepped, step_err = j:step("files")
  if not stepped then return nil, step_err end
  for _, app in ipairs(rel.apps) do
    local ok, err = apps.prepare_files(ctx.paths, app)
    if not ok then return nil, "cannot prepare the files of " .. app.name .. ": " .. err end
  end
  stepped, step_err = j:step("swap")
  if not stepped then return nil, step_err end
  ctx.report.step("swapping to release %s", rel.id)
  return release.swap(ctx.paths, rel.id)
end

-- zero_backup(ctx, j, rel): what the root looked like right after the
-- install. Without it the install stands: a warning, as for a failed backup.
local function zero_backup(ctx, j, rel)
  local info, err
  local stepped, step_err = j:step("backup")
  if stepped then
    info, err = backup.create(ctx, rel, { data = true, reason = "install", journal = j })
  else
    err = step_err
  end
  if not info then ctx.report.warn("installed, but the zero backup failed: %s", err) end
end

-- go_live(ctx, j, rel) -> the names started | nil, msg: migrations, the
-- apps started (unless --no-start), post_install. The release stands
-- whatever fails here.
local function go_live(ctx, j, rel)
  local but = "installed " .. rel.id .. ", but "
  local hc = apps.hooks_for(ctx, rel, { to = rel })
  local stepped, step_err = j:step("migrate")
  if not stepped then return nil, but .. step_err end
  local migrated = {}
  for _, app in ipairs(rel.apps) do
    local ran, merr = hooks.migrate(hc, app)
    if not ran then return nil, but .. merr end
    migrated[#migrated + 1] = { app = app.name, ran = ran }
  end
  common.tell_migrations(ctx, migrated)
  local started = {}
  if ctx.opts.no_start then
    -- Not started on purpose: not wanted either, so a boot does not start them.
    wanted.mark(ctx.paths, rel.order, false)
  else
    stepped, step_err = j:step("start")
    if not stepped then return nil, but .. step_err end
    local res, err = apps.start(ctx, rel, apps.select(rel), { health = true })
    if not res then return nil, but .. err end
    started = res
  end
  stepped, step_err = j:step("post_install")
  if not stepped then return nil, but .. step_err end
  for _, app in ipairs(rel.apps) do
    local ok, err = hooks.run(hc, app, "post_install")
    if not ok then return nil, but .. "post_install of " .. app.name .. " failed: " .. err end
  end
  return started
end

-- install(ctx, file) -> rel, started | nil, msg: the steps, in order.
local function install(ctx, file)
  local j <close>, jerr = journal.begin(ctx.paths, "install", { package = file }, ctx.steps, ctx.report)
  if not j then return nil, jerr end
  local rel, err = build(ctx, j, file)
  if not rel then return nil, err end
  local trees = seeded(ctx, rel)
  local ok
  ok, err = files_and_swap(ctx, j, rel)
  if not ok then
    ct.fs.rmtree(rel.dir)
    for _, dir in ipairs(trees) do ct.fs.rmtree(dir) end
    return nil, err
  end
  zero_backup(ctx, j, rel)
  local started
  started, err = go_live(ctx, j, rel)
  if not started then return nil, err end
  local done, ferr = j:finish()
  if not done then return nil, "installed " .. rel.id .. ", but " .. ferr end
  return rel, started
end

return {
  summary = "Install a package as the root's first release and start its apps",
  usage = "install [--no-start] PKG",
  description = "Extracts PKG (either package format) into tmp/, validates it, unpacks each\n" ..
    "app's image, builds releases/<id>/, points current-release at it and starts\n" ..
    "the apps. Refused when a release is installed: use 'ctcli upgrade'.",
  options = {
    { "--no-start", help = "install without starting the apps" },
  },
  min_args = 1, max_args = 1,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=install:<step> kills ctcli there,
  -- install:<step>:fail makes the step fail).
  steps = { "extract", "pre_install", "unpack", "stage", "place", "files", "swap", "backup", "migrate", "start", "post_install", "finish" },
  run = function(ctx)
    local file = ctx.args[1]
    local cur, cerr = release.current(ctx.paths)
    if cur then
      return nil, string.format("release %s (%s) is installed; use 'ctcli upgrade %s'",
        cur.id, ui.release_label(cur), file)
    elseif cerr then
      return nil, cerr
    end
    local rel, started = install(ctx, file)
    if not rel then return nil, started end
    if ctx.json then
      json.print({ release = json.release(rel), started = json.array(started) })
    else
      ui.print("installed %s as release %s", ui.release_label(rel), rel.id)
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
    end
    return true
  end,
}
