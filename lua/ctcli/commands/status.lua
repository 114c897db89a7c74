-- status: per app its state, wanted or not, pid, uptime, version and short
-- image digest, from one `runc list`; -v adds memory and CPU from
-- `runc events --stats`. A wanted app whose container stopped by itself is
-- "exited": runc keeps no exit status of a detached container's init, so
-- the code is reported only when known (null otherwise), and the time is
-- when its cgroup last changed (the exit) or, failing that, its last output.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local health = require("ctcli.runtime.health")
local journal = require("ctcli.journal.journal")
local monitor = require("ctcli.runtime.runc").monitor
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local rootconf = require("ctcli.store.rootconf")
local runtime = require("ctcli.runtime.runc")
local ui = require("ctcli.ui.console")
local userns = require("ctcli.runtime.userns")
local wanted = require("ctcli.store.wanted")
local clock = require("ctcli.base.clock")

local parse_time = clock.epoch

local function iso(t)
  return t and clock.iso(math.floor(t)) or json.null
end

-- exit_time(ctx, rt, name) -> epoch seconds of an exited app's exit: its
-- cgroup's last change, or failing that, its last output.
local function exit_time(ctx, rt, name)
  local t = runtime.exit_time(rt, runtime.container_id(ctx.paths, name))
  if t then return t end
  local log = require("ctcli.runtime.appfs").log_stat(ctx.paths, name)
  return log and log.mtime
end

