-- genunits.lua: writes the systemd template units a system install ships
-- (ctcli@.service, ctcli-rotate-logs@.service, ctcli-rotate-logs@.timer),
-- from ctcli.systemd, the module 'ctcli enable' writes its units with.
-- Run by `cmake --install` inside the engine, so the Exec lines name the
-- binary where that install puts it:
--   ctcli-lua tools/genunits.lua OUTDIR CTCLI     (CTCLI an absolute path)
local ct = require("ct")
local systemd = require("ctcli.runtime.systemd")

local outdir, ctcli = arg[1], arg[2]
if not outdir or not ctcli or ctcli:sub(1, 1) ~= "/" then
  io.stderr:write("usage: ctcli-lua tools/genunits.lua OUTDIR /ABSOLUTE/PATH/OF/ctcli\n")
  os.exit(2)
end
local ok, err = ct.fs.mkdir(outdir, 493, true)
if not ok then
  io.stderr:write("genunits: ", tostring(err), "\n")
  os.exit(1)
end
for _, u in ipairs(systemd.templates(ctcli)) do
  ok, err = ct.fs.write_atomic(outdir .. "/" .. u.name, u.text, 420)
  if not ok then
    io.stderr:write("genunits: ", u.name, ": ", tostring(err), "\n")
    os.exit(1)
  end
end
