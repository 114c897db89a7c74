-- status: per app its state, pid, uptime, version and short image digest,
-- from one `runc list`.
local ct = require("ct")
local apps = require("ctcli.apps")
local health = require("ctcli.health")
local journal = require("ctcli.journal")
local json = require("ctcli.json")
local release = require("ctcli.release")
local ui = require("ctcli.ui")

local function parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return nil end
  -- os.time reads the fields as local time; correct by the zone's offset.
  local t = os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = sec, isdst = false })
  local utc_now = os.time(os.date("!*t"))
  local local_now = os.time(os.date("*t"))
  return t + (local_now - utc_now)
end

return {
  summary = "Show each app's state, pid, uptime, version and image",
  usage = "status",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local doc = { root = ctx.root, release = json.null, apps = json.array() }
    local pending = journal.pending(ctx.paths)
    if pending then
      doc.interrupted = pending.doc.command
    end
    local rel, err = release.current(ctx.paths)
    if err then return nil, err end
    if rel then
      doc.release = { id = rel.id, name = rel.name, version = rel.version }
      local states, serr = apps.states(ctx, rel)
      if not states then return nil, serr end
      local now = ct.time.now()
      local checks = health.read(ctx.paths)
      for _, name in ipairs(rel.order) do
        local app = rel.by_name[name]
        local st = states[name]
        local created = st and parse_time(st.created)
        doc.apps[#doc.apps + 1] = {
          name = name,
          state = st and st.status or "stopped",
          pid = (st and st.status ~= "stopped" and st.pid ~= 0) and st.pid or json.null,
          uptime = (st and st.status == "running" and created) and math.max(0, math.floor(now - created)) or json.null,
          version = app.version,
          image = app.image.digest,
          health = (st and st.status == "running" and app.healthcheck and checks[name] and checks[name].status) or json.null,
        }
      end
    end
    if ctx.json then
      ui.print(json.encode(doc, true))
      return true
    end
    if doc.interrupted then
      ui.warn("an interrupted '%s' awaits recovery; the next changing command (or 'ctcli recover') completes or undoes it",
        doc.interrupted)
    end
    if not rel then
      ui.print("no release installed in %s", ctx.root)
      return true
    end
    ui.print("release %s (%s %s)", rel.id, rel.name, rel.version)
    local rows = {}
    for _, a in ipairs(doc.apps) do
      local state = a.state
      if state == "running" then state = ui.paint("green", state)
      elseif state == "stopped" then state = ui.paint("dim", state) end
      rows[#rows + 1] = {
        a.name, state, a.pid ~= json.null and tostring(a.pid) or "-",
        a.uptime ~= json.null and ui.duration(a.uptime) or "-",
        a.health ~= json.null and a.health or "-", a.version or "-", a.image:sub(8, 19),
      }
    end
    ui.table({ "APP", "STATE", "PID", "UPTIME", "HEALTH", "VERSION", "IMAGE" }, rows)
    return true
  end,
}
