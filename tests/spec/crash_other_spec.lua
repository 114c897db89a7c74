-- The crash matrix for delete and backup: a kill and an injected failure at
-- every journaled step (see tests/support/crash.lua).
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })

crash.matrix({ describe = describe, it = it, teardown = teardown }, "delete and backup, killed or failing at every journaled step", {
  { name = "delete", command = "delete",
    prepare = function(root) H.ok(root, { "install", v1 }) end,
    argv = function() return { "-y", "delete" } end },
  { name = "backup", command = "backup",
    prepare = function(root) H.ok(root, { "install", v1 }) end,
    argv = function() return { "backup" } end },
})
