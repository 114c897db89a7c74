-- init: create the root layout; idempotent; recognises a Go ctcli root.
local root = require("ctcli.base.root")
local ui = require("ctcli.ui.console")
local json = require("ctcli.base.json")

return {
  summary = "Create a root directory (idempotent)",
  usage = "init",
  description = "Creates the layout ctcli keeps under --root: state/, config/, data/, logs/,\n" ..
    "releases/, images/, trusted-keys/, hooks/, runc-root/ and tmp/. Running it\n" ..
    "again changes nothing; a root made by the Go ctcli is completed in place.",
  max_args = 0,
  run = function(ctx)
    local legacy = root.is_legacy(ctx.root)
    local created, err = root.init(ctx.root)
    if created == nil then return nil, "cannot initialise " .. ctx.root .. ": " .. err end
    local what = created and "initialised" or (legacy and "recognised a root made by the Go ctcli at" or "already a root:")
    if ctx.json then
      json.print({ root = ctx.root, created = created, legacy = legacy })
    else
      ui.print("%s %s", what, ctx.root)
    end
    return true
  end,
}
