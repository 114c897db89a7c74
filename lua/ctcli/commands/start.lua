-- start [app...]: start all apps, or the named ones, in dependency order,
-- and mark them wanted. --boot starts only the wanted apps (after the front
-- end recovered an interrupted command); --restart-exited starts the wanted
-- apps whose container stopped by itself, and logs it to logs/ctcli.log.
local apps = require("ctcli.services.apps")
local common = require("ctcli.services.common")
local journal = require("ctcli.journal.journal")
local monitor = require("ctcli.runtime.runc").monitor
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")
local wanted = require("ctcli.store.wanted")

-- exited(states, name) -> the runc state of a container that stopped by
-- itself (ctcli's stop deletes its containers, so a stopped one that is
-- still listed exited or was killed from outside).
local function exited(states, name)
  local st = states[name]
  if st and st.status == "stopped" then return st end
  return nil
end

return {
  summary = "Start all apps, or the named ones, in dependency order",
  usage = "start [--boot | --restart-exited] [APP...]",
  description = table.concat({
    "Marks the apps it starts as wanted (state/wanted.json): boot and --restart-exited",
    "start only wanted apps. --boot is what the systemd unit of 'ctcli enable' runs:",
    "it completes or undoes an interrupted command, then starts the wanted apps.",
    "--restart-exited starts the wanted apps whose container exited by itself and",
    "records each restart (and its count) in logs/ctcli.log; 'enable --watch' runs it.",
    "It leaves alone the apps a monitor supervises (their restart policy decides):",
    "only apps started before monitors (or by the Go ctcli) are its to restart.",
  }, "\n"),
  options = {
    { "--boot", help = "start the wanted apps only (at boot)" },
    { "--restart-exited", help = "start the wanted apps that exited by themselves" },
  },
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local boot, again = ctx.opts.boot, ctx.opts.restart_exited
    if boot and again then return nil, "--boot and --restart-exited exclude each other" end
    if (boot or again) and #ctx.args > 0 then
      return nil, "--boot and --restart-exited take no app names: they act on the wanted apps"
    end
    local rel, err = common.current_or_fail(ctx, "start")
    if not rel then
      -- At boot an empty root is nothing to do, not a failure of the unit.
      if (boot or again) and not err:find("is a directory", 1, true) then
        ui.info("no release installed; nothing to start")
        return true
      end
      return nil, err
    end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local want, werr = wanted.read(ctx.paths)
    if not want then return nil, werr end

    local todo, already, skipped = {}, {}, {}
    for _, app in ipairs(list) do
      local st = states[app.name]
      -- An app whose monitor was killed is started again (apps.start).
      local running = st and (st.status == "running" or st.status == "paused")
        and not monitor.lost(monitor.state(ctx.paths, app.name))
      if (boot or again) and not wanted.is_wanted(want, app.name) then
        skipped[#skipped + 1] = app.name
      elseif running then
        already[#already + 1] = app.name
      elseif again and not exited(states, app.name) then
        -- never started, or stopped by ctcli: not an exit to restart
        goto continue
      elseif again and monitor.state(ctx.paths, app.name) and not monitor.lost(monitor.state(ctx.paths, app.name)) then
        -- Supervised: its monitor applied its restart policy (a "failed"
        -- crash loop or "no" stays down until the operator starts it). One
        -- whose monitor was killed is unsupervised: restarted here.
        goto continue
      else
        todo[#todo + 1] = app
      end
      ::continue::
    end

    local names = {}
    for _, app in ipairs(todo) do names[#names + 1] = app.name end
    local j, jerr = journal.begin(ctx.paths, "start", {
      apps = json.array(names), mode = boot and "boot" or again and "restart-exited" or "start",
    }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("mark") if not stepped then return nil, jwerr end end
    if not (boot or again) then
      -- The operator's intent is recorded first: an interrupted start still
      -- leaves the apps wanted, and the next boot starts them.
      local all = {}
      for _, app in ipairs(list) do all[#all + 1] = app.name end
      local ok, merr = wanted.mark(ctx.paths, all, true)
      if not ok then j:finish() return nil, merr end
    end
    do local stepped, jwerr = j:step("start") if not stepped then return nil, jwerr end end
    if again then
      for _, n in ipairs(names) do
        local count = wanted.count_restart(ctx.paths, n)
        wanted.log(ctx.paths, "restart-exited: %s exited by itself (exit code unknown: runc keeps none); restart #%s",
          n, tostring(count))
      end
    end
    local started, sterr = apps.start(ctx, rel, todo, { hooks = apps.hooks_for(ctx, rel), health = true })
    j:finish()
    if not started then
      if again then wanted.log(ctx.paths, "restart-exited: failed: %s", tostring(sterr)) end
      return nil, sterr
    end
    -- A watch run that found nothing to restart is no change worth a history entry.
    if again and #started == 0 then ctx.history_quiet = true end
    if boot then wanted.log(ctx.paths, "boot: started %s", #started > 0 and table.concat(started, ", ") or "nothing") end
    if ctx.json then
      json.print({
        started = json.array(started), already_running = json.array(already), not_wanted = json.array(skipped),
      })
    else
      for _, n in ipairs(already) do ui.print("%s is already running", n) end
      for _, n in ipairs(started) do
        ui.print(again and "restarted %s (it had exited)" or "started %s", n)
      end
      if again and #started == 0 then ui.print("no wanted app has exited") end
    end
    return true
  end,
}
