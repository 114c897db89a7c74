-- rotate-logs [--max-size SIZE] [--keep N]: rotate each app's
-- stdout-stderr.log past SIZE while the app runs, compress the rotated part
-- (zstd) and keep the newest N.
local ct = require("ct")
local appfs = require("ctcli.runtime.appfs")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local logrotate = require("ctcli.runtime.logrotate")
local monitor = require("ctcli.runtime.runc").monitor
local ui = require("ctcli.ui.console")

return {
  summary = "Rotate the apps' stdout/stderr logs past a size (monitors: now; older logs: keeping N parts)",
  usage = "rotate-logs [--max-size SIZE] [--keep N] [APP...]",
  description = table.concat({
    "A log past SIZE (default 100M; K, M, G are KiB, MiB, GiB) has its head moved to",
    "logs/<app>/stdout-stderr.log.<UTC time>.zst while the app keeps writing: the",
    "file is cut in place (fallocate COLLAPSE_RANGE), so no line is lost. Where the",
    "filesystem cannot (tmpfs, btrfs), it is copied and truncated, with a warning.",
    "The newest N parts are kept (default 5). 'ctcli enable' runs this daily.",
    "An app started under a monitor has its log in state/runs/APP/, which the",
    "monitor rotates by size itself; past SIZE, rotate-logs asks it to rotate now.",
  }, "\n"),
  options = {
    { "--max-size", arg = "SIZE", parse = logrotate.parse_size, expects = "a size like 100M or 1G",
      help = "rotate logs larger than this (default 100M)" },
    { "--keep", arg = "N", type = "number", integer = true, help = "rotated parts to keep per app (default 5)" },
  },
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local max = ctx.opts.max_size or logrotate.parse_size("100M")
    local keep = math.floor(ctx.opts.keep or 5)
    local names = ctx.args
    if #names == 0 then
      names = appfs.log_apps(ctx.paths)
      local seen = {}
      for _, n in ipairs(names) do seen[n] = true end
      for _, n in ipairs(ct.fs.dir(ctx.paths.state .. "/runs") or {}) do
        if not seen[n] then names[#names + 1] = n end
      end
      table.sort(names)
    end
    local j, jerr = journal.begin(ctx.paths, "rotate-logs", { apps = json.array(names) }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("rotate") if not stepped then return nil, jwerr end end
    local report, failures = json.array(), {}
    for _, name in ipairs(names) do
      local mon = name:match("^[%w][%w._-]*$") and monitor.state(ctx.paths, name)
      if monitor.live(mon) then
        -- Its monitor owns the log: asked to rotate (a rename, nothing copied).
        local st = ct.fs.stat(monitor.dir(ctx.paths, name) .. "/current.log")
        local size = st and st.size or 0
        if size > max then
          local reply, rerr = monitor.request(ctx.paths, name, "rotate")
          local n = reply and reply:match("^ok (%d+)")
          if not n then
            failures[#failures + 1] = name .. ": " .. tostring(reply or rerr)
          else
            report[#report + 1] = { app = name, bytes = size, part = string.format("%08d.log", tonumber(n)),
              method = "monitor",
              removed = json.array() }
          end
        else
          report[#report + 1] = { app = name, bytes = 0, part = json.null, method = "monitor", removed = json.array() }
        end
        goto continue
      end
      local d = name:match("^[%w][%w._-]*$") and appfs.logs_dir(ctx.paths, name)
      if not d or not d:exists(logrotate.LOG) then
        if d then d:close() end
        failures[#failures + 1] = string.format("%s: no log at %s/%s/%s", name, ctx.paths.logs, name, logrotate.LOG)
      else
        local res, err = logrotate.rotate(d, { max_size = max, keep = keep,
          lock = appfs.rotation_lock(ctx.paths, name), counter = appfs.collapsed_file(ctx.paths, name) })
        d:close()
        if not res then
          failures[#failures + 1] = name .. ": " .. tostring(err)
        else
          if res.warning then ui.warn("%s", res.warning) end
          report[#report + 1] = {
            app = name, bytes = res.rotated, part = res.part and res.part:match("[^/]+$") or json.null,
            method = res.method or json.null, removed = json.array(res.removed),
          }
        end
      end
      ::continue::
    end
    j:finish()
    if ctx.json then
      json.print({ logs = report })
    else
      for _, r in ipairs(report) do
        if r.bytes > 0 then
          ui.print("%s: rotated %s into %s", r.app, ui.bytes(r.bytes), r.part)
        else
          ui.info("%s: under %s, left as it is", r.app, ui.bytes(max))
        end
        for _, f in ipairs(r.removed) do ui.info("%s: removed %s", r.app, f) end
      end
    end
    if #failures > 0 then return nil, "cannot rotate " .. table.concat(failures, "; ") end
    return true
  end,
}
