-- install PKG: the first release of a root.
local apps = require("ctcli.apps")
local backup = require("ctcli.backup")
local hooks = require("ctcli.hooks")
local deploy = require("ctcli.deploy")
local journal = require("ctcli.journal")
local release = require("ctcli.release")
local ui = require("ctcli.ui")
local wanted = require("ctcli.wanted")
local json = require("ctcli.json")
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
  -- The journaled steps, in order (CTCLI_FAULT=install:<step> kills ctcli there).
  steps = { "extract", "pre_install", "unpack", "stage", "place", "files", "swap", "backup", "migrate", "start", "post_install", "finish" },
  run = function(ctx)
    local file = ctx.args[1]
    local cur, cerr = release.current(ctx.paths)
    if cur then
      return nil, string.format("release %s (%s %s) is installed; use 'ctcli upgrade %s'",
        cur.id, cur.name, cur.version, file)
    elseif cerr then
      return nil, cerr
    end
    local j, jerr = journal.begin(ctx.paths, "install", { package = file })
    if not j then return nil, jerr end
    local pkg, perr = deploy.open(ctx, file, j)
    if not pkg then j:finish() return nil, perr end
    for _, app in ipairs(pkg.release.apps) do
      local ok, err = hooks.check(hooks.sources(ctx.paths, app, pkg.dir))
      if not ok then pkg.cleanup() j:finish() return nil, err end
    end
    local pkg_hc = hooks.context(ctx, { base = pkg.dir, to = pkg.release })
    j:step("pre_install")
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
    j:step("files")
    for _, app in ipairs(rel.apps) do
      local ok, err = apps.prepare_files(ctx.paths, app)
      if not ok then
        ct.fs.rmtree(rel.dir)
        j:finish()
        return nil, "cannot prepare the files of " .. app.name .. ": " .. err
      end
    end
    j:step("swap")
    local swapped, serr = release.swap(ctx.paths, rel.id)
    if not swapped then ct.fs.rmtree(rel.dir) j:finish() return nil, serr end
    -- The zero backup: what the root looked like right after the install.
    j:step("backup")
    local info, berr2 = backup.create(ctx, rel, { data = true, reason = "install", journal = j })
    if not info then ui.warn("installed, but the zero backup failed: %s", berr2) end
    local hc = apps.hooks_for(ctx, rel, { to = rel })
    j:step("migrate")
    for _, app in ipairs(rel.apps) do
      local ran, merr = hooks.migrate(hc, app)
      if not ran then j:finish() return nil, "installed " .. rel.id .. ", but " .. merr end
    end
    local started = {}
    if ctx.opts.no_start then
      -- Not started on purpose: not wanted either, so a boot does not start them.
      wanted.mark(ctx.paths, rel.order, false)
    else
      j:step("start")
      local res, err = apps.start(ctx, rel, apps.select(rel), { health = true })
      if not res then j:finish() return nil, "installed " .. rel.id .. ", but " .. err end
      started = res
    end
    j:step("post_install")
    for _, app in ipairs(rel.apps) do
      local ok, err = hooks.run(hc, app, "post_install")
      if not ok then
        j:finish()
        return nil, "installed " .. rel.id .. ", but post_install of " .. app.name .. " failed: " .. err
      end
    end
    j:finish()
    if ctx.json then
      ui.print(json.encode({ release = rel.id, name = rel.name, version = rel.version,
        started = json.array(started) }))
    else
      ui.print("installed %s %s as release %s", rel.name, rel.version, rel.id)
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
    end
    return true
  end,
}
