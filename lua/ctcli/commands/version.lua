-- version: ctcli's version; with -v also Lua, libarchive, runc and umoci.
local ct = require("ct")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")

return {
  summary = "Print the version (with -v: Lua, libarchive, runc and umoci too)",
  usage = "version",
  max_args = 0,
  run = function(ctx)
    local info = { ctcli = ct.version }
    if ctx.verbose or ctx.json then
      info.lua = ct.lua_version
      info.libarchive = ct.libarchive_version
      -- runc and umoci are looked for only when asked about (-v, --json).
      local tools = require("ctcli.runtime.tools")
      local t = tools.resolve(ctx)
      info.runc = { path = t.runc or json.null, source = t.source, version = tools.version(t.runc) or json.null }
      info.umoci = { path = t.umoci or json.null, source = t.source, version = tools.version(t.umoci) or json.null }
    end
    if ctx.json then
      json.print(info)
    elseif ctx.verbose then
      ui.print("ctcli %s", info.ctcli)
      ui.print("lua %s", info.lua)
      ui.print("%s", info.libarchive)
      ui.print("runc %s (%s, %s)", info.runc.version ~= json.null and info.runc.version or "not found",
        info.runc.path ~= json.null and info.runc.path or "-", info.runc.source)
      ui.print("umoci %s (%s, %s)", info.umoci.version ~= json.null and info.umoci.version or "not found",
        info.umoci.path ~= json.null and info.umoci.path or "-", info.umoci.source)
    else
      ui.print("ctcli %s", info.ctcli)
    end
    return true
  end,
}
