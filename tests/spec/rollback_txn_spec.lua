-- rollback as a transaction: it shows and asks, keeps what an archive
-- restore replaces in a safety backup, and a failure part way puts config/,
-- data/ and the running apps back exactly. And backup retention.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

-- The fixture apps append to starts.log on each start: their own writing.
local function dirs_hash(root)
  return H.tree_hash(root .. "/config") .. "/" .. H.tree_hash(root .. "/data", {
    ["web/var/lib/web/starts.log"] = true, ["db/var/lib/db/starts.log"] = true,
  })
end

local function backups(root)
  return H.json(root, { "list-releases" }).backups
end

local function by_reason(root, reason)
  local out = {}
  for _, b in ipairs(backups(root)) do if b.reason == reason then out[#out + 1] = b end end
  return out
end

describe("rollback", function()
  local v1, v2, bad
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one", "--app", "db" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0", "--app", "db" })
    bad = H.package({ "--version", "0.9.0", "--app", "web:mark=bad,version=0.9.0,health=fail", "--app", "db" })
  end)
  teardown(H.cleanup)

  it("with no terminal and no -y shows what it would replace, changes nothing and exits 3", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local records = root .. "/data/web/var/lib/web/records"
    assert(ct.fs.write_atomic(records, "backed up\n"))
    local b = H.json(root, { "backup" })
    ct.time.sleep(1.1)
    assert(ct.fs.write_atomic(records, "changed since\n"))
    H.ok(root, { "-y", "upgrade", v2 })
    local before, cur = H.root_hash(root), H.current(root)
    for _, argv in ipairs({ { "rollback", b.path }, { "rollback" } }) do
      local r = H.ctcli(root, argv)
      assert.equals(3, r.code, r.stdout .. r.stderr)
      assert.truthy(r.stderr:find("cancelled", 1, true), r.stderr)
      assert.truthy(r.stderr:find("-y", 1, true), r.stderr)
      assert.truthy(r.stdout:find("web", 1, true), r.stdout)
      assert.equals(before, (H.root_hash(root)))
      assert.equals(cur, H.current(root))
    end
    -- the archive form says which data changed after the backup was taken
    local r = H.ctcli(root, { "rollback", b.path })
    assert.truthy(r.stdout:find("after the backup", 1, true), r.stdout)
    assert.same({ "db", "web" }, H.running(root))
  end)

  it("keeps what an archive restore replaces in a safety backup, which brings it back", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local records = root .. "/data/web/var/lib/web/records"
    local late = root .. "/data/web/var/lib/web/written-later"
    assert(ct.fs.write_atomic(records, "backed up\n"))
    local b = H.json(root, { "backup" })
    ct.time.sleep(1.1)
    assert(ct.fs.write_atomic(late, "only after the backup\n"))
    local out = H.json(root, { "-y", "rollback", b.path })
    assert.equals(nil, ct.fs.read(late))
    local safety = by_reason(root, "safety")
    assert.equals(1, #safety)
    assert.equals(out.safety_backup, safety[1].path)
    assert.is_true(safety[1].data)
    H.ok(root, { "-y", "rollback", safety[1].path })
    assert.equals("only after the backup\n", ct.fs.read(late))
    assert.equals("backed up\n", ct.fs.read(records))
    assert.same({ "db", "web" }, H.running(root))
  end)

  it("that fails at its start puts config/, data/ and the running apps back exactly", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", bad })
    local b = H.json(root, { "backup" })
    H.ok(root, { "-y", "upgrade", v1 })
    H.ok(root, { "start" })
    assert(ct.fs.write_atomic(root .. "/data/web/var/lib/web/records", "live, not in the backup\n"))
    assert(ct.fs.write_atomic(root .. "/config/db/extra.conf", "live config\n"))
    local before, cur = dirs_hash(root), H.current(root)
    local kept = {}
    for _, r in ipairs(H.json(root, { "list-releases" }).releases) do kept[#kept + 1] = r.id end
    local r = H.ctcli(root, { "-y", "rollback", b.path })
    assert.equals(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("nothing changed", 1, true), r.stderr)
    assert.equals(before, dirs_hash(root))
    assert.equals(cur, H.current(root))
    assert.same({ "db", "web" }, H.running(root))
    assert.same({}, ct.fs.dir(root .. "/tmp"))
    local now = {}
    for _, rel in ipairs(H.json(root, { "list-releases" }).releases) do now[#now + 1] = rel.id end
    assert.same(kept, now)
    assert.equals("running", H.app_state(root, "web").state)
  end)
end)

describe("backup retention", function()
  local v1, v2
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:health=none" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none" })
  end)
  teardown(H.cleanup)

  local function paths_of(list)
    local out = {}
    for _, b in ipairs(list) do out[#out + 1] = b.path end
    table.sort(out)
    return out
  end

  it("two backups of one release within a second are two backups", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", v1 })
    -- The install's zero backup and these come within a second or two:
    -- without a distinct name the later replaced the earlier.
    local a = H.json(root, { "backup", "--ignore-data" })
    local b = H.json(root, { "backup", "--ignore-data" })
    assert.are_not.equal(a.path, b.path)
    local list = backups(root)
    assert.equals(3, #list)
    for _, x in ipairs(list) do
      assert.truthy(ct.fs.exists(x.path), x.path)
      assert.truthy(ct.fs.exists((x.path:gsub("%.tar%.%a+$", ".json"))), x.path)
    end
  end)

  it("prune --backups keeps the newest 3 of a reason and the newest of each kept release", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", v1 })
    ct.time.sleep(1.1)
    H.ok(root, { "-y", "upgrade", v2 })
    -- the upgrade's backup is the newest of the kept release 1.0.0
    local of_v1 = paths_of(by_reason(root, "upgrade"))
    assert.equals(1, #of_v1)
    local made = {}
    for i = 1, 5 do
      ct.time.sleep(1.1)
      made[i] = H.json(root, { "backup" }).path
    end
    local out = H.json(root, { "prune", "--backups" })
    assert.same(paths_of({ { path = made[3] }, { path = made[4] }, { path = made[5] } }),
      paths_of(by_reason(root, "manual")))
    assert.equals(2, #out.backups)
    for _, i in ipairs({ 1, 2 }) do
      assert.is_nil(ct.fs.lstat(made[i]))
      assert.is_nil(ct.fs.lstat((made[i]:gsub("%.tar%.zst$", ".json"))))
    end
    -- ctcli.json keep=1: the newest manual one stays
    assert(ct.fs.write_atomic(root .. "/ctcli.json", json.encode({ backups = { keep = { manual = 1 } } })))
    H.ok(root, { "prune", "--backups" })
    assert.same({ made[5] }, paths_of(by_reason(root, "manual")))
    -- keeping none of any reason still keeps the newest backup of each kept
    -- release: the upgrade's (of 1.0.0) and the newest manual one (of 1.1.0)
    H.ok(root, { "prune", "--backups", "--keep", "0" })
    assert.same(paths_of({ { path = made[5] }, { path = of_v1[1] } }), paths_of(backups(root)))
    -- a broken count is refused, naming it
    assert(ct.fs.write_atomic(root .. "/ctcli.json", '{"backups": {"keep": {"manual": "all"}}}'))
    local r = H.ctcli(root, { "prune", "--backups" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("backups.keep.manual", 1, true), r.stderr)
  end)

  it("an upgrade prunes; the Go tool's backups are listed, kept, and removed only when named", function()
    local root = H.root()
    -- the Go tool's layout: releases/<date>/backup-info.json + <uuid>.tar.gz
    local go = root .. "/releases/2023-05-01T10-00-00"
    assert(ct.fs.mkdir(go, 493, true))
    assert(ct.fs.write_atomic(go .. "/backup-info.json",
      json.encode({ date = "2023-05-01T10:00:00Z", packageVersion = "0.1.0", withData = true })))
    assert(ct.fs.write_atomic(go .. "/0b5c0d6e.tar.gz", "not really gzip\n"))
    local go_hash = H.tree_hash(go)
    assert(ct.fs.write_atomic(root .. "/ctcli.json", json.encode({ backups = { keep = { upgrade = 1 } } })))
    H.ok(root, { "install", "--no-start", v1 })
    ct.time.sleep(1.1)
    H.ok(root, { "-y", "upgrade", v2 })
    ct.time.sleep(1.1)
    H.ok(root, { "-y", "upgrade", "--allow-downgrade", v1 }) -- back to 1.0.0: a downgrade, asked for
    ct.time.sleep(1.1)
    local last = H.json(root, { "-y", "upgrade", v2 })
    assert.equals(1, #last.pruned_backups)
    -- the newest upgrade backup, and the newest of each kept release
    local kept = by_reason(root, "upgrade")
    assert.truthy(#kept >= 1)
    local go_listed = false
    for _, b in ipairs(backups(root)) do
      if b.backup_format == "go-ctcli" then go_listed = true end
    end
    assert.is_true(go_listed)
    H.ok(root, { "prune", "--backups", "--keep", "0" })
    assert.equals(go_hash, (H.tree_hash(go)))
    H.ok(root, { "prune", "--backups", go .. "/0b5c0d6e.tar.gz" })
    assert.is_nil(ct.fs.lstat(go))
    -- a backup a kept release needs is refused even when named
    local protected = by_reason(root, "upgrade")[1]
    local r = H.ctcli(root, { "prune", "--backups", protected.path })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("kept release", 1, true), r.stderr)
  end)
end)
