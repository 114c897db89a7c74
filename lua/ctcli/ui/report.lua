-- The CLI's reporter (the interface is ctcli.base.report's): step lines
-- and details on stderr, so stdout stays the command's result (and pure
-- JSON with --json); bars only when stderr is a terminal, never in a pipe
-- or a log, where the step lines are the whole story.
local ct = require("ct")
local console = require("ctcli.ui.console")

local M = {}

local function text(fmt, ...)
  return select("#", ...) > 0 and fmt:format(...) or fmt
end

local function noop() end

-- new(opts) -> reporter. opts: quiet (no step lines, no bars), verbose
-- (details too), tty (bars: stderr is a terminal), out (default io.stderr).
function M.new(opts)
  local out = opts.out or io.stderr
  local quiet = opts.quiet or false
  local verbose = (opts.verbose and not quiet) or false
  local bars = (opts.tty and not quiet) or false
  local r = { verbose = verbose, quiet = quiet }
  local shown -- the bar on screen: a line written meanwhile goes above it

  local function line(s)
    if shown then out:write("\r\27[K") end
    out:write(s, "\n")
    if shown then shown.draw(true) end
    out:flush()
  end

  function r.step(fmt, ...)
    if not quiet then line(text(fmt, ...)) end
  end

  function r.detail(fmt, ...)
    if verbose then line(text(fmt, ...)) end
  end

  function r.warn(fmt, ...)
    line("warning: " .. text(fmt, ...))
  end

  local silent_bar = { add = noop, set = noop, done = noop, stop = noop }

  function r.bar(label, total)
    if not bars then return silent_bar end
    total = total or 0
    local b = { n = 0 }
    local last = -math.huge
    function b.draw(force)
      local now = ct.time.monotonic()
      if not force and now - last < 0.1 then return end
      last = now
      local width = math.max(10, math.min(40, console.width() - #label - 36))
      local frac = total > 0 and math.min(1, b.n / total) or 0
      local filled = math.floor(frac * width)
      local amount = total > 0 and (console.bytes(math.min(b.n, total)) .. " / " .. console.bytes(total))
        or console.bytes(b.n)
      out:write(string.format("\r\27[K%s [%s%s] %3d%% %s", label, string.rep("#", filled),
        string.rep(".", width - filled), math.floor(frac * 100), amount))
      out:flush()
    end
    function b.set(n)
      b.n = n
      b.draw(false)
    end
    function b.add(n)
      b.set(b.n + n)
    end
    local function finish()
      if b.finished then return end
      b.finished = true
      b.draw(true)
      out:write("\n")
      out:flush()
      if shown == b then shown = nil end
    end
    -- done(): the work is complete, whatever the last callback said.
    function b.done()
      if total <= 0 then total = math.max(b.n, 1) end
      b.n = total
      finish()
    end
    -- stop(): the work ended short (a failure): the bar stays where it was.
    function b.stop() finish() end
    shown = b
    b.draw(true)
    return b
  end

  return r
end

return M
