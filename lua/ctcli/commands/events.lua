-- events: follows the apps' states live, one line per change (a start, an
-- exit with its code or signal, a policy restart, a crash loop given up, a
-- monitor lost), from runc's state and the monitors' records, until
-- interrupted (or for --for SECONDS).
local ct = require("ct")
local apps = require("ctcli.services.apps")
local common = require("ctcli.services.common")
local json = require("ctcli.base.json")
local monitor = require("ctcli.runtime.runc").monitor
local ui = require("ctcli.ui.console")
local clock = require("ctcli.base.clock")

-- snapshot(ctx, rel) -> name -> {state=, pid=, restarts=, exit=}
local function snapshot(ctx, rel)
  local states = apps.states(ctx, rel) or {}
  local out = {}
  for _, name in ipairs(rel.order) do
    local st, mon = states[name], monitor.state(ctx.paths, name)
    local state = monitor.shown(st, mon)
    if monitor.lost(mon) then state = state .. ", monitor lost" end
    out[name] = {
      state = state, pid = st and st.pid ~= 0 and st.pid or nil,
      restarts = mon and mon.restarts or 0, exit = mon and mon.last_exit or nil,
    }
  end
  return out
end

local function line(ctx, name, before, now)
  local time = clock.iso()
  if ctx.json then
    -- One document per line (JSON Lines), each with its format; always
    -- compact, whatever --pretty says, so a line is an event.
    return json.encode({ format = json.FORMAT, time = time, app = name, from = before and before.state or json.null,
      to = now.state, pid = now.pid or json.null, restarts = now.restarts, last_exit = now.exit or json.null })
  end
  local what = now.state
  if now.exit and now.state ~= "running" then what = what .. " (" .. (monitor.exit_text(now.exit) or "?") .. ")" end
  if now.pid and now.state == "running" then what = what .. ", pid " .. now.pid end
  if before and now.restarts > before.restarts then what = what .. ", restart #" .. now.restarts end
  return string.format("%s %s: %s -> %s", time, name, before and before.state or "?", what)
end

return {
  summary = "Follow the apps' states live: starts, exits, restarts, crash loops",
  usage = "events [--for SECONDS]",
  description = "Prints one line per change of an app's state (--json: one JSON object per\n" ..
    "line), until interrupted or for --for SECONDS. It reads runc's state and the\n" ..
    "monitors' records; it changes nothing and takes no lock.",
  options = {
    { "--for", arg = "SECONDS", type = "number", above = 0, help = "stop after this many seconds" },
  },
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "events")
    if not rel then return nil, err end
    local deadline = ctx.opts["for"] and (ct.time.monotonic() + ctx.opts["for"]) or nil
    local last = snapshot(ctx, rel)
    -- Where each app stands first (a reader knows from here on nothing is missed).
    for _, name in ipairs(rel.order) do
      if ctx.json then io.stdout:write(line(ctx, name, nil, last[name]), "\n")
      else ui.info("%s: %s", name, last[name].state) end
    end
    io.stdout:flush()
    while not deadline or ct.time.monotonic() < deadline do
      ct.time.sleep(0.2)
      local now = snapshot(ctx, rel)
      for _, name in ipairs(rel.order) do
        local a, b = last[name], now[name]
        if a.state ~= b.state or (b.state == "running" and a.pid ~= b.pid) or a.restarts ~= b.restarts then
          io.stdout:write(line(ctx, name, a, b), "\n")
          io.stdout:flush()
        end
      end
      last = now
    end
    return true
  end,
}
