-- history [-n N]: the changing commands run on this root, oldest first and
-- newest last (as `helm history`), from state/history.jsonl (ctcli.store.history).
local history = require("ctcli.store.history")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")

-- A word of the command line as a shell would need it.
local function quote(w)
  if w ~= "" and not w:find("[^%w@%%+=:,./_-]") then return w end
  return "'" .. w:gsub("'", "'\\''") .. "'"
end

local function command_line(e)
  if e.by == "monitor" then
    local x = type(e.exit) == "table" and e.exit or {}
    return string.format("(restart of %s by its policy, after %s)", tostring(e.app),
      x.signal and ("signal " .. x.signal) or ("exit code " .. tostring(x.code)))
  end
  local words = {}
  for _, w in ipairs(e.argv or {}) do words[#words + 1] = quote(tostring(w)) end
  if #words == 0 then return "(" .. e.command .. (e.by and (", by " .. e.by) or "") .. ")" end
  return table.concat(words, " ")
end

local function who(u)
  if type(u) ~= "table" then return "?" end
  local s = u.name or ("uid " .. tostring(u.uid))
  if u.sudo_user then s = u.sudo_user .. " (sudo)" end
  return s
end

local function releases(e)
  local a, b = e.release_before, e.release_after
  if a == b then return a or "-" end
  return (a or "-") .. " -> " .. (b or "-")
end

local function detail(e)
  local parts = {}
  if e.error then parts[#parts + 1] = e.error end
  local rb = e.rollback
  if type(rb) == "table" then
    parts[#parts + 1] = string.format("automatic rollback to %s%s", tostring(rb.to),
      rb.ok and "" or " (with problems)")
  end
  if e.recovered then parts[#parts + 1] = "first: " .. e.recovered end
  return table.concat(parts, "; ")
end

local function seconds(ms)
  if type(ms) ~= "number" then return "-" end
  if ms < 1000 then return string.format("%dms", math.floor(ms)) end
  return ui.duration(ms / 1000)
end

-- Every field of the format present in --json output, null when unknown.
local FIELDS = { "release_before", "release_after" }

return {
  summary = "Show the changing commands run on this root, newest last",
  usage = "history [-n N]",
  description = table.concat({
    "Every command that changes the root (install, upgrade, rollback, start, stop, ...)",
    "is recorded when it ends in state/history.jsonl: when it started, how long it took,",
    "who ran it, its command line, the release before and after, and its result",
    "(ok, failed, cancelled or refused, with the exit status and the error), and an",
    "upgrade's automatic rollback; and each restart an app's monitor made by its",
    "restart policy (from the monitor's notes). The record is kept across upgrades, rollbacks and",
    "restores, and each backup carries a copy. --json prints it as one document",
    "(format 1, docs/operations.md).",
  }, "\n"),
  options = {
    { "-n", arg = "N", type = "number", help = "only the last N entries" },
  },
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local entries, skipped = history.read(ctx.paths)
    if not entries then return nil, "cannot read the history: " .. tostring(skipped) end
    -- The monitors' policy restarts, each before the first command that
    -- started after it (the commands keep their order).
    local restarts = history.restarts(ctx.paths)
    table.sort(restarts, function(a, b) return a.started < b.started end)
    if #restarts > 0 then
      local merged, j = {}, 1
      for _, e in ipairs(entries) do
        while restarts[j] and restarts[j].started < tostring(e.started) do
          merged[#merged + 1] = restarts[j]
          j = j + 1
        end
        merged[#merged + 1] = e
      end
      for k = j, #restarts do merged[#merged + 1] = restarts[k] end
      entries = merged
    end
    for _, n in ipairs(skipped) do
      io.stderr:write(string.format("ctcli: note: line %d of %s is not a whole entry (a write cut short by a " ..
        "crash?); skipped\n", n, history.path(ctx.paths)))
    end
    for i, e in ipairs(entries) do e.index = i end
    local first = 1
    if ctx.opts.n then first = math.max(1, #entries - math.floor(ctx.opts.n) + 1) end
    local shown = json.array()
    for i = first, #entries do shown[#shown + 1] = entries[i] end
    if ctx.json then
      for _, e in ipairs(shown) do
        for _, k in ipairs(FIELDS) do
          if e[k] == nil then e[k] = json.null end
        end
        if type(e.argv) == "table" then json.array(e.argv) end
      end
      json.print({ entries = shown, skipped_lines = json.array(skipped) })
      return true
    end
    if #shown == 0 then
      ui.print("no changing command recorded on %s yet", ctx.root)
      return true
    end
    local rows = {}
    for _, e in ipairs(shown) do
      local result = e.result or "?"
      if e.exit_code and e.exit_code ~= 0 then result = string.format("%s (%d)", result, e.exit_code) end
      if e.result == "failed" or e.result == "refused" then result = ui.paint("red", result)
      elseif e.result == "cancelled" then result = ui.paint("yellow", result) end
      rows[#rows + 1] = {
        tostring(e.index), (e.started or "?"):gsub("%.%d+Z$", "Z"), seconds(e.duration_ms), who(e.user),
        command_line(e), releases(e), result, detail(e),
      }
    end
    ui.table({ "#", "STARTED", "TOOK", "USER", "COMMAND", "RELEASE", "RESULT", "DETAIL" }, rows)
    return true
  end,
}
