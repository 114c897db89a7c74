-- The reporter a changing command tells its steps to. Modules below the
-- commands (services, store, model, runtime, hooks, journal) never print:
-- they are handed one (ctx.report, opts.report) made by the CLI from
-- ctcli.ui.report, and nil is the silent one, so a library caller or a
-- unit test needs nothing.
--   step(fmt, ...)    one line per step ("stopping web"); -q drops it
--   detail(fmt, ...)  -v only (hook names, health attempts, runc calls)
--   warn(fmt, ...)    something went wrong but the command goes on
--   bar(label, total) -> {add(n), set(n), done(), stop()}: a bar on a
--                     terminal, nothing elsewhere; done() fills it to total
--   verbose           whether details are wanted (to skip costly ones)
local M = {}

local function noop() end

local silent_bar = { add = noop, set = noop, done = noop, stop = noop }

M.silent = {
  step = noop, detail = noop, warn = noop, verbose = false,
  bar = function() return silent_bar end,
}

-- of(r) -> r, or the silent reporter when r is nil.
function M.of(r)
  return r or M.silent
end

return M
