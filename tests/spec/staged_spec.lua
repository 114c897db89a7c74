-- Staged upgrades: `stage PKG` builds the release while the apps run and
-- other commands work; `upgrade --staged` cuts over; a kill at any step of
-- either leaves a root every command reads and a new stage or upgrade works.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

local S = require("support.staging")
local release_json, version_of, staged_ids = S.release_json, S.version_of, S.staged_ids
local assert_consistent, image_ok = S.assert_consistent, S.image_ok

H.need_root()

local v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
-- db is the same in every package (its version stays 1.0.0): an app a
-- staged cutover keeps running, with its own writable layer
local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none",
  "--app", "db:health=none,version=1.0.0" })
local v3 = H.package({ "--version", "1.2.0", "--app", "web:mark=three,version=1.2.0,health=none",
  "--app", "db:health=none,version=1.0.0" })

local function installed(pkg)
  return S.installed(pkg or v1)
end

describe("stage and upgrade --staged", function()
  teardown(H.cleanup)

  it("stages while the apps run and status, logs and stop work meanwhile; upgrade --staged cuts over", function()
    local root = installed()
    local before = H.json(root, { "status" })
    local resume = H.tmpdir() .. "/resume"
    local p = assert(ct.proc.spawn({ H.bin, "--root", root, "stage", v2 }, {
      stdout = "null", stderr = H.appender(resume .. ".log"),
      env_add = { CTCLI_SUBID_DIR = H.subid_dir(), CTCLI_FAULT = "stage:unpack:pause", CTCLI_FAULT_RESUME = resume },
    }))
    assert.truthy(H.wait_for(function() return ct.fs.exists(resume .. ".waiting") end, 60), "stage never paused")
    -- Mid-stage: the root's lock is free, the readers and the changers work.
    local st = H.json(root, { "status" })
    assert.equals(#before.apps, #st.apps)
    for _, a in ipairs(st.apps) do assert.equals("running", a.state, a.name) end
    H.ok(root, { "logs", "web" })
    H.ok(root, { "stop", "db" })
    H.ok(root, { "start", "db" })
    -- A second stage is refused while this one runs, naming it.
    local r = H.ctcli(root, { "stage", v2 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("another 'ctcli stage' is running", 1, true), r.stderr)
    assert(ct.fs.write_atomic(resume, ""))
    assert.equals(0, p:wait(), H.read(resume .. ".log"))
    p:close()

    local ids = staged_ids(root)
    assert.equals(1, #ids)
    local lr = H.json(root, { "list-releases" })
    assert.equals(ids[1], lr.staged.id)
    assert.is_true(lr.staged.current_matches)
    for _, rel in ipairs(lr.releases) do assert.are_not.equal(ids[1], rel.id) end
    assert.equals("1.0.0", version_of(root))
    -- plan --staged is the plan of the cutover
    local plan = H.json(root, { "plan", "--staged" })
    assert.equals(ids[1], plan.staged.id)
    assert.is_true(plan.staged.current)
    -- prune counts only installed releases and keeps the staged one's images
    H.ok(root, { "prune", "--keep", "1" })
    local staged_rel = json.decode(ct.fs.read(root .. "/releases/staged/" .. ids[1] .. "/release.json"))
    for _, app in ipairs(staged_rel.apps) do
      assert.truthy(image_ok(root, app.name, app.image.digest), app.name)
    end
    -- rollback never targets it (there is no previous release, and its id is no kept release)
    r = H.ctcli(root, { "-y", "rollback", ids[1] })
    assert.equals(1, r.code)
    assert.equals(1, #staged_ids(root))

    local out = H.json(root, { "-y", "upgrade", "--staged" })
    assert.equals(ids[1], out.release.id)
    assert.equals("1.1.0", version_of(root))
    assert.same({}, staged_ids(root))
    -- the cutover's backup leaves the images (in the store) out
    local found = false
    for _, f in ipairs(ct.fs.dir(root .. "/releases/backups")) do
      if f:match("%-upgrade%-.*%.json$") then
        found = true
        local rec = json.decode(ct.fs.read(root .. "/releases/backups/" .. f))
        assert.is_true(rec.images_in_store)
        assert.same({}, rec.images)
      end
    end
    assert.is_true(found)
    assert_consistent(root)
    -- each running app's rootfs is the writable layer the release names (an
    -- app the cutover kept running keeps its own): nothing else is mounted
    local named = {}
    for _, app in ipairs(release_json(root, H.current(root)).apps) do
      named[#named + 1] = ct.fs.realpath(root) .. "/uppers/" .. app.name .. "/" .. app.upper .. "/merged"
    end
    local mounted = H.mounts(root)
    table.sort(named)
    table.sort(mounted)
    assert.same(named, mounted)
    -- and the staged release behaves as an upgraded one: rollback returns to 1.0.0
    H.ok(root, { "-y", "rollback" })
    assert.equals("1.0.0", version_of(root))
  end)

  it("keeps a stage's images through a prune meanwhile, and refuses to register when the current release changed", function()
    local root = installed()
    local resume = H.tmpdir() .. "/resume"
    local p = assert(ct.proc.spawn({ H.bin, "--root", root, "stage", v2 }, {
      stdout = "null", stderr = H.appender(resume .. ".log"),
      env_add = { CTCLI_SUBID_DIR = H.subid_dir(), CTCLI_FAULT = "stage:place:pause", CTCLI_FAULT_RESUME = resume },
    }))
    assert.truthy(H.wait_for(function() return ct.fs.exists(resume .. ".waiting") end, 60), "stage never paused")
    -- The images are unpacked, the release not registered: a prune keeps them.
    local keys = {}
    for _, k in ipairs(ct.fs.dir(root .. "/images")) do keys[#keys + 1] = k end
    assert.truthy(#keys > 2, "stage unpacked nothing")
    H.ok(root, { "prune", "--keep", "1" })
    for _, k in ipairs(keys) do assert.truthy(image_ok(root, k:match("^(.-)@"), k:match("@(.+)$")), k) end
    -- An upgrade meanwhile: the stage no longer matches the current release.
    H.ok(root, { "-y", "upgrade", v3 })
    assert(ct.fs.write_atomic(resume, ""))
    assert.equals(1, p:wait())
    p:close()
    assert.truthy(H.read(resume .. ".log"):find("the current release changed while staging", 1, true),
      H.read(resume .. ".log"))
    assert.same({}, staged_ids(root))
    for _, d in ipairs(ct.fs.dir(root .. "/releases/staged")) do assert.falsy(d:match("^%.work"), d) end
    assert.equals("1.2.0", version_of(root))
    assert_consistent(root)
  end)

  it("takes the staged release for 'upgrade PKG' of the staged package, and unpacks nothing", function()
    local root = installed()
    local staged = H.json(root, { "stage", v2 })
    local r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(0, r.code, r.stderr)
    assert.falsy(r.stderr:find("unpacking", 1, true), r.stderr)
    assert.truthy(r.stderr:find("using the staged release " .. staged.staged, 1, true), r.stderr)
    assert.equals(staged.staged, H.current(root))
    assert_consistent(root)
  end)

  it("refuses a stale staged release with 're-stage', and prune --staged drops it", function()
    local root = installed()
    H.ok(root, { "stage", v2 })
    H.ok(root, { "-y", "upgrade", v3 })
    local r = H.ctcli(root, { "-y", "upgrade", "--staged" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("re-stage", 1, true), r.stderr)
    assert.equals("1.2.0", version_of(root))
    assert.truthy(H.ok(root, { "plan", "--staged" }):find("re-stage", 1, true))
    assert.is_false(H.json(root, { "list-releases" }).staged.current_matches)
    -- upgrade PKG of the staged package says so too
    r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("re-stage", 1, true), r.stderr)
    H.ok(root, { "prune", "--staged" })
    assert.same({}, staged_ids(root))
    r = H.ctcli(root, { "-y", "upgrade", "--staged" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("nothing is staged", 1, true), r.stderr)
    assert_consistent(root)
  end)

  it("keeps a staged release across a simulated reboot, then cuts over", function()
    local root = installed()
    H.ok(root, { "stage", v2 })
    -- a reboot: the monitors die, then the containers; runc's state stays on disk
    H.kill_monitors(root)
    for _, app in ipairs({ "web", "db" }) do
      local id = H.container_id(root, app)
      ct.proc.run({ "runc", "--root", root .. "/runc-root", "kill", id, "KILL" }, { timeout = 30 })
      assert.truthy(H.wait_for(function()
        local s = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", id }, { timeout = 30 })
        local doc = s and s.code == 0 and json.decode(s.stdout)
        return not doc or doc.status == "stopped"
      end, 10), app)
    end
    H.ok(root, { "start", "--boot" })
    assert.equals(1, #staged_ids(root))
    H.ok(root, { "-y", "upgrade", "--staged" })
    assert.equals("1.1.0", version_of(root))
    assert_consistent(root)
  end)
end)
