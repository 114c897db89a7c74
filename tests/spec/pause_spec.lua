-- What a backup costs the running apps, seen from outside: a poller reads
-- each app's freezer state (runc's cgroup) and the journal every few
-- milliseconds while `backup` and `upgrade` run. The release and images go
-- first with nothing paused; then each app is frozen alone, while its own
-- data is read, with the journal naming it; an upgrade's backup never
-- freezes (or stops) an unchanged app, and its partial backup restores the
-- changed app's data alone.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local APPS = { "a", "b", "c" }
local DATA_MB = 16     -- per app, incompressible: long enough a pause to be seen
local PAYLOAD_MB = 40  -- in a's image: the part archived with nothing paused

-- freezer(root, app) -> "FROZEN", "THAWED", "FREEZING" or nil (no container)
local function freezer(root, app)
  local st = json.decode(ct.fs.read(root .. "/runc-root/" .. H.container_id(root, app) .. "/state.json") or "null")
  local path = type(st) == "table" and type(st.cgroup_paths) == "table" and st.cgroup_paths.freezer
  local s = path and ct.fs.read(path .. "/freezer.state")
  return s and s:match("%u+")
end

-- The bytes of the archive being written (its temp file), 0 before it exists.
local function archive_bytes(root)
  local most = 0
  for _, f in ipairs(ct.fs.dir(root .. "/releases/backups") or {}) do
    if f:find(".tmp-", 1, true) then most = math.max(most, (ct.fs.stat(root .. "/releases/backups/" .. f) or {}).size or 0) end
  end
  return most
end

