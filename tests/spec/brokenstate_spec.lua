-- Broken state fails closed: every state file ctcli reads, planted with
-- garbage and with wrong types, gives one line naming the file, never an
-- internal error, and no command changes the root past it (running apps
-- stay running). One installed root; the planted file is put back after
-- each case.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local LOCKING = { "prune", "upgrade", "rollback", "delete", "start", "recover" }

describe("broken state", function()
  local root, pkg3, cur, old, key, backup_rec, running

  local function run(cmd)
    if cmd == "upgrade" then return H.ctcli(root, { "-y", "upgrade", pkg3 }) end
    if cmd == "prune" then return H.ctcli(root, { "prune", "--keep", "0" }) end
    if cmd == "delete" or cmd == "rollback" then return H.ctcli(root, { "-y", cmd }) end
    return H.ctcli(root, { cmd })
  end

  -- plant(rel, content) -> a function putting the file back as it was
  local function plant(rel, content)
    local path = root .. "/" .. rel
    local st = ct.fs.lstat(path)
    local saved = st and st.type == "file" and ct.fs.read(path)
    local target = st and st.type == "link" and ct.fs.readlink(path)
    local mode = st and (st.mode & 511) or 420
    if target then
      assert(ct.fs.unlink(path))
      assert(ct.fs.symlink(content, path))
    else
      assert(ct.fs.write_atomic(path, content, mode))
    end
    return function()
      ct.fs.unlink(path)
      if target then assert(ct.fs.symlink(target, path))
      elseif saved then assert(ct.fs.write_atomic(path, saved, mode)) end
    end
  end

  local function one_line(r, name, what)
    local lines = {}
    for l in r.stderr:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(1, #lines, what .. ": " .. r.stderr)
    assert.truthy(lines[1]:find(name, 1, true), what .. " names " .. name .. ": " .. r.stderr)
    assert.falsy(r.stderr:find("internal error", 1, true), what .. ": " .. r.stderr)
    return lines[1]
  end

  -- check(name, rel, content, readers): every locking command exits 1 with
  -- one line naming rel and changes nothing; readers (status,
  -- list-releases) that read the file do the same, the others succeed.
  local function check(rel, content, readers)
    local restore = plant(rel, content)
    local ok, err = pcall(function()
      local before = H.root_hash(root)
      local cmds = { "status", "list-releases" }
      for _, c in ipairs(LOCKING) do cmds[#cmds + 1] = c end
      for _, c in ipairs(cmds) do
        local what = string.format("%s with %s = %q", c, rel, content)
        local r = run(c)
        local reads = readers[c]
        if c == "status" and reads == "warn" then
          assert.equals(0, r.code, what .. ": " .. r.stderr)
          assert.truthy(one_line(r, rel, what):match("^warning: "), what)
        elseif reads == false then
          assert.equals(0, r.code, what .. ": " .. r.stderr)
        else
          assert.equals(1, r.code, what .. ": " .. r.stdout .. r.stderr)
          one_line(r, rel, what)
        end
        assert.equals(before, H.root_hash(root), what .. " changed the root")
        assert.same(running, H.running(root), what)
      end
    end)
    restore()
    if not ok then error(err, 0) end
  end

  setup(function()
    local apps = { "--app", "web:mark=web-one", "--app", "worker:mark=worker-one" }
    local pkg1 = H.package({ "--format", "manifest", "--version", "1.0.0", table.unpack(apps) })
    local pkg2 = H.package({ "--format", "manifest", "--version", "2.0.0",
      "--app", "web:mark=web-one,version=1.0.0", "--app", "worker:mark=worker-two" })
    pkg3 = H.package({ "--format", "manifest", "--version", "3.0.0",
      "--app", "web:mark=web-one,version=1.0.0", "--app", "worker:mark=worker-three" })
    root = H.root()
    H.ok(root, { "install", pkg1 })
    old = H.current(root)
    H.ok(root, { "-y", "upgrade", pkg2 })
    cur = H.current(root)
    H.ok(root, { "backup" })
    for _, f in ipairs(ct.fs.dir(root .. "/releases/backups") or {}) do
      if f:match("%.json$") then backup_rec = "releases/backups/" .. f end
    end
    local rel = json.decode(ct.fs.read(root .. "/releases/" .. cur .. "/release.json"))
    for _, a in ipairs(rel.apps) do
      if a.name == "worker" then key = a.name .. "@" .. a.image.digest end
    end
    running = H.running(root)
    assert.same({ "web", "worker" }, running)
    assert.truthy(backup_rec)
    assert.truthy(ct.fs.exists(root .. "/state/idmap.json"), "the root runs its apps in a user namespace")
    assert.truthy(ct.fs.exists(root .. "/state/apps/web.json"))
  end)
  teardown(H.cleanup)

  local ALL = { status = true, ["list-releases"] = true }

  it("refuses on the current release.json (garbage, wrong types) and prune keeps every rootfs", function()
    local rel = "releases/" .. cur .. "/release.json"
    check(rel, "{ this is not json", ALL)
    check(rel, '{"apps": 5}', ALL)
    local doc = json.decode(ct.fs.read(root .. "/" .. rel))
    doc.apps[1].name = 7
    check(rel, json.encode(doc), ALL)
    doc = json.decode(ct.fs.read(root .. "/" .. rel))
    doc.order = { "web", "nope" }
    check(rel, json.encode(doc), ALL)
  end)

  it("refuses on an older release's release.json", function()
    local rel = "releases/" .. old .. "/release.json"
    local readers = { status = false, ["list-releases"] = true }
    check(rel, "", readers)
    check(rel, '{"id": "' .. old .. '", "apps": [{"name": "web", "image": {"digest": 3}}], "order": ["web"]}', readers)
  end)

  it("refuses on a current-release pointer to nothing", function()
    -- list-releases shows the ids to point it at again
    local readers = { status = true, ["list-releases"] = false }
    check("current-release", "releases/20990101T000000Z-deadbeef", readers)
    check("current-release", "elsewhere", readers)
  end)

  it("reports a broken journal in status and refuses it elsewhere; recover --discard-journal drops it", function()
    local readers = { status = "warn", ["list-releases"] = false }
    check("state/journal.json", "garbage", readers)
    check("state/journal.json", '{"command": 5, "steps": []}', readers)
    local restore = plant("state/journal.json", '{"command": "upgrade", "steps": {"a": 1}}')
    local r = H.ctcli(root, { "recover" })
    assert.equals(1, r.code)
    assert.truthy(one_line(r, "state/journal.json", "recover"):find("ctcli recover --discard-journal", 1, true))
    local out = H.ok(root, { "recover", "--discard-journal" })
    assert.truthy(out:find("discarded the journal", 1, true), out)
    assert.is_false(ct.fs.exists(root .. "/state/journal.json"))
    assert.equals("", H.ctcli(root, { "status" }).stderr)
    assert.same(running, H.running(root))
    restore()
  end)

  it("refuses on a broken wanted.json", function()
    local readers = { status = true, ["list-releases"] = false }
    check("state/wanted.json", "[1, 2", readers)
    check("state/wanted.json", '{"apps": 5}', readers)
    check("state/wanted.json", '{"apps": {"web": {"wanted": "no"}}}', readers)
  end)

  it("refuses on a broken backup record", function()
    local readers = { status = false, ["list-releases"] = true }
    check(backup_rec, "nope", readers)
    check(backup_rec, '{"archive": 5, "created": "2024-01-01T00:00:00Z"}', readers)
  end)

  it("refuses on a broken image record (image.json, idmap)", function()
    local readers = { status = false, ["list-releases"] = false }
    check("images/" .. key .. "/image.json", "{", readers)
    check("images/" .. key .. "/image.json", '{"process": 5}', readers)
    check("images/" .. key .. "/idmap", "hello\n", readers)
    check("images/" .. key .. "/idmap", "1:2\n", readers)
  end)

  it("refuses on a broken id range record and app record", function()
    local readers = { status = true, ["list-releases"] = false }
    check("state/idmap.json", "x", readers)
    check("state/idmap.json", '{"uid": "200000", "gid": 200000, "size": 65536}', readers)
    check("state/apps/web.json", "x", readers)
    check("state/apps/web.json", '{"idmap": 5}', readers)
  end)

  it("refuses on a broken id base", function()
    check("state/id-base", "relative/path\n", ALL)
  end)

  it("works again once the files are back", function()
    assert.equals("", H.ctcli(root, { "status" }).stderr)
    H.ok(root, { "list-releases" })
    H.ok(root, { "start" })
    assert.same(running, H.running(root))
  end)
end)
