-- upgrade PKG: diff, ask, build the new release while the old one runs,
-- then stop only the changed apps, swap, start them again.
local ct = require("ct")
local apps = require("ctcli.apps")
local backup = require("ctcli.backup")
local common = require("ctcli.common")
local deploy = require("ctcli.deploy")
local journal = require("ctcli.journal")
local json = require("ctcli.json")
local plan = require("ctcli.plan")
local release = require("ctcli.release")
local ui = require("ctcli.ui")

return {
  summary = "Upgrade to a package: show the changes, ask, swap the changed apps",
  usage = "upgrade [--keep N] PKG",
  description = "Extracts and validates PKG and prints, per app, whether it is added, changed,\n" ..
    "removed or unchanged. After a yes (or -y) it unpacks the changed images and\n" ..
    "builds the new release while the old one runs, then stops only the changed\n" ..
    "and removed apps, swaps current-release and starts the changed apps that were\n" ..
    "running, and the added ones. Unchanged apps keep running. Data and configs stay.",
  options = {
    { "--keep", arg = "N", type = "number", help = "releases to keep after a successful upgrade (default 3)" },
  },
  min_args = 1, max_args = 1,
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local file = ctx.args[1]
    local cur, cerr = common.current_or_fail(ctx, "upgrade")
    if not cur then return nil, cerr end
    local j, jerr = journal.begin(ctx.paths, "upgrade", { package = file, from = cur.id })
    if not j then return nil, jerr end
    local pkg, perr = deploy.open(ctx, file, j)
    if not pkg then j:finish() return nil, perr end
    local function abort(msg)
      pkg.cleanup()
      j:finish()
      return nil, msg
    end

    local diff = plan.diff(ctx.paths, cur, pkg.release)
    local changed, removed, added = {}, {}, {}
    for _, d in ipairs(diff) do
      if d.change == "changed" then changed[#changed + 1] = d.new
      elseif d.change == "added" then added[#added + 1] = d.new
      elseif d.change == "removed" then removed[#removed + 1] = d.old end
    end
    if not ctx.json then
      ui.print("upgrade %s %s (%s) -> %s %s", cur.name, cur.version, cur.id,
        pkg.release.name, pkg.release.version)
      plan.print(diff)
    end
    if not ctx.yes and not ui.confirm("Proceed with the upgrade?") then
      return abort("upgrade cancelled; nothing changed", 1)
    end

    local rel, berr = deploy.build(ctx, pkg, j, cur.id)
    pkg.cleanup()
    if not rel then j:finish() return nil, berr end

    j:step("files")
    for _, app in ipairs(rel.apps) do
      local prepared, err = apps.prepare_files(ctx.paths, app)
      if not prepared then
        ct.fs.rmtree(rel.dir)
        j:finish()
        return nil, "cannot prepare the files of " .. app.name .. ": " .. err
      end
    end
    -- A backup of the release being left, its configs and data: what an
    -- automatic rollback restores.
    j:step("backup")
    local info, bk_err = backup.create(ctx, cur, { data = true, reason = "upgrade", journal = j })
    if not info then ct.fs.rmtree(rel.dir) j:finish() return nil, "the pre-upgrade backup failed: " .. bk_err end
    j:set("backup", info.path)
    ct.fs.syncfs(ctx.paths.root)

    -- From here the old release's apps go down: everything slow is done.
    local states, serr = apps.states(ctx, cur)
    if not states then ct.fs.rmtree(rel.dir) j:finish() return nil, serr end
    local any_running = false
    for _, st in pairs(states) do if st.status == "running" or st.status == "paused" then any_running = true end end
    local to_stop, restart = {}, json.array()
    for _, list in ipairs({ changed, removed }) do
      for _, app in ipairs(list) do
        local st = states[app.name]
        if st then
          to_stop[#to_stop + 1] = cur.by_name[app.name]
          if (st.status == "running" or st.status == "paused") and rel.by_name[app.name] then
            restart[#restart + 1] = app.name
          end
        end
      end
    end
    if any_running then
      for _, app in ipairs(added) do restart[#restart + 1] = app.name end
    end
    local stopping = json.array()
    for _, app in ipairs(to_stop) do stopping[#stopping + 1] = app.name end
    j:set("stopped", stopping)
    j:set("restart", restart)
    j:step("stop")
    local ok, stop_err = apps.stop(ctx, cur, to_stop)
    if not ok then return nil, "stopping the changed apps failed: " .. stop_err end
    j:step("swap")
    local swapped, swap_err = release.swap(ctx.paths, rel.id)
    if not swapped then return nil, "cannot switch current-release: " .. tostring(swap_err) end
    j:step("start")
    local start_list = apps.select(rel, restart)
    local started, start_err = apps.start(ctx, rel, start_list)
    if not started then
      j:finish()
      return nil, string.format("upgraded to %s, but %s", rel.id, start_err)
    end
    j:step("prune")
    local pruned = release.prune(ctx.paths, math.max(1, math.floor(ctx.opts.keep or 3)))
    j:finish()
    if ctx.json then
      ui.print(json.encode({
        release = rel.id, previous = cur.id, changes = plan.to_json(diff),
        restarted = json.array(started), pruned = json.array(pruned),
      }, true))
    else
      ui.print("upgraded to %s (%s %s)", rel.id, rel.name, rel.version)
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
      local kept = {}
      for _, d in ipairs(diff) do if d.change == "unchanged" then kept[#kept + 1] = d.name end end
      if #kept > 0 then ui.print("unchanged, kept running: %s", table.concat(kept, ", ")) end
    end
    return true
  end,
}
