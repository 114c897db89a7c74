-- Runs busted inside the ctcli engine (ctcli-lua), so specs use the real
-- `ct` module and the bundled modules exactly as the binary does.
local src = os.getenv("CTCLI_SOURCE_DIR") or "."
package.path = table.concat({
  src .. "/tests/?.lua",
  "/usr/share/lua/5.4/?.lua",
  "/usr/share/lua/5.4/?/init.lua",
  package.path ~= "" and package.path or nil, -- CTCLI_LUA_DIR's, as the engine set it
}, ";")
package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
require("busted.runner")({ standalone = false })
