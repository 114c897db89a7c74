-- The crash matrix for rollback in all its forms (the previous release, a
-- RELEASE-ID, an ARCHIVE): a kill and an injected failure at every journaled
-- step (see tests/support/crash.lua).
local ct = require("ct")
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })

local function two_releases(root)
  H.ok(root, { "install", v1 })
  H.ok(root, { "-y", "upgrade", v2 })
end

crash.matrix({ describe = describe, it = it, teardown = teardown }, "rollback, killed or failing at every journaled step", {
  { name = "rollback", command = "rollback",
    prepare = two_releases,
    argv = function() return { "-y", "rollback" } end },
  { name = "rollback RELEASE-ID", command = "rollback",
    prepare = function(root)
      two_releases(root)
      for _, r in ipairs(H.json(root, { "list-releases" }).releases) do
        if not r.current and r.version == "1.0.0" then return r.id end
      end
      error("no kept 1.0.0 release")
    end,
    argv = function(_, id) return { "-y", "rollback", id } end },
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
