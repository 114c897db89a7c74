-- restart [app...]: stop, then start, all apps or the named ones.
local apps = require("ctcli.services.apps")
local common = require("ctcli.services.common")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")
local wanted = require("ctcli.store.wanted")

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
    local names = {}
    for _, app in ipairs(list) do names[#names + 1] = app.name end
    -- Recovery starts again what an interrupted restart stopped.
    local j, jerr = journal.begin(ctx.paths, "restart", { stopped = json.array(names) }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("mark") if not stepped then return nil, jwerr end end
    local mok, merr = wanted.mark(ctx.paths, names, true)
    if not mok then j:finish() return nil, merr end
    do local stepped, jwerr = j:step("stop") if not stepped then return nil, jwerr end end
    local ok, sterr = apps.stop(ctx, rel, list, { hooks = hc })
    if not ok then j:finish() return nil, sterr end
    do local stepped, jwerr = j:step("start") if not stepped then return nil, jwerr end end
    local started, aerr = apps.start(ctx, rel, list, { hooks = hc, health = true })
    j:finish()
    if not started then return nil, aerr end
    if ctx.json then
      json.print({ restarted = json.array(started) })
    else
      for _, n in ipairs(started) do ui.print("restarted %s", n) end
    end
    return true
  end,
}
