-- delete: stop the apps and remove the current release (after asking).
local ct = require("ct")
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local journal = require("ctcli.journal")
local json = require("ctcli.json")
local release = require("ctcli.release")
local ui = require("ctcli.ui")

return {
  summary = "Stop the apps and remove the installed release (configs, data, logs and backups stay)",
  usage = "delete [--purge]",
  description = "Stops every app, deletes its container and removes the releases and the\n" ..
    "image store. config/, data/, logs/ and releases/backups/ stay, so a later\n" ..
    "install or a rollback from a backup finds them; --purge removes them too.",
  options = {
    { "--purge", help = "also remove config/, data/, logs/ and the backups" },
  },
  max_args = 0,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=delete:<step> kills ctcli there).
  steps = { "stop", "unlink", "remove", "finish" },
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "delete")
    if not rel then return nil, err end
    local what = ctx.opts.purge and "the release, its configs, data, logs and backups" or "the release"
    local yes, why, code = ui.ask(ctx, string.format("Delete %s (%s %s) from %s?", what, rel.name, rel.version,
      ctx.root), "delete")
    if not yes then return nil, why, code end
    local j, jerr = journal.begin(ctx.paths, "delete", { release = rel.id, purge = ctx.opts.purge or false })
    if not j then return nil, jerr end
    local running = json.array()
    for name, st in pairs(apps.states(ctx, rel) or {}) do
      if st.status == "running" or st.status == "paused" then running[#running + 1] = name end
    end
    j:set("running", running)
    j:step("stop")
    local ok, serr = apps.stop(ctx, rel, apps.select(rel))
    if not ok then j:finish() return nil, serr end
    -- The symlink goes first: from then on the root has no release, whatever is left behind.
    j:step("unlink")
    ct.fs.unlink(ctx.paths.current)
    ct.fs.fsync(ctx.paths.root)
    j:step("remove")
    for _, r in ipairs(release.list(ctx.paths) or {}) do ct.fs.rmtree(r.dir) end
    for _, key in ipairs(ct.fs.dir(ctx.paths.images) or {}) do ct.fs.rmtree(ctx.paths.images .. "/" .. key) end
    if ctx.opts.purge then
      for _, dir in ipairs({ ctx.paths.config, ctx.paths.data, ctx.paths.logs, ctx.paths.backups }) do
        ct.fs.rmtree(dir)
        ct.fs.mkdir(dir, 448, true)
      end
    end
    j:finish()
    if ctx.json then
      ui.print(json.encode({ deleted = rel.id, purged = ctx.opts.purge or false }))
    else
      ui.print("deleted release %s%s", rel.id, ctx.opts.purge and " and purged configs, data, logs and backups" or
        "; configs, data, logs and backups are kept")
    end
    return true
  end,
}
