-- The crash matrix for rollback ARCHIVE (a backup restored over changed
-- data): a kill and an injected failure at every journaled step (see
-- tests/support/crash.lua).
local ct = require("ct")
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })

crash.matrix({ describe = describe, it = it, teardown = teardown },
  "rollback ARCHIVE, killed or failing at every journaled step", {
  { name = "rollback ARCHIVE", command = "rollback",
    prepare = function(root)
      H.ok(root, { "install", v1 })
      assert(ct.fs.write_atomic(root .. "/data/web/var/lib/web/records", "backed up\n"))
      local b = H.json(root, { "backup" })
      assert(ct.fs.write_atomic(root .. "/data/web/var/lib/web/records", "changed since\n"))
      return b.path
    end,
    argv = function(_, archive) return { "-y", "rollback", archive } end,
    intended = function(root) return ct.fs.read(root .. "/data/web/var/lib/web/records") == "backed up\n" end },
})
