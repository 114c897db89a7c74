-- disable: removes the systemd units 'enable' installed for this root. The
-- apps keep running; only boot, the log timer and the watch stop.
local ct = require("ct")
local systemd = require("ctcli.runtime.systemd")
local ui = require("ctcli.ui.console")

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "it reports in prose",
  summary = "Remove this root's systemd units (the apps keep running)",
  usage = "disable",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    if not systemd.available() then
      return nil, "systemd is not running on this host (no /run/systemd/system, as in a container); nothing to disable"
    end
    local names = systemd.installed(ctx.root)
    if #names == 0 then
      ui.print("no units of %s are installed", ctx.root)
      return true
    end
    for _, n in ipairs(names) do
      -- Timers stop now; the boot unit is only disabled: stopping it would
      -- run its ExecStop and stop the apps.
      local args = n:match("%.timer$") and { "disable", "--now", n } or { "disable", n }
      local ok, err = systemd.systemctl(args)
      if not ok then return nil, err end
    end
    for _, n in ipairs(names) do
      local ok, err = ct.fs.unlink(systemd.UNIT_DIR .. "/" .. n)
      if not ok then return nil, err end
      ui.print("removed %s", n)
    end
    return systemd.systemctl({ "daemon-reload" })
  end,
}
