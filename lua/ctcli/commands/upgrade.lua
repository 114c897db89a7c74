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

-- The upgrade's phases, in the order of `steps`. They share u: ctx, cur
-- (the release running), j (the journal), then what each phase learns (the
-- package, the plan, the new release rel, the backup, who stops and who
-- starts). A phase returns true | nil, msg [, code]; a failure after the
-- build undoes what the upgrade did so far (undo_build, unstop), and the
-- journal, held by `<close>`, is finished when upgrade() returns.

-- open(u) -> the staged release or the extracted package (its temp dir
-- goes with the caller's scope) | nil, msg.
local function open(u)
  local ctx, file = u.ctx, u.ctx.args[1]
  local pkg, err = staged.open(ctx, file, u.j, u.cur)
  if pkg == false then pkg, err = deploy.open(ctx, file, u.j) end
  return pkg, err
end

-- plan_and_ask(u, pkg) -> true | "noop" | nil, msg, code: the same plan
-- `ctcli plan PKG` prints (changes, stops and starts, hooks, migrations,
-- disk), then the question.
local function plan_and_ask(u, pkg)
  local ctx, cur = u.ctx, u.cur
  local preview_plan = preview.build(ctx, pkg, cur)
  u.diff = preview_plan.diff
  u.changed, u.removed, u.added, u.affected = {}, {}, {}, {}
  for _, d in ipairs(u.diff) do
    if d.change == "changed" then u.changed[#u.changed + 1] = d.new
    elseif d.change == "added" then u.added[#u.added + 1] = d.new
    elseif d.change == "removed" then u.removed[#u.removed + 1] = d.old end
    if d.change == "changed" or d.change == "added" then u.affected[#u.affected + 1] = d.new end
  end
  -- A hook file that does not compile stops the upgrade before anything changes.
  for _, app in ipairs(pkg.release.apps) do
    local ok, err = hooks.check(hooks.sources(ctx.paths, app, pkg.dir))
    if not ok then return nil, err end
  end
  -- The installed release again: nothing to do (no release, backup or restart).
  if preview_plan.noop then return "noop" end
  if preview_plan.downgrade ~= json.null and not ctx.opts.allow_downgrade then
    return nil, "refusing a downgrade: " .. preview_plan.downgrade .. " (--allow-downgrade to go ahead)"
  end
  if not ctx.json then
    preview_plan.signature_text = pkg.signer and ("verified, signed by " .. pkg.signer) or nil
    preview.print(preview_plan, cur, ui)
  end
  return ui.ask(ctx, "Proceed with the upgrade?", "upgrade")
end

-- pre_upgrade(u, pkg) -> true | nil, msg: from the new release's hooks, and may veto.
local function pre_upgrade(u, pkg)
  local ctx, cur = u.ctx, u.cur
  local pkg_hc = hooks.context(ctx, {
    base = pkg.dir, runc = runtools.of(cur).runc, bundle_dir = cur.dir,
    from = cur, to = pkg.release,
  })
  local stepped, step_err = u.j:step("pre_upgrade")
  if not stepped then return nil, step_err end
  for _, app in ipairs(u.affected) do
    local ok, err = hooks.run(pkg_hc, app, "pre_upgrade")
    if not ok then return nil, "pre_upgrade of " .. app.name .. " refused the upgrade: " .. err end
  end
  return true
end

-- prepare(u) -> true | "noop" | nil, msg, code: everything slow, while the
-- old release runs: open, plan, ask, pre_upgrade, unpack and build the new
-- release (u.rel). The package's temp dir goes when this returns.
local function prepare(u)
  local pkg <close>, perr = open(u)
  if not pkg then return nil, perr end
  u.pkg = pkg -- its unplace and staged outlive the temp dir
  local ok, err, code = plan_and_ask(u, pkg)
  if ok ~= true then return ok, err, code end
  ok, err = pre_upgrade(u, pkg)
  if not ok then return nil, err end
  u.rel, err = (pkg.build or deploy.build)(u.ctx, pkg, u.j, u.cur.id)
  if not u.rel then return nil, err end
  return true
end

-- undo_build(u, msg) -> nil, msg: the new release goes again.
local function undo_build(u, msg)
  if u.pkg.unplace then u.pkg.unplace(u.rel) else ct.fs.rmtree(u.rel.dir) end
  releases.prune(u.ctx.paths, math.huge)
  return nil, msg
end

local function files(u)
  local stepped, step_err = u.j:step("files")
  if not stepped then return nil, step_err end
  for _, app in ipairs(u.rel.apps) do
    local prepared, err = apps.prepare_files(u.ctx.paths, app)
    if not prepared then return nil, "cannot prepare the files of " .. app.name .. ": " .. err end
  end
  return true
end

-- backup_going(u) -> true | nil, msg: the backup an automatic rollback
-- restores data from: the configs and data of the apps this upgrade stops,
-- each paused only while its own are read. An unchanged app is neither
-- paused nor stopped.
local function backup_going(u)
  local ctx, j = u.ctx, u.j
  local stepped, step_err = j:step("backup")
  if not stepped then return nil, "the pre-upgrade backup failed: " .. step_err end
  local going = {}
  for _, list in ipairs({ u.changed, u.removed }) do
    for _, app in ipairs(list) do going[#going + 1] = app.name end
  end
  local info, bk_err = backup.create(ctx, u.cur, { data = true, reason = "upgrade", journal = j, only = going,
    images = not u.pkg.staged })
  if not info then return nil, "the pre-upgrade backup failed: " .. bk_err end
  u.backup = info
  j:set("backup", info.path)
  ct.fs.syncfs(ctx.paths.root)
  return true
end

-- plan_stops(u) -> true | nil, msg: which apps stop (the changed and removed
-- ones that are there), which start after the swap (those of them that ran
-- and are in the new release, and the added ones when anything runs), told
-- to the journal for recovery.
local function plan_stops(u)
  local ctx, cur, rel, j = u.ctx, u.cur, u.rel, u.j
  local states, serr = apps.states(ctx, cur)
  if not states then return nil, serr end
  local any_running = false
  for _, st in pairs(states) do
    if st.status == "running" or st.status == "paused" then any_running = true end
  end
  local to_stop, restart, stopping = {}, json.array(), json.array()
  for _, list in ipairs({ u.changed, u.removed }) do
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
    for _, app in ipairs(u.added) do restart[#restart + 1] = app.name end
  end
  local affected_names = json.array()
  for _, app in ipairs(u.affected) do affected_names[#affected_names + 1] = app.name end
  j:set("affected", affected_names)
  j:set("stopped", stopping)
  j:set("restart", restart)
  local was_running = {}
  for _, name in ipairs(stopping) do
    local st = states[name]
    if st.status == "running" or st.status == "paused" then was_running[#was_running + 1] = name end
  end
  u.to_stop, u.stopping, u.restart, u.was_running = to_stop, stopping, restart, was_running
  return true
end

-- unstop(u, msg) -> nil, msg: before the swap, a failure starts what was
-- stopped again and drops the new release and its backup: the root is as
-- it was.
local function unstop(u, msg)
  local ctx, cur, info = u.ctx, u.cur, u.backup
  local started = apps.start(ctx, cur, apps.select(cur, u.was_running))
  if not started then ctx.report.warn("could not start the stopped apps again") end
  ct.fs.unlink(info.path)
  ct.fs.unlink((info.path:gsub("%.tar%.%a+$", ".json")))
  return undo_build(u, msg)
end

-- stop_and_swap(u) -> true | nil, msg: from here the old release's apps go
-- down (everything slow is done), then current-release moves.
local function stop_and_swap(u)
  local ctx, cur, rel, j = u.ctx, u.cur, u.rel, u.j
  local stepped, step_err = j:step("stop")
  if not stepped then return unstop(u, step_err) end
  local old_hc = apps.hooks_for(ctx, cur, { from = cur, to = rel })
  local ok, stop_err, stop_step = apps.stop(ctx, cur, u.to_stop, { hooks = old_hc })
  if not ok then
    if stop_step == "pre_stop" then return unstop(u, "pre_stop refused the upgrade: " .. stop_err) end
    -- Some apps may be half down: the journal stays for 'ctcli recover'.
    j:keep()
    return nil, "stopping the changed apps failed: " .. stop_err
  end
  stepped, step_err = j:step("swap")
  if not stepped then return unstop(u, step_err) end
  ctx.report.step("swapping to release %s", rel.id)
  local swapped, swap_err = release.swap(ctx.paths, rel.id)
  if not swapped then return unstop(u, "cannot switch current-release: " .. tostring(swap_err)) end
  return true
end

-- go_live(u) -> nil | the step that failed, why: migrate, start the apps
-- (u.started: the names that started), check their health, post_upgrade.
local function go_live(u)
  local ctx, cur, rel, j = u.ctx, u.cur, u.rel, u.j
  u.started = {}
  local new_hc = apps.hooks_for(ctx, rel, { from = cur, to = rel })
  local stepped, step_err = j:step("migrate")
  if not stepped then return "migration", step_err end
  local migrated = {}
  for _, app in ipairs(u.affected) do
    local ran, merr = hooks.migrate(new_hc, rel.by_name[app.name])
    if not ran then return "migration", merr end
    migrated[#migrated + 1] = { app = app.name, ran = ran }
  end
  common.tell_migrations(ctx, migrated)
  stepped, step_err = j:step("start")
  if not stepped then return "start", step_err end
  local res, start_err, step, partial = apps.start(ctx, rel, apps.select(rel, u.restart),
    { hooks = new_hc, health = true })
  if not res then
    u.started = partial or {}
    return step, start_err
  end
  u.started = res
  stepped, step_err = j:step("post_upgrade")
  if not stepped then return "post_upgrade", step_err end
  for _, app in ipairs(u.affected) do
    local pok, perr = hooks.run(new_hc, rel.by_name[app.name], "post_upgrade")
    if not pok then return "post_upgrade", perr end
  end
  return nil
end

-- roll_back(u, failed_step, failure) -> nil, msg: after a failure past the
-- swap, back to the previous release (unless --no-rollback), saying how it went.
local function roll_back(u, failed_step, failure)
  local ctx, cur, rel, j = u.ctx, u.cur, u.rel, u.j
  if ctx.opts.no_rollback then
    return nil, string.format("upgrade to %s failed at %s: %s; left in place (--no-rollback)",
      rel.id, failed_step, failure)
  end
  local function note(ok, problems)
    if ctx.history_note then
      ctx.history_note("rollback", { automatic = true, from = rel.id, to = cur.id, failed_at = failed_step,
        ok = ok, problems = problems })
    end
  end
  local stepped, step_err = j:step("rollback")
  if not stepped then
    note(false, "did not begin: " .. tostring(step_err))
    -- The journal stays for 'ctcli recover', which rolls back as a kill here would.
    j:keep()
    return nil, string.format("upgrade to %s failed at %s: %s; the rollback to %s did not begin (%s): run 'ctcli recover'",
      rel.id, failed_step, failure, cur.id, step_err)
  end
  local rok, rerr = auto_rollback(ctx, { cur = cur, rel = rel, affected = u.affected,
    stopped = u.stopping, backup = u.backup.path })
  note(rok and true or false, rerr)
  local done, ferr = j:finish()
  local closing = done and "" or ("; " .. ferr)
  if not rok then
    return nil, string.format("upgrade to %s failed at %s: %s; the rollback to %s had problems: %s%s",
      rel.id, failed_step, failure, cur.id, rerr, closing)
  end
  return nil, string.format("upgrade to %s failed at %s: %s; rolled back to %s%s",
    rel.id, failed_step, failure, cur.id, closing)
end

-- prune(u): the upgrade is done: a failing prune is a warning, not a failure.
local function prune(u)
  local ctx = u.ctx
  u.pruned = {}
  local stepped, step_err = u.j:step("prune")
  if not stepped then
    ctx.report.warn("releases and backups not pruned: %s", step_err)
    return
  end
  u.pruned = releases.prune(ctx.paths, math.max(1, math.floor(ctx.opts.keep or 3)))
  if u.pruned and #u.pruned > 0 then
    ctx.report.step("pruned release%s %s", #u.pruned == 1 and "" or "s", table.concat(u.pruned, ", "))
  end
  -- Backup retention after every successful upgrade (after the releases,
  -- so a pruned release's backups are no longer protected).
  local conf, conf_err = rootconf.load(ctx.paths)
  local gone, ret_err
  if conf then gone, ret_err = backup.retain(ctx.paths, rootconf.keep(conf)) end
  if not gone then ctx.report.warn("backups not pruned: %s", tostring(conf_err or ret_err)) end
  u.pruned_backups = gone
end

-- upgrade(ctx, cur) -> u | nil, msg, code: the steps, in order. The
-- journal is finished when this returns, kept when a phase said so.
local function upgrade(ctx, cur)
  local j <close>, jerr = journal.begin(ctx.paths, "upgrade", { package = ctx.args[1], from = cur.id },
    ctx.steps, ctx.report)
  if not j then return nil, jerr end
  local u = { ctx = ctx, cur = cur, j = j }
  local ready, err, code = prepare(u)
  if ready == "noop" then u.noop = true return u end
  if not ready then return nil, err, code end
  local ok
  ok, err = files(u)
  if ok then ok, err = backup_going(u) end
  if ok then ok, err = plan_stops(u) end
  if not ok then return undo_build(u, err) end
  ok, err = stop_and_swap(u)
  if not ok then return nil, err end
  local failed_step, failure = go_live(u)
  if failed_step then return roll_back(u, failed_step, failure) end
  prune(u)
  local done, ferr = j:finish()
  if not done then return nil, "upgraded to " .. u.rel.id .. ", but " .. ferr end
  return u
end

local function print_result(ctx, u)
  local cur, rel, diff = u.cur, u.rel, u.diff
  if u.noop then
    if ctx.json then json.print({ release = json.release(cur), noop = true, changes = plan.to_json(diff) })
    else ui.print("already at %s (%s)", cur.id, ui.release_label(cur)) end
    return
  end
  if ctx.json then
    local pruned_backups = json.array()
    for _, b in ipairs(u.pruned_backups or {}) do pruned_backups[#pruned_backups + 1] = b.path end
    json.print({
      release = json.release(rel), from = json.release(cur), changes = plan.to_json(diff),
      restarted = json.array(u.started), pruned = json.array(u.pruned), pruned_backups = pruned_backups,
    })
    return
  end
  ui.print("upgraded to %s (%s)", rel.id, ui.release_label(rel))
  if #u.started > 0 then ui.print("started %s", table.concat(u.started, ", ")) end
  local kept = {}
  for _, d in ipairs(diff) do if d.change == "unchanged" then kept[#kept + 1] = d.name end end
  if #kept > 0 then ui.print("unchanged, kept running: %s", table.concat(kept, ", ")) end
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
    local cur, cerr = common.current_or_fail(ctx, "upgrade")
    if not cur then return nil, cerr end
    local u, err, code = upgrade(ctx, cur)
    if not u then return nil, err, code end
    print_result(ctx, u)
    return true
  end,
}
