-- stop [app...]: stop all apps, or the named ones, in reverse dependency
-- order, and mark them not wanted (boot leaves them stopped).
local apps = require("ctcli.services.apps")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local ui = require("ctcli.ui.console")
local wanted = require("ctcli.store.wanted")

return {
  summary = "Stop all apps, or the named ones (stop signal, timeout, then SIGKILL)",
  usage = "stop [--force] [--keep-wanted] [APP...]",
  description = "Marks the apps as not wanted (state/wanted.json), so boot leaves them stopped;\n" ..
    "--keep-wanted does not (the ExecStop of 'ctcli enable': a shutdown is no operator's stop).",
  options = {
    { "--force", help = "kill at once (SIGKILL, no timeout)" },
    { "--keep-wanted", help = "leave the wanted state as it is" },
  },
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = release.current(ctx.paths)
    if not rel and err then return nil, err end
    -- Idempotent: with no release nothing runs, so there is nothing to stop.
    if not rel then
      if ctx.json then
        json.print({ stopped = json.array(), not_running = json.array(ctx.args) })
      else
        ui.print("no release installed in %s; nothing to stop", ctx.root)
      end
      return true
    end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local todo, stopped_already = {}, {}
    for _, app in ipairs(list) do
      if states[app.name] then todo[#todo + 1] = app else stopped_already[#stopped_already + 1] = app.name end
    end
    local names, all = {}, {}
    for _, app in ipairs(todo) do names[#names + 1] = app.name end
    for _, app in ipairs(list) do all[#all + 1] = app.name end
    local j, jerr = journal.begin(ctx.paths, "stop", { apps = json.array(names) }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("mark") if not stepped then return nil, jwerr end end
    if not ctx.opts.keep_wanted then
      local mok, merr = wanted.mark(ctx.paths, all, false)
      if not mok then j:finish() return nil, merr end
    end
    do local stepped, jwerr = j:step("stop") if not stepped then return nil, jwerr end end
    local ok, sterr = apps.stop(ctx, rel, todo, { force = ctx.opts.force, hooks = apps.hooks_for(ctx, rel) })
    j:finish()
    if not ok then return nil, sterr end
    if ctx.json then
      json.print({ stopped = json.array(names), not_running = json.array(stopped_already) })
    else
      for _, n in ipairs(stopped_already) do ui.print("%s is not running", n) end
      for _, n in ipairs(names) do ui.print("stopped %s", n) end
    end
    return true
  end,
}
