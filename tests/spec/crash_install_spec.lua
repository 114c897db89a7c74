-- The crash matrix for install: a kill and an injected failure at every
-- journaled step (see tests/support/crash.lua).
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })

crash.matrix({ describe = describe, it = it, teardown = teardown }, "install, killed or failing at every journaled step", {
  { name = "install", command = "install",
    prepare = function() return nil end,
    argv = function() return { "install", v1 } end },
})
