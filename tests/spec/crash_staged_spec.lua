-- The crash loops of staged upgrades (staged_spec holds the rest): a kill at
-- every step of `stage` and of `upgrade --staged` leaves a root every
-- command reads, and a new stage and cutover work.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

-- image_ok(root, app, digest): the store holds the image whole (its record;
-- a layered one's blobs and layout, from which its layers are remade).
local function image_ok(root, app, digest)
  return require("ctcli.store.images").has(require("ctcli.base.root").paths(root), app, digest)
end
local cli = require("ctcli.cli")

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none",
  "--app", "db:health=none" })
local v3 = H.package({ "--version", "1.2.0", "--app", "web:mark=three,version=1.2.0,health=none",
  "--app", "db:health=none" })

local function release_json(root, id)
  return json.decode(ct.fs.read(root .. "/releases/" .. id .. "/release.json") or "null")
end

local function version_of(root)
  local rel = release_json(root, H.current(root))
  return rel and rel.version
end

local function staged_ids(root)
  local out = {}
  for _, n in ipairs(ct.fs.dir(root .. "/releases/staged") or {}) do
    if not n:match("^%.") then out[#out + 1] = n end
  end
  return out
end

local function installed(pkg)
  local root = H.root()
  H.ok(root, { "-y", "install", pkg or v1 })
  return root
end

-- The root reads and is settled: no journal, nothing in tmp/ or in a
-- staging work dir, every kept release whole with its images, the apps of
-- the current release running.
local function assert_consistent(root)
  assert.falsy(ct.fs.exists(root .. "/state/journal.json"))
  assert.same({}, ct.fs.dir(root .. "/tmp"))
  H.ok(root, { "list-releases" })
  local st = H.json(root, { "status" })
  for _, a in ipairs(st.apps) do assert.equals("running", a.state, a.name) end
  for _, id in ipairs(ct.fs.dir(root .. "/releases") or {}) do
    if id ~= "backups" and id ~= "staged" then
      local rel = assert(release_json(root, id), "release " .. id .. " has no release.json")
      for _, app in ipairs(rel.apps) do
        assert.truthy(image_ok(root, app.name, app.image.digest), id)
      end
    end
  end
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
