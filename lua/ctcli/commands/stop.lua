-- stop [app...]: stop all apps, or the named ones, in reverse dependency order.
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local json = require("ctcli.json")
local ui = require("ctcli.ui")

return {
  summary = "Stop all apps, or the named ones (stop signal, timeout, then SIGKILL)",
  usage = "stop [--force] [APP...]",
  options = {
    { "--force", help = "kill at once (SIGKILL, no timeout)" },
  },
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "stop")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local todo, stopped_already = {}, {}
    for _, app in ipairs(list) do
      if states[app.name] then todo[#todo + 1] = app else stopped_already[#stopped_already + 1] = app.name end
    end
    local ok, sterr = apps.stop(ctx, rel, todo, { force = ctx.opts.force, hooks = apps.hooks_for(ctx, rel) })
    if not ok then return nil, sterr end
    local names = {}
    for _, app in ipairs(todo) do names[#names + 1] = app.name end
    if ctx.json then
      ui.print(json.encode({ stopped = json.array(names), not_running = json.array(stopped_already) }))
    else
      for _, n in ipairs(stopped_already) do ui.print("%s is not running", n) end
      for _, n in ipairs(names) do ui.print("stopped %s", n) end
    end
    return true
  end,
}
