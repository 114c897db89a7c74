-- upgrade PKG: diff, ask, run pre_upgrade, build the new release while the
-- old one runs, back up, stop only the changed apps, swap, migrate, start,
-- check health, post_upgrade; on a failure after the swap, roll back.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local backup = require("ctcli.services.backup")
local common = require("ctcli.services.common")
local deploy = require("ctcli.services.deploy")
local hooks = require("ctcli.hooks.runner")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local plan = require("ctcli.services.plan")
local preview = require("ctcli.services.preview")
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local releases = require("ctcli.services.releases")
local rootconf = require("ctcli.store.rootconf")
local staged = require("ctcli.services.staged")
local ui = require("ctcli.ui.console")

-- Undoes an upgrade that failed after its swap: stop the new apps, swap
-- back, restore the changed apps' data, start the previous apps, then
-- post_rollback. A failing pre_rollback is logged and the rollback goes on.
local function auto_rollback(ctx, s)
  ctx.report.step("rolling back to %s", s.cur.id)
  local new_hc = apps.hooks_for(ctx, s.rel, { from = s.rel, to = s.cur })
  for _, app in ipairs(s.affected) do
    local ok, err = hooks.run(new_hc, app, "pre_rollback")
    if not ok then ctx.report.warn("pre_rollback of %s failed (rolling back anyway): %s", app.name, err) end
  end
  local problems = {}
  local ok, err = apps.stop(ctx, s.rel, s.affected)
  if not ok then problems[#problems + 1] = err end
  ctx.report.step("swapping back to release %s", s.cur.id)
  ok, err = release.swap(ctx.paths, s.cur.id)
  if not ok then return nil, "could not switch back: " .. tostring(err) end
  local names = {}
  for _, app in ipairs(s.affected) do names[#names + 1] = app.name end
  ok, err = backup.restore_data(ctx, s.backup, names)
  if not ok then problems[#problems + 1] = "restoring data: " .. tostring(err) end
  local old_hc = apps.hooks_for(ctx, s.cur, { from = s.rel, to = s.cur })
  local started, serr = apps.start(ctx, s.cur, apps.select(s.cur, s.stopped), { health = false })
  if not started then problems[#problems + 1] = serr end
  for _, name in ipairs(s.stopped) do
    local app = s.cur.by_name[name]
    local hok, herr = hooks.run(old_hc, app, "post_rollback")
    if not hok then problems[#problems + 1] = herr end
  end
  ct.fs.rmtree(s.rel.dir)
  releases.prune(ctx.paths, math.huge)
  if #problems > 0 then return nil, table.concat(problems, "; ") end
  return true
end

return {
  summary = "Upgrade to a package: show the changes, ask, swap the changed apps",
  usage = "upgrade [--keep N] [--no-rollback] [--allow-downgrade] PKG | upgrade --staged [PKG]",
  description = "Extracts and validates PKG and prints, per app, whether it is added, changed,\n" ..
    "removed or unchanged. After a yes (or -y) it runs pre_upgrade, unpacks the\n" ..
    "changed images and builds the new release while the old one runs, backs up,\n" ..
    "stops only the changed and removed apps, swaps current-release, runs pending\n" ..
    "migrations, starts the changed apps that were running (and the added ones),\n" ..
    "checks their health and runs post_upgrade. When a step after the swap fails,\n" ..
    "it rolls back to the previous release and restores the changed apps' data.\n" ..
    "With --staged (or a PKG that 'ctcli stage' staged) the release built by\n" ..
    "'stage' is used: nothing is extracted or unpacked, and the backup holds the\n" ..
    "changed apps' configs and data only (their images stay in the store).\n" ..
    "The installed release again is 'already at' and changes nothing; an older\n" ..
    "release is a downgrade, refused without --allow-downgrade.",
  options = {
    { "--keep", arg = "N", type = "number", integer = true, min = 1, help = "releases to keep after a successful upgrade (default 3)" },
    { "--no-rollback", help = "on a failure, leave the new release in place for debugging" },
    { "--staged", help = "cut over to the release 'ctcli stage' built (see 'ctcli help stage')" },
    { "--allow-downgrade", help = "go ahead when the package is older than the installed release" },
  },
  min_args = 0, max_args = 1,
  check = function(opts, args)
    if #args == 0 and not opts.staged then return nil, "'upgrade' expects a PKG (or --staged)" end
    return true
  end,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=upgrade:<step> kills ctcli there,
  -- upgrade:<step>:fail makes the step fail).
  steps = { "extract", "pre_upgrade", "unpack", "stage", "place", "files", "backup", "stop", "swap", "migrate",
    "start", "post_upgrade", "rollback", "prune", "finish" },
  run = function(ctx)
    local file = ctx.args[1]
    local cur, cerr = common.current_or_fail(ctx, "upgrade")
    if not cur then return nil, cerr end
    local j, jerr = journal.begin(ctx.paths, "upgrade", { package = file, from = cur.id }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    local pkg, perr = staged.open(ctx, file, j, cur)
    if pkg == false then pkg, perr = deploy.open(ctx, file, j) end
    if not pkg then j:finish() return nil, perr end
    local function abort(msg, code)
      pkg.cleanup()
      j:finish()
      return nil, msg, code
    end

    -- The same plan `ctcli plan PKG` prints: changes, stops and starts, hooks, migrations, disk.
    local preview_plan = preview.build(ctx, pkg, cur)
    local diff = preview_plan.diff
    local changed, removed, added, affected = {}, {}, {}, {}
    for _, d in ipairs(diff) do
      if d.change == "changed" then changed[#changed + 1] = d.new
      elseif d.change == "added" then added[#added + 1] = d.new
      elseif d.change == "removed" then removed[#removed + 1] = d.old end
      if d.change == "changed" or d.change == "added" then affected[#affected + 1] = d.new end
    end
    -- A hook file that does not compile stops the upgrade before anything changes.
    for _, app in ipairs(pkg.release.apps) do
      local ok, err = hooks.check(hooks.sources(ctx.paths, app, pkg.dir))
      if not ok then return abort(err) end
    end
    -- The installed release again: nothing to do (no release, backup or restart).
    if preview_plan.noop then
      pkg.cleanup()
      j:finish()
      if ctx.json then json.print({ release = json.release(cur), noop = true, changes = plan.to_json(diff) })
      else ui.print("already at %s (%s)", cur.id, ui.release_label(cur)) end
      return true
    end
    if preview_plan.downgrade ~= json.null and not ctx.opts.allow_downgrade then
      return abort("refusing a downgrade: " .. preview_plan.downgrade .. " (--allow-downgrade to go ahead)")
    end
    if not ctx.json then
      preview_plan.signature_text = pkg.signer and ("verified, signed by " .. pkg.signer) or nil
      preview.print(preview_plan, cur, ui)
    end
    local yes, why, code = ui.ask(ctx, "Proceed with the upgrade?", "upgrade")
    if not yes then return abort(why, code) end

    -- pre_upgrade comes from the new release's hooks and may veto.
    local pkg_hc = hooks.context(ctx, {
      base = pkg.dir, runc = runtools.of(cur).runc, bundle_dir = cur.dir,
      from = cur, to = pkg.release,
    })
    local stepped, step_err = j:step("pre_upgrade")
    if not stepped then return abort(step_err) end
    for _, app in ipairs(affected) do
      local ok, err = hooks.run(pkg_hc, app, "pre_upgrade")
      if not ok then return abort("pre_upgrade of " .. app.name .. " refused the upgrade: " .. err) end
    end

    local rel, berr = (pkg.build or deploy.build)(ctx, pkg, j, cur.id)
    pkg.cleanup()
    if not rel then j:finish() return nil, berr end
    local function undo_build(msg)
      if pkg.unplace then pkg.unplace(rel) else ct.fs.rmtree(rel.dir) end
      releases.prune(ctx.paths, math.huge)
      j:finish()
      return nil, msg
    end

    stepped, step_err = j:step("files")
    if not stepped then return undo_build(step_err) end
    for _, app in ipairs(rel.apps) do
      local prepared, err = apps.prepare_files(ctx.paths, app)
      if not prepared then return undo_build("cannot prepare the files of " .. app.name .. ": " .. err) end
    end

    -- The backup an automatic rollback restores data from: the configs and
    -- data of the apps this upgrade stops, each paused only while its own
    -- are read. An unchanged app is neither paused nor stopped.
    stepped, step_err = j:step("backup")
    if not stepped then return undo_build("the pre-upgrade backup failed: " .. step_err) end
    local going = {}
    for _, list in ipairs({ changed, removed }) do
      for _, app in ipairs(list) do going[#going + 1] = app.name end
    end
    local info, bk_err = backup.create(ctx, cur, { data = true, reason = "upgrade", journal = j, only = going,
      images = not pkg.staged })
    if not info then return undo_build("the pre-upgrade backup failed: " .. bk_err) end
    j:set("backup", info.path)
    ct.fs.syncfs(ctx.paths.root)

    -- From here the old release's apps go down: everything slow is done.
    local states, serr = apps.states(ctx, cur)
    if not states then return undo_build(serr) end
    local any_running = false
    for _, st in pairs(states) do
      if st.status == "running" or st.status == "paused" then any_running = true end
    end
    local to_stop, restart, stopping = {}, json.array(), json.array()
    for _, list in ipairs({ changed, removed }) do
      for _, app in ipairs(list) do
        local st = states[app.name]
        if st then
          to_stop[#to_stop + 1] = cur.by_name[app.name]
          stopping[#stopping + 1] = app.name
          if (st.status == "running" or st.status == "paused") and rel.by_name[app.name] then
            restart[#restart + 1] = app.name
          end
        end
      end
    end
    if any_running then
      for _, app in ipairs(added) do restart[#restart + 1] = app.name end
    end
    local affected_names = json.array()
    for _, app in ipairs(affected) do affected_names[#affected_names + 1] = app.name end
    j:set("affected", affected_names)
    j:set("stopped", stopping)
    j:set("restart", restart)
    -- Before the swap, a failure starts what was stopped again and drops
    -- the new release and its backup: the root is as it was.
    local was_running = {}
    for _, name in ipairs(stopping) do
      local st = states[name]
      if st.status == "running" or st.status == "paused" then was_running[#was_running + 1] = name end
    end
    local function unstop(msg)
      local started = apps.start(ctx, cur, apps.select(cur, was_running))
      if not started then ctx.report.warn("could not start the stopped apps again") end
      ct.fs.unlink(info.path)
      ct.fs.unlink((info.path:gsub("%.tar%.%a+$", ".json")))
      return undo_build(msg)
    end
    stepped, step_err = j:step("stop")
    if not stepped then return unstop(step_err) end
    local old_hc = apps.hooks_for(ctx, cur, { from = cur, to = rel })
    local ok, stop_err, stop_step = apps.stop(ctx, cur, to_stop, { hooks = old_hc })
    if not ok then
      if stop_step == "pre_stop" then return unstop("pre_stop refused the upgrade: " .. stop_err) end
      return nil, "stopping the changed apps failed: " .. stop_err
    end
    stepped, step_err = j:step("swap")
    if not stepped then return unstop(step_err) end
    ctx.report.step("swapping to release %s", rel.id)
    local swapped, swap_err = release.swap(ctx.paths, rel.id)
    if not swapped then return unstop("cannot switch current-release: " .. tostring(swap_err)) end

    local new_hc = apps.hooks_for(ctx, rel, { from = cur, to = rel })
    local failed_step, failure
    stepped, step_err = j:step("migrate")
    if not stepped then failed_step, failure = "migration", step_err end
    local migrated = {}
    for _, app in ipairs(stepped and affected or {}) do
      local ran, merr = hooks.migrate(new_hc, rel.by_name[app.name])
      if not ran then failed_step, failure = "migration", merr break end
      migrated[#migrated + 1] = { app = app.name, ran = ran }
    end
    if not failed_step then common.tell_migrations(ctx, migrated) end
    local started = {}
    if not failed_step then
      stepped, step_err = j:step("start")
      local res, start_err, step, partial
      if stepped then
        res, start_err, step, partial = apps.start(ctx, rel, apps.select(rel, restart), { hooks = new_hc, health = true })
      else
        start_err, step = step_err, "start"
      end
      if res then started = res else failed_step, failure, started = step, start_err, partial or {} end
    end
    if not failed_step then
      stepped, step_err = j:step("post_upgrade")
      if not stepped then failed_step, failure = "post_upgrade", step_err end
      for _, app in ipairs(stepped and affected or {}) do
        local pok, perr2 = hooks.run(new_hc, rel.by_name[app.name], "post_upgrade")
        if not pok then failed_step, failure = "post_upgrade", perr2 break end
      end
    end

    if failed_step then
      if ctx.opts.no_rollback then
        j:finish()
        return nil, string.format("upgrade to %s failed at %s: %s; left in place (--no-rollback)",
          rel.id, failed_step, failure)
      end
      -- The journal stays for 'ctcli recover', which rolls back as a kill here would.
      stepped, step_err = j:step("rollback")
      if not stepped then
        if ctx.history_note then
          ctx.history_note("rollback", { automatic = true, from = rel.id, to = cur.id, failed_at = failed_step,
            ok = false, problems = "did not begin: " .. tostring(step_err) })
        end
        return nil, string.format("upgrade to %s failed at %s: %s; the rollback to %s did not begin (%s): run 'ctcli recover'",
          rel.id, failed_step, failure, cur.id, step_err)
      end
      local rok, rerr = auto_rollback(ctx, { cur = cur, rel = rel, affected = affected,
        stopped = stopping, backup = info.path })
      if ctx.history_note then
        ctx.history_note("rollback", { automatic = true, from = rel.id, to = cur.id, failed_at = failed_step,
          ok = rok and true or false, problems = rerr })
      end
      local done, ferr = j:finish()
      local closing = done and "" or ("; " .. ferr)
      if not rok then
        return nil, string.format("upgrade to %s failed at %s: %s; the rollback to %s had problems: %s%s",
          rel.id, failed_step, failure, cur.id, rerr, closing)
      end
      return nil, string.format("upgrade to %s failed at %s: %s; rolled back to %s%s",
        rel.id, failed_step, failure, cur.id, closing)
    end

    -- The upgrade is done: a failing prune is a warning, not a failure.
    stepped, step_err = j:step("prune")
    local pruned, gone = {}, nil
    if stepped then
      pruned = releases.prune(ctx.paths, math.max(1, math.floor(ctx.opts.keep or 3)))
      if pruned and #pruned > 0 then ctx.report.step("pruned release%s %s", #pruned == 1 and "" or "s", table.concat(pruned, ", ")) end
      -- Backup retention after every successful upgrade (after the releases,
      -- so a pruned release's backups are no longer protected).
      local conf, conf_err = rootconf.load(ctx.paths)
      local ret_err
      if conf then gone, ret_err = backup.retain(ctx.paths, rootconf.keep(conf)) end
      if not gone then ctx.report.warn("backups not pruned: %s", tostring(conf_err or ret_err)) end
    else
      ctx.report.warn("releases and backups not pruned: %s", step_err)
    end
    local done, ferr = j:finish()
    if not done then return nil, "upgraded to " .. rel.id .. ", but " .. ferr end
    if ctx.json then
      json.print({
        release = json.release(rel), from = json.release(cur), changes = plan.to_json(diff),
        restarted = json.array(started), pruned = json.array(pruned),
        pruned_backups = (function()
          local out = json.array()
          for _, b in ipairs(gone or {}) do out[#out + 1] = b.path end
          return out
        end)(),
      })
    else
      ui.print("upgraded to %s (%s)", rel.id, ui.release_label(rel))
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
      local kept = {}
      for _, d in ipairs(diff) do if d.change == "unchanged" then kept[#kept + 1] = d.name end end
      if #kept > 0 then ui.print("unchanged, kept running: %s", table.concat(kept, ", ")) end
    end
    return true
  end,
}
