-- restart [app...]: stop, then start, all apps or the named ones.
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local json = require("ctcli.json")
local ui = require("ctcli.ui")

return {
  summary = "Restart all apps, or the named ones",
  usage = "restart [APP...]",
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "restart")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local hc = apps.hooks_for(ctx, rel)
    local ok, sterr = apps.stop(ctx, rel, list, { hooks = hc })
    if not ok then return nil, sterr end
    local started, aerr = apps.start(ctx, rel, list, { hooks = hc, health = true })
    if not started then return nil, aerr end
    if ctx.json then
      ui.print(json.encode({ restarted = json.array(started) }))
    else
      for _, n in ipairs(started) do ui.print("restarted %s", n) end
    end
    return true
  end,
}
