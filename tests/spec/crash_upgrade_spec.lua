-- The crash matrix for upgrade: a kill and an injected failure at every
-- journaled step (see tests/support/crash.lua; crash_upgrade_failed_spec
-- holds the upgrade that fails and rolls back).
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })

crash.matrix({ describe = describe, it = it, teardown = teardown }, "upgrade, killed or failing at every journaled step", {
  { name = "upgrade", command = "upgrade",
    prepare = function(root) H.ok(root, { "install", v1 }) end,
    argv = function() return { "-y", "upgrade", v2 } end },
})
