-- enable [--watch SECONDS] [--print]: the systemd units that start this
-- root's wanted apps at boot (and stop them at shutdown), rotate the logs
-- daily and, with --watch, restart apps that exited.
local ct = require("ct")
local systemd = require("ctcli.runtime.systemd")
local ui = require("ctcli.ui.console")

-- The absolute path of this ctcli, for the units' Exec lines.
local function ctcli_path()
  return ct.fs.readlink("/proc/self/exe") or "/usr/local/bin/ctcli"
end

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "it reports in prose",
  summary = "Install systemd units that start this root's apps at boot",
  usage = "enable [--watch SECONDS] [--print]",
  description = table.concat({
    "Writes to " .. systemd.UNIT_DIR .. " and enables, for this root:",
    "  ctcli-<root>.service              start --boot at boot, stop --keep-wanted at shutdown",
    "  ctcli-<root>-rotate-logs.timer    rotate-logs daily",
    "  ctcli-<root>-watch.timer          start --restart-exited every SECONDS (--watch)",
    "<root> is the root path escaped as 'systemd-escape --path' does. --print writes the",
    "units to stdout instead (each after a '# " .. systemd.UNIT_DIR .. "/NAME' line) and works",
    "where systemd is not running.",
  }, "\n"),
  options = {
    { "--watch", arg = "SECONDS", type = "number", min = 1, help = "also restart exited apps every SECONDS" },
    { "--print", help = "print the units instead of installing them" },
  },
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local units = systemd.units({ root = ctx.root, ctcli = ctcli_path(), watch = ctx.opts.watch })
    if ctx.opts.print then
      for i, u in ipairs(units) do
        if i > 1 then io.stdout:write("\n") end
        io.stdout:write("# ", systemd.UNIT_DIR, "/", u.name, "\n", u.text)
      end
      return true
    end
    if not systemd.available() then
      return nil, "systemd is not running on this host (no /run/systemd/system, as in a container); " ..
        "'ctcli enable --print' writes the units for you to install"
    end
    -- A watch timer from an earlier 'enable --watch' goes when --watch is not given.
    local names, keep = {}, {}
    for _, u in ipairs(units) do keep[u.name] = true end
    for _, old in ipairs(systemd.installed(ctx.root)) do
      if not keep[old] then
        systemd.systemctl({ "disable", "--now", old })
        ct.fs.unlink(systemd.UNIT_DIR .. "/" .. old)
      end
    end
    for _, u in ipairs(units) do
      local ok, err = ct.fs.write_atomic(systemd.UNIT_DIR .. "/" .. u.name, u.text, 420)
      if not ok then return nil, "cannot write the unit: " .. tostring(err) end
      if u.name:match("%.timer$") or not u.name:match("%-rotate%-logs%.service$") and not u.name:match("%-watch%.service$") then
        names[#names + 1] = u.name
      end
    end
    local ok, err = systemd.systemctl({ "daemon-reload" })
    if not ok then return nil, err end
    local args = { "enable", "--now" }
    for _, n in ipairs(names) do args[#args + 1] = n end
    ok, err = systemd.systemctl(args)
    if not ok then return nil, err end
    for _, n in ipairs(names) do ui.print("enabled %s", n) end
    return true
  end,
}