return {
  summary = "Show each app's state, wanted state, pid, uptime, version and image",
  usage = "status [-v]",
  description = "-v (global) adds each running app's memory and CPU time (runc events --stats).",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local doc = { root = ctx.root, release = json.null, apps = json.array() }
    local pending, perr = journal.pending(ctx.paths)
    if pending then
      doc.interrupted = pending.doc.command
    elseif perr then
      -- Reported, not fatal: status is how the operator looks at the root.
      doc.journal_error = perr
    end
    local rel, err = release.current(ctx.paths)
    if err then return nil, err end
    if rel then
      doc.release = json.release(rel)
      -- runc and umoci are looked up once, for the states and the stats.
      local tools = runtools.of(rel)
      local states, serr = apps.states(ctx, rel, tools)
      if not states then return nil, serr end
      local now = ct.time.now()
      local checks = health.read(ctx.paths)
      local want, werr = wanted.read(ctx.paths)
      if not want then return nil, werr end
      local rt = runtime.rt(ctx.paths, tools)
      local conf = rootconf.load(ctx.paths) or { apps = {} }
      local range, rerr = userns.range(ctx.paths)
      if rerr then return nil, rerr end
      for _, name in ipairs(rel.order) do
        local app = rel.by_name[name]
        local st = states[name]
        local created = st and parse_time(st.created)
        local is_wanted = wanted.is_wanted(want, name)
        local mon = monitor.state(ctx.paths, name)
        local state = monitor.shown(st, mon)
        local exited = json.null
        local last = mon and type(mon.last_exit) == "table" and mon.last_exit or nil
        if st and st.status == "stopped" then
          -- ctcli deletes the containers it stops: a stopped one still
          -- listed exited by itself (or was killed from outside).
          exited = { code = json.null, at = iso(exit_time(ctx, rt, name)) }
        end
        -- What the app's monitor recorded: the exit code or signal of its
        -- last run, a restart under way, a crash loop given up.
        if last and state ~= "running" then
          exited = { code = last.signal and (128 + last.signal) or last.code or json.null,
            signal = last.signal or json.null, at = last.at or json.null }
        end
        local rec = wanted.record(want, name) or {}
        -- A running app: the mapping it started with (an app started before
        -- user namespaces keeps none until its next start); else the one
        -- its next start gives it.
        local idmap, opted = userns.desired(app, conf, range)
        if runtime.running(st) then
          local m, merr = userns.recorded(ctx.paths, name)
          if m == nil then return nil, merr end
          idmap = m
          -- The Go ctcli's root, not adopted yet: its apps run in its mapping.
          if rel.go then idmap = userns.GO end
        end
        doc.apps[#doc.apps + 1] = {
          name = name,
          state = state,
          wanted = is_wanted,
          exited = exited,
          restarts = (mon and tonumber(mon.restarts) or 0) + (tonumber(rec.restarts) or 0),
          last_exit = last and {
            code = last.code or json.null, signal = last.signal or json.null, at = last.at or json.null,
          } or json.null,
          -- A monitor killed while it supervised the app: no one reads its
          -- output or restarts it until its next start.
          monitor = mon and (monitor.lost(mon) and "lost" or (monitor.live(mon) and "running" or "exited")) or json.null,
          stats = (ctx.verbose and st and st.status == "running") and
            (runtime.stats(rt, runtime.container_id(ctx.paths, name)) or json.null) or nil,
          oom_kills = st and runtime.oom_kills(rt, runtime.container_id(ctx.paths, name)) or json.null,
          pid = (st and st.status ~= "stopped" and st.pid ~= 0) and st.pid or json.null,
          container = runtime.container_id(ctx.paths, name),
          uptime = (st and st.status == "running" and created) and math.max(0, math.floor(now - created)) or json.null,
          version = app.version,
          -- image is the reference, digest the sha256 (docs/json.md), as
          -- release-info, inspect and plan name them.
          image = app.image.name or app.image.ref or json.null,
          ref = app.image.ref or json.null,
          digest = app.image.digest,
          health = (st and st.status == "running" and app.healthcheck and checks[name] and checks[name].status) or json.null,
          user_namespace = idmap or false,
          privileged = not idmap,
          opted_out = opted or json.null,
        }
      end
    end
    if ctx.json then
      json.print(doc)
      return true
    end
    if doc.journal_error then
      ui.warn("%s", doc.journal_error)
    end
    if doc.interrupted then
      ui.warn("an interrupted '%s' awaits recovery; the next changing command (or 'ctcli recover') completes or undoes it",
        doc.interrupted)
    end
    if not rel then
      ui.print("no release installed in %s", ctx.root)
      return true
    end
    ui.print("release %s (%s)", rel.id, ui.release_label(rel))
    local rows = {}
    local lost = {}
    for _, a in ipairs(doc.apps) do
      local state = a.state
      if a.monitor == "lost" then lost[#lost + 1] = a.name end
      if state == "exited" or state == "failed" or state == "restarting" then
        local e = a.last_exit ~= json.null and a.last_exit or a.exited
        local what = e ~= json.null and (e.signal ~= nil and e.signal ~= json.null and string.format("signal %d", e.signal)
          or (e.code ~= json.null and string.format("code %d", e.code))) or nil
        state = state .. (what and (" (" .. what .. ")") or "")
        if e ~= json.null and e.at ~= json.null then state = state .. " at " .. tostring(e.at):gsub("%.%d+Z$", "Z") end
        if a.restarts > 0 then state = state .. string.format(", %d restart%s", a.restarts, a.restarts == 1 and "" or "s") end
        if type(a.oom_kills) == "number" and a.oom_kills > 0 then
          state = state .. string.format(" (%d OOM kill%s)", a.oom_kills, a.oom_kills == 1 and "" or "s")
        end
        state = ui.paint(a.wanted and "red" or "dim", state)
      elseif state == "running" then
        state = ui.paint("green", state)
        if a.restarts > 0 then state = state .. string.format(" (%d restart%s)", a.restarts, a.restarts == 1 and "" or "s") end
        if type(a.oom_kills) == "number" and a.oom_kills > 0 then
          state = state .. string.format(" (%d OOM kill%s)", a.oom_kills, a.oom_kills == 1 and "" or "s")
        end
      elseif state == "stopped" then state = ui.paint("dim", state) end
      local row = {
        a.name, state, a.wanted and "yes" or "no", a.pid ~= json.null and tostring(a.pid) or "-",
        a.uptime ~= json.null and ui.duration(a.uptime) or "-",
        a.health ~= json.null and a.health or "-", a.version or "-",
        ui.image_label({ digest = a.digest, name = a.image ~= a.ref and a.image ~= json.null and a.image or nil }),
      }
      if ctx.verbose then
        local s = type(a.stats) == "table" and a.stats or {}
        local mem = s.memory and s.memory ~= json.null and ui.bytes(s.memory) or "-"
        if s.memory_limit and s.memory_limit ~= json.null then mem = mem .. " / " .. ui.bytes(s.memory_limit) end
        if type(a.oom_kills) == "number" and a.oom_kills > 0 then
          mem = mem .. string.format(" (%d OOM kill%s)", a.oom_kills, a.oom_kills == 1 and "" or "s")
        end
        row[#row + 1] = mem
        row[#row + 1] = (s.cpu_seconds and s.cpu_seconds ~= json.null) and string.format("%.2fs", s.cpu_seconds) or "-"
        row[#row + 1] = userns.describe(a.user_namespace, a.opted_out ~= json.null and a.opted_out or nil)
      end
      rows[#rows + 1] = row
    end
    local headers = { "APP", "STATE", "WANTED", "PID", "UPTIME", "HEALTH", "VERSION", "IMAGE" }
    if ctx.verbose then
      headers[#headers + 1] = "MEMORY"
      headers[#headers + 1] = "CPU"
      headers[#headers + 1] = "ISOLATION"
    end
    ui.table(headers, rows)
    if ctx.verbose then
      -- Said once: whether the apps' rootfs are overlays or each app's own copy.
      local kind, why = require("ctcli.store.layers").storage(ctx.paths)
      ui.print(kind == "overlay" and "storage: overlayfs (shared read-only layers, a writable layer per app)"
        or "storage: an own copy of its image per app (no overlayfs: %s)", why)
    end
    if #lost > 0 then
      ui.warn("the monitor of %s is gone: its output is not read and it is not restarted until " ..
        "'ctcli restart %s'", table.concat(lost, ", "), table.concat(lost, " "))
    end
    return true
  end,
}
