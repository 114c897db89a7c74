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
    local j, jerr = journal.begin(ctx.paths, "install", { package = file }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    local pkg, perr = deploy.open(ctx, file, j)
    if not pkg then j:finish() return nil, perr end
    for _, app in ipairs(pkg.release.apps) do
      local ok, err = hooks.check(hooks.sources(ctx.paths, app, pkg.dir))
      if not ok then pkg.cleanup() j:finish() return nil, err end
    end
    local pkg_hc = hooks.context(ctx, { base = pkg.dir, to = pkg.release })
    local stepped, step_err = j:step("pre_install")
    if not stepped then pkg.cleanup() j:finish() return nil, step_err end
    for _, app in ipairs(pkg.release.apps) do
      local ok, err = hooks.run(pkg_hc, app, "pre_install")
      if not ok then
        pkg.cleanup()
        j:finish()
        return nil, "pre_install of " .. app.name .. " refused the install: " .. err
      end
    end
    local rel, berr = deploy.build(ctx, pkg, j, nil)
    pkg.cleanup()
    if not rel then j:finish() return nil, berr end
    -- The app trees this install seeds (none there before): a failure
    -- before the swap removes them with the release, so nothing is left.
    local seeded = {}
    for _, app in ipairs(rel.apps) do
      local hp = appfs.host_paths(ctx.paths, app.name)
      for _, dir in ipairs({ hp.config, hp.data }) do
        if not ct.fs.lstat(dir) then seeded[#seeded + 1] = dir end
      end
    end
    local function undo_build(msg)
      ct.fs.rmtree(rel.dir)
      for _, dir in ipairs(seeded) do ct.fs.rmtree(dir) end
      j:finish()
      return nil, msg
    end
    stepped, step_err = j:step("files")
    if not stepped then return undo_build(step_err) end
    for _, app in ipairs(rel.apps) do
      local ok, err = apps.prepare_files(ctx.paths, app)
      if not ok then return undo_build("cannot prepare the files of " .. app.name .. ": " .. err) end
    end
    stepped, step_err = j:step("swap")
    if not stepped then return undo_build(step_err) end
    ctx.report.step("swapping to release %s", rel.id)
    local swapped, serr = release.swap(ctx.paths, rel.id)
    if not swapped then return undo_build(serr) end
    -- The zero backup: what the root looked like right after the install.
    -- Without it the install stands: a warning, as for a failed backup.
    local info, berr2
    stepped, step_err = j:step("backup")
    if stepped then
      info, berr2 = backup.create(ctx, rel, { data = true, reason = "install", journal = j })
    else
      berr2 = step_err
    end
    if not info then ctx.report.warn("installed, but the zero backup failed: %s", berr2) end
    local hc = apps.hooks_for(ctx, rel, { to = rel })
    stepped, step_err = j:step("migrate")
    if not stepped then j:finish() return nil, "installed " .. rel.id .. ", but " .. step_err end
    local migrated = {}
    for _, app in ipairs(rel.apps) do
      local ran, merr = hooks.migrate(hc, app)
      if not ran then j:finish() return nil, "installed " .. rel.id .. ", but " .. merr end
      migrated[#migrated + 1] = { app = app.name, ran = ran }
    end
    common.tell_migrations(ctx, migrated)
    local started = {}
    if ctx.opts.no_start then
      -- Not started on purpose: not wanted either, so a boot does not start them.
      wanted.mark(ctx.paths, rel.order, false)
    else
      stepped, step_err = j:step("start")
      if not stepped then j:finish() return nil, "installed " .. rel.id .. ", but " .. step_err end
      local res, err = apps.start(ctx, rel, apps.select(rel), { health = true })
      if not res then j:finish() return nil, "installed " .. rel.id .. ", but " .. err end
      started = res
    end
    stepped, step_err = j:step("post_install")
    if not stepped then j:finish() return nil, "installed " .. rel.id .. ", but " .. step_err end
    for _, app in ipairs(rel.apps) do
      local ok, err = hooks.run(hc, app, "post_install")
      if not ok then
        j:finish()
        return nil, "installed " .. rel.id .. ", but post_install of " .. app.name .. " failed: " .. err
      end
    end
    local done, ferr = j:finish()
    if not done then return nil, "installed " .. rel.id .. ", but " .. ferr end
    if ctx.json then
      json.print({ release = json.release(rel), started = json.array(started) })
    else
      ui.print("installed %s as release %s", ui.release_label(rel), rel.id)
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
    end
    return true
  end,
}
