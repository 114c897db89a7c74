-- The crash matrix for an upgrade whose post_upgrade fails and rolls back:
-- a kill and an injected failure at every step from the swap on (see
-- tests/support/crash.lua).
local ct = require("ct")
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })
local after_failure = { "migrate", "start", "post_upgrade", "rollback", "finish" }

crash.matrix({ describe = describe, it = it, teardown = teardown },
  "a failing upgrade, killed or failing at every step from the swap on", {
  { name = "upgrade that fails and rolls back", command = "upgrade", expect_code = 1,
    only = { kill = after_failure, fail = after_failure },
    prepare = function(root)
      H.ok(root, { "install", v1 })
      assert(ct.fs.write_atomic(root .. "/hooks/web.lua",
        "return { post_upgrade = function(ctx) ctx.fail('smoke test failed') end }"))
    end,
    argv = function() return { "-y", "upgrade", v2 } end },
})
