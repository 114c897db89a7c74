-- The crash matrix for rollback to a kept release (the previous one, a
-- RELEASE-ID): a kill and an injected failure at every journaled step it
-- reaches (see tests/support/crash.lua; crash_rollback_archive_spec holds
-- rollback ARCHIVE).
local H = require("support.helpers")
local crash = require("support.crash")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })

-- extract, place, safety-backup and restore-files are an ARCHIVE's alone.
local kept_steps = { "pre_rollback", "stop", "swap", "start", "post_rollback", "finish" }
local only = { kill = kept_steps, fail = kept_steps }

local function two_releases(root)
  H.ok(root, { "install", v1 })
  H.ok(root, { "-y", "upgrade", v2 })
end

crash.matrix({ describe = describe, it = it, teardown = teardown }, "rollback, killed or failing at every journaled step", {
  { name = "rollback", command = "rollback", only = only,
    prepare = two_releases,
    argv = function() return { "-y", "rollback" } end },
  { name = "rollback RELEASE-ID", command = "rollback", only = only,
    prepare = function(root)
      two_releases(root)
      for _, r in ipairs(H.json(root, { "list-releases" }).releases) do
        if not r.current and r.version == "1.0.0" then return r.id end
      end
      error("no kept 1.0.0 release")
    end,
    argv = function(_, id) return { "-y", "rollback", id } end },
})
