-- Health checks, run with runc exec after an app starts. The manifest's
-- {command, interval, timeout, retries, start_period}; the original
-- format's {command, waitFor} waits waitFor seconds, then runs it once.
-- The last result per app is kept in state/health.json for status.
local ct = require("ct")
local json = require("ctcli.base.json")
local runtime = require("ctcli.runtime.runc")
local clock = require("ctcli.base.clock")

local M = {}

local function record(paths, name, entry)
  local path = paths.state .. "/health.json"
  local doc = json.decode(ct.fs.read(path) or "{}") or {}
  doc[name] = entry
  ct.fs.write_atomic(path, json.encode(doc, true) .. "\n")
end

function M.read(paths)
  return json.decode(ct.fs.read(paths.state .. "/health.json") or "{}") or {}
end

-- forget(paths, name): a stopped app has no health.
function M.forget(paths, name)
  local path = paths.state .. "/health.json"
  local doc = json.decode(ct.fs.read(path) or "{}") or {}
  if doc[name] ~= nil then
    doc[name] = nil
    ct.fs.write_atomic(path, json.encode(json.object(doc), true) .. "\n")
  end
end

-- check(paths, rt, app [, started_at]) -> attempts it took (0: the app has
-- no check) | nil, msg. started_at (a monotonic time) counts the app's
-- start wait from its start, so apps started together wait together, not
-- one after the other. rt.report (the command's reporter) hears of each
-- attempt with -v.
function M.check(paths, rt, app, started_at)
  local hc = app.healthcheck
  if not hc then return 0 end
  local function told(fmt, ...) if rt.report then rt.report.detail(fmt, ...) end end
  local id = runtime.container_id(paths, app.name)
  local attempts, interval, wait
  if hc.legacy_wait_for then
    attempts, interval, wait = 1, 0, hc.legacy_wait_for
  else
    attempts, interval, wait = hc.retries or 3, hc.interval or 2, hc.start_period or 0
  end
  if started_at then wait = wait - (ct.time.monotonic() - started_at) end
  if wait > 0 then ct.time.sleep(wait) end
  local last = ""
  for i = 1, attempts do
    local args = { "exec", id }
    for _, a in ipairs(hc.command) do args[#args + 1] = a end
    local r, err = runtime.run(rt, args, { timeout = hc.timeout or 30, stderr = "stdout" })
    if r and r.code == 0 and not r.timed_out then
      told("health %s: attempt %d of %d: ok", app.name, i, attempts)
      record(paths, app.name, { status = "healthy", time = clock.iso() })
      return i
    end
    if not r then
      last = tostring(err)
    elseif r.timed_out then
      last = string.format("timed out after %gs", hc.timeout or 30)
    else
      last = string.format("exit status %d%s", r.code, r.stdout ~= "" and (": " .. r.stdout:gsub("%s+$", ""):sub(1, 200)) or "")
    end
    told("health %s: attempt %d of %d: %s", app.name, i, attempts, last)
    if i < attempts and interval > 0 then ct.time.sleep(interval) end
  end
  record(paths, app.name, { status = "unhealthy", time = clock.iso(), last = last })
  return nil, string.format("health check of %s failed after %d attempt%s: %s", app.name, attempts,
    attempts == 1 and "" or "s", last)
end

return M