-- watch(root, argv) -> samples: runs ctcli with argv and, until it exits,
-- records {frozen = {app...}, paused = the journal's "paused", bytes = the
-- archive's size so far} every ~2 ms.
local function watch(root, argv)
  local full = { H.bin, "--root", root, "-y" }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  local p = assert(ct.proc.spawn(full, { stdout = "null", stderr = "null",
    env_add = { CTCLI_SUBID_DIR = H.subid_dir() } }))
  local samples = {}
  local code
  repeat
    local s = { frozen = {}, bytes = archive_bytes(root), paused = {} }
    -- The journal is read before and after the freezer states: a pause
    -- or a resume can land between two reads, never around both.
    local function journal_paused()
      local j = json.decode(ct.fs.read(root .. "/state/journal.json") or "null")
      for _, app in ipairs(type(j) == "table" and type(j.data) == "table" and j.data.paused or {}) do
        s.paused[app] = true
      end
    end
    journal_paused()
    for _, app in ipairs(APPS) do
      local f = freezer(root, app)
      if f and f ~= "THAWED" then s.frozen[#s.frozen + 1] = app end
    end
    journal_paused()
    samples[#samples + 1] = s
    code = p:wait(0.002)
  until code
  p:close()
  assert.equals(0, code, "ctcli " .. table.concat(argv, " ") .. " failed")
  return samples
end

-- frozen_order(samples) -> the apps in the order they were first seen frozen
local function frozen_order(samples)
  local order, seen = {}, {}
  for _, s in ipairs(samples) do
    for _, app in ipairs(s.frozen) do
      if not seen[app] then seen[app] = true order[#order + 1] = app end
    end
  end
  return order
end

local function fill_data(root, app, mb, tag)
  local src = assert(io.open("/dev/urandom", "rb"))
  local f = assert(io.open(root .. "/data/" .. app .. "/blob", "wb"))
  for _ = 1, mb do f:write(src:read(1 << 20)) end
  f:close()
  src:close()
  assert(ct.fs.write_atomic(root .. "/data/" .. app .. "/tag", tag))
end

describe("pausing for backups", function()
  local v1, v2
  setup(function()
    local function pkg(version, b_version)
      return H.package({ "--format", "manifest", "--version", version,
        "--app", "a:mark=a,payload=" .. PAYLOAD_MB .. ",version=1.0.0",
        "--app", "b:mark=b-" .. b_version .. ",version=" .. b_version,
        "--app", "c:mark=c,version=1.0.0" })
    end
    v1 = pkg("1.0.0", "1.0.0")
    v2 = pkg("1.1.0", "1.1.0")
  end)
  teardown(H.cleanup)

  local function installed()
    local root = H.root()
    H.ok(root, { "-y", "install", v1 })
    assert.same(APPS, H.running(root))
    for _, app in ipairs(APPS) do fill_data(root, app, DATA_MB, app .. "-before") end
    return root
  end

  it("archives the release and images with nothing paused, then freezes each app alone", function()
    local root = installed()
    local samples = watch(root, { "backup" })
    assert.same(APPS, frozen_order(samples))
    local first_frozen
    for i, s in ipairs(samples) do
      assert.is_true(#s.frozen <= 1, "two apps frozen at once: " .. table.concat(s.frozen, " "))
      if #s.frozen == 1 then
        first_frozen = first_frozen or i
        -- the journal names the frozen app (it is written before the pause)
        assert.is_true(s.paused[s.frozen[1]] == true, s.frozen[1] .. " frozen and not in the journal")
      end
    end
    -- a's image payload (incompressible) was written before any app froze
    assert.is_true(samples[first_frozen].bytes >= (PAYLOAD_MB // 2) << 20,
      "an app froze with only " .. samples[first_frozen].bytes .. " bytes of the archive written")
    for _, app in ipairs(APPS) do assert.equals("THAWED", freezer(root, app)) end
    assert.same(APPS, H.running(root))
  end)

  it("never freezes or stops an unchanged app during an upgrade, and restores the changed app's data alone", function()
    local root = installed()
    local pid_a, pid_c = H.app_state(root, "a").pid, H.app_state(root, "c").pid
    local samples = watch(root, { "upgrade", v2 })
    assert.same({ "b" }, frozen_order(samples))
    for _, s in ipairs(samples) do
      if #s.frozen > 0 then
        assert.same({ "b" }, s.frozen)
        assert.is_true(s.paused.b == true, "b frozen and not in the journal")
      end
    end
    assert.equals(pid_a, H.app_state(root, "a").pid)
    assert.equals(pid_c, H.app_state(root, "c").pid)
    assert.same(APPS, H.running(root))

    -- The upgrade's backup holds the release, the images and b's trees only.
    local bk
    for _, f in ipairs(ct.fs.dir(root .. "/releases/backups")) do
      if f:match("%.json$") then bk = json.decode(ct.fs.read(root .. "/releases/backups/" .. f)) end
    end
    assert.same({ "b" }, bk.only)
    local archive = root .. "/releases/backups/" .. bk.archive
    local names = {}
    for _, e in ipairs(assert(ct.archive.list(archive))) do names[e.name:gsub("/$", "")] = true end
    assert.truthy(names["data/b/blob"] and names["config"] and names["data"])
    assert.falsy(names["data/a"] or names["data/c"] or names["config/a"])
    assert.truthy(names["current-release/release.json"])
    for _, app in ipairs(APPS) do
      local found = false
      for n in pairs(names) do if n:match("^images/" .. app .. "@sha256:%x+/oci/index.json$") then found = true end end
      assert.is_true(found, "no image of " .. app)
    end

    -- Rolling back to it puts back b's data and leaves a's and c's as they are now.
    for _, app in ipairs(APPS) do assert(ct.fs.write_atomic(root .. "/data/" .. app .. "/tag", app .. "-after")) end
    H.ok(root, { "-y", "rollback", archive })
    assert.equals("b-before", ct.fs.read(root .. "/data/b/tag"))
    assert.equals("a-after", ct.fs.read(root .. "/data/a/tag"))
    assert.equals("c-after", ct.fs.read(root .. "/data/c/tag"))
    assert.equals(bk.release, H.current(root))
    assert.same(APPS, H.running(root))
  end)
end)
