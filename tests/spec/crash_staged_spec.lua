-- The crash loops of staged upgrades (staged_spec holds the rest): a kill at
-- every step of `stage` and of `upgrade --staged` leaves a root every
-- command reads, and a new stage and cutover work.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

local cli = require("ctcli.cli")
local S = require("support.staging")
local version_of, staged_ids = S.version_of, S.staged_ids
local assert_consistent = S.assert_consistent

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none",
  "--app", "db:health=none" })
local v3 = H.package({ "--version", "1.2.0", "--app", "web:mark=three,version=1.2.0,health=none",
  "--app", "db:health=none" })

local function installed(pkg)
  return S.installed(pkg or v1)
end

describe("stage and upgrade --staged, killed", function()
  teardown(H.cleanup)

  -- A kill at every step of stage: nothing half-staged shows, every
  -- command works, and the next stage and cutover do.
  for _, step in ipairs(cli.command("stage").steps) do
    it("is killed at stage:" .. step .. " and the root stays consistent", function()
      local root = installed()
      local r = H.ctcli(root, { "stage", v2 }, { env = { CTCLI_FAULT = "stage:" .. step } })
      assert.equals(137, r.code, r.stderr)
      assert_consistent(root)
      local n = #staged_ids(root)
      -- registered only from the step after 'register' on
      assert.equals((step == "finish") and 1 or 0, n)
      local listed = H.json(root, { "list-releases" }).staged
      assert.equals(n, (listed == nil or listed == json.null) and 0 or 1)
      H.ok(root, { "prune" })
      H.ok(root, { "stage", v2 })
      for _, d in ipairs(ct.fs.dir(root .. "/releases/staged")) do assert.falsy(d:match("^%.work"), d) end
      H.ok(root, { "-y", "upgrade", "--staged" })
      assert.equals("1.1.0", version_of(root))
      assert_consistent(root)
    end)
  end

  -- A kill at every step of the cutover: recover leaves the old release
  -- (the staged one staged again) or the new one, and the upgrade goes on.
  for _, step in ipairs(cli.command("upgrade").steps) do
    it("is killed at upgrade:" .. step .. " of a staged cutover and recovers", function()
      local root = installed()
      H.ok(root, { "stage", v2 })
      local r = H.ctcli(root, { "-y", "upgrade", "--staged" }, { env = { CTCLI_FAULT = "upgrade:" .. step } })
      local rec = H.ctcli(root, { "recover" })
      assert.equals(0, rec.code, rec.stderr)
      assert_consistent(root)
      local v = version_of(root)
      if r.code == 137 and v == "1.0.0" then
        -- undone before the swap: still staged against the current release
        assert.equals(1, #staged_ids(root), step)
        H.ok(root, { "-y", "upgrade", "--staged" })
      elseif v == "1.0.0" then
        error("upgrade --staged exited " .. r.code .. " and left 1.0.0: " .. r.stderr)
      end
      assert.equals("1.1.0", version_of(root))
      assert.same({}, staged_ids(root))
      H.ok(root, { "stage", v3 })
      H.ok(root, { "-y", "upgrade", "--staged" })
      assert.equals("1.2.0", version_of(root))
      assert_consistent(root)
    end)
  end
end)
