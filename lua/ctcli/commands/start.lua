-- start [app...]: start all apps, or the named ones, in dependency order.
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local json = require("ctcli.json")
local ui = require("ctcli.ui")

return {
  summary = "Start all apps, or the named ones, in dependency order",
  usage = "start [APP...]",
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "start")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local todo, already = {}, {}
    for _, app in ipairs(list) do
      local st = states[app.name]
      if st and (st.status == "running" or st.status == "paused") then
        already[#already + 1] = app.name
      else
        todo[#todo + 1] = app
      end
    end
    local started, sterr = apps.start(ctx, rel, todo, { hooks = apps.hooks_for(ctx, rel), health = true })
    if not started then return nil, sterr end
    if ctx.json then
      ui.print(json.encode({ started = json.array(started), already_running = json.array(already) }))
    else
      for _, n in ipairs(already) do ui.print("%s is already running", n) end
      for _, n in ipairs(started) do ui.print("started %s", n) end
    end
    return true
  end,
}
