-- delete: stop the apps and remove the current release (after asking).
local ct = require("ct")
local apps = require("ctcli.services.apps")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local ui = require("ctcli.ui.console")

-- purge_dirs(paths): config/, data/, logs/ and the backups, emptied.
local function purge_dirs(paths)
  for _, dir in ipairs({ paths.config, paths.data, paths.logs, paths.backups }) do
    ct.fs.rmtree(dir)
    ct.fs.mkdir(dir, 448, true)
  end
end

-- nothing_installed(ctx): delete is idempotent; on a root with no release
-- it succeeds, saying so, and --purge still empties what a delete left.
local function nothing_installed(ctx)
  local left = false
  if ctx.opts.purge then
    for _, dir in ipairs({ ctx.paths.config, ctx.paths.data, ctx.paths.logs, ctx.paths.backups }) do
      if #(ct.fs.dir(dir) or {}) > 0 then left = true end
    end
  end
  if left then
    local yes, why, code = ui.ask(ctx, string.format("No release is installed; delete the configs, data, logs " ..
      "and backups left in %s?", ctx.root), "delete")
    if not yes then return nil, why, code end
    purge_dirs(ctx.paths)
  end
  if ctx.json then
    json.print({ deleted = json.null, purged = left })
  elseif left then
    ui.print("no release installed in %s; purged the configs, data, logs and backups left", ctx.root)
  else
    ui.print("no release installed in %s; nothing to delete", ctx.root)
  end
  return true
end

return {
  summary = "Stop the apps and remove the installed release (configs, data, logs and backups stay)",
  usage = "delete [--purge]",
  description = "Stops every app, deletes its container and removes the releases and the\n" ..
    "image store. config/, data/, logs/ and releases/backups/ stay, so a later\n" ..
    "install or a rollback from a backup finds them; --purge removes them too.\n" ..
    "Idempotent: with no release installed it does nothing and says so (--purge\n" ..
    "then empties what an earlier delete left, after asking).",
  options = {
    { "--purge", help = "also remove config/, data/, logs/ and the backups" },
  },
  max_args = 0,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=delete:<step> kills ctcli there,
  -- delete:<step>:fail makes the step fail).
  steps = { "stop", "unlink", "remove", "finish" },
  run = function(ctx)
    local rel, err = release.current(ctx.paths)
    if not rel and err then return nil, err end
    if not rel then return nothing_installed(ctx) end
    local what = ctx.opts.purge and "the release, its configs, data, logs and backups" or "the release"
    local yes, why, code = ui.ask(ctx, string.format("Delete %s (%s) from %s?", what, ui.release_label(rel),
      ctx.root), "delete")
    if not yes then return nil, why, code end
    local j <close>, jerr = journal.begin(ctx.paths, "delete", { release = rel.id, purge = ctx.opts.purge or false }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    local running = json.array()
    for name, st in pairs(apps.states(ctx, rel) or {}) do
      if st.status == "running" or st.status == "paused" then running[#running + 1] = name end
    end
    j:set("running", running)
    local stepped, step_err = j:step("stop")
    if not stepped then return nil, step_err end
    local ok, serr = apps.stop(ctx, rel, apps.select(rel))
    if not ok then return nil, serr end
    -- Until something is removed, a failure puts the release back and
    -- starts what ran: nothing deleted. (The journal, held by <close>, is
    -- finished on every return, kept when the way back had problems.)
    local function undo(msg)
      local problems = {}
      if not ct.fs.lstat(ctx.paths.current) then
        local sok, swerr = release.swap(ctx.paths, rel.id)
        if not sok then problems[#problems + 1] = "current-release: " .. tostring(swerr) end
      end
      local started, sterr = apps.start(ctx, rel, apps.select(rel, running))
      if not started then problems[#problems + 1] = "starting " .. table.concat(running, ", ") .. ": " .. sterr end
      if #problems > 0 then
        j:keep()
        return nil, msg .. "; putting things back had problems: " .. table.concat(problems, "; ")
      end
      return nil, msg .. "; nothing deleted"
    end
    -- The symlink goes first: from then on the root has no release, whatever is left behind.
    stepped, step_err = j:step("unlink")
    if not stepped then return undo(step_err) end
    ctx.report.step("removing current-release")
    ct.fs.unlink(ctx.paths.current)
    ct.fs.fsync(ctx.paths.root)
    stepped, step_err = j:step("remove")
    if not stepped then return undo(step_err) end
    ctx.report.step("removing the releases, images and layers")
    for _, r in ipairs(release.list(ctx.paths) or {}) do ct.fs.rmtree(r.dir) end
    require("ctcli.services.staged").drop(ctx.paths)
    for _, key in ipairs(ct.fs.dir(ctx.paths.images) or {}) do ct.fs.rmtree(ctx.paths.images .. "/" .. key) end
    require("ctcli.store.layers").remove_all(ctx.paths)
    if ctx.opts.purge then
      ctx.report.step("purging configs, data, logs and backups")
      purge_dirs(ctx.paths)
    end
    local done, ferr = j:finish()
    if not done then return nil, "deleted release " .. rel.id .. ", but " .. ferr end
    if ctx.json then
      json.print({ deleted = json.release(rel), purged = ctx.opts.purge or false })
    else
      ui.print("deleted release %s%s", rel.id, ctx.opts.purge and " and purged configs, data, logs and backups" or
        "; configs, data, logs and backups are kept")
    end
    return true
  end,
}
