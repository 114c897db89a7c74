-- Taking over from the Go ctcli: a root it made and runs (tests/support/
-- mkgoroot makes one as the Go tool does) is read as it is, adopted in place
-- with its apps running (same container ids, same pids), upgraded, and
-- rolled back to the Go tool's own backup; an adoption killed at any step
-- is finished by the next command.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local MKGOROOT = H.src .. "/tests/support/mkgoroot"
local STEPS = { "backup", "images", "release", "state", "swap" }

local function mkgoroot(args)
  local r = assert(ct.proc.run({ MKGOROOT, table.unpack(args) }, { timeout = 300 }))
  if r.code ~= 0 then error("mkgoroot " .. table.concat(args, " ") .. " failed:\n" .. r.stdout .. r.stderr, 2) end
  return r.stdout
end

-- goroot(pkg, opts) -> a root the Go tool made: init, install and (unless
-- opts.stopped) start; with an operator's edit in web's config and a file
-- web's container user 1000 wrote (host uid 100999 under the Go mapping).
local function goroot(pkg, opts)
  opts = opts or {}
  local root = H.tmpdir() .. "/goroot"
  H.roots = H.roots or {}
  H.roots[#H.roots + 1] = root
  mkgoroot({ "init", root })
  if opts.empty then return root end
  mkgoroot({ "install", root, pkg })
  local data = root .. "/data/web/var/lib/web"
  assert(ct.fs.mkdir(data, 493, true))
  assert(ct.fs.write_atomic(data .. "/owned.txt", "by container user 1000\n", 420))
  assert(ct.fs.lchown(data .. "/owned.txt", 100999, 100999))
  local conf = root .. "/config/web/etc/web/app.conf"
  assert(ct.fs.write_atomic(conf, (ct.fs.read(conf) or "") .. "# the operator's edit\n", 420))
  if not opts.stopped then mkgoroot({ "start", root }) end
  return root
end

local function runc_pid(root, app)
  local id = ct.hash.md5(root) .. "-" .. app
  local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", id })
  if not r or r.code ~= 0 then return nil end
  local st = json.decode(r.stdout)
  return st and st.status == "running" and st.pid or nil
end

local function go_backups(root)
  local out = {}
  for _, d in ipairs(ct.fs.dir(root .. "/releases") or {}) do
    if d:match("^%d%d%d%d%-%d%d%-%d%d_%d%d%-%d%d%-%d%d$") then
      for _, f in ipairs(ct.fs.dir(root .. "/releases/" .. d) or {}) do
        if f:match("%.tar%.gz$") then out[#out + 1] = root .. "/releases/" .. d .. "/" .. f end
      end
    end
  end
  table.sort(out)
  return out
end

local function is_adopted(root)
  local t = ct.fs.readlink(root .. "/current-release")
  return t ~= nil and t:match("^releases/%d+T%d+Z%-%x+$") ~= nil
end

describe("taking over a root the Go ctcli made", function()
  teardown(H.cleanup)

  local pkg, pkg2
  setup(function()
    pkg = H.package({ "--format", "legacy", "--app", "web", "--app", "worker" })
    pkg2 = H.package({ "--format", "legacy", "--version", "2.0.0", "--app", "web", "--app", "worker" })
  end)

  it("reads an unadopted Go root with status, logs, release-info and list-releases, changing nothing", function()
    local root = goroot(pkg)
    local before = H.tree_hash(root, { ["logs/web/stdout-stderr.log"] = true, ["logs/worker/stdout-stderr.log"] = true,
      ["runc-root"] = true })
    local st = H.json(root, { "status" })
    assert.equals(2, #st.apps)
    for _, a in ipairs(st.apps) do
      assert.equals("running", a.state)
      assert.equals(runc_pid(root, a.name), a.pid)
    end
    assert.matches("privileged %(the Go ctcli's mapping", H.ok(root, { "-v", "status" }))
    assert.matches("web", H.ok(root, { "release-info" }))
    H.ok(root, { "logs", "web" })
    assert.matches("release", H.ok(root, { "list-releases" }))
    assert.equals(before, H.tree_hash(root, { ["logs/web/stdout-stderr.log"] = true,
      ["logs/worker/stdout-stderr.log"] = true, ["runc-root"] = true }))
    assert.is_nil(ct.fs.lstat(root .. "/state"))
    assert.equals("dir", ct.fs.lstat(root .. "/current-release").type)
  end)

  it("adopts a running root in place: same containers, same pids, rootfs renamed, a Go-format backup first", function()
    local root = goroot(pkg)
    local pids = { web = runc_pid(root, "web"), worker = runc_pid(root, "worker") }
    assert.is_number(pids.web)
    local rootfs_ino = ct.fs.lstat(root .. "/current-release/apps/web/rootfs").ino
    local out = H.ok(root, { "-y", "adopt" })
    assert.matches("becomes release", out)
    assert.is_true(is_adopted(root))
    assert.same(pids, { web = runc_pid(root, "web"), worker = runc_pid(root, "worker") })
    -- The rootfs moved by rename: the same directory, now in the store.
    local found
    for _, key in ipairs(ct.fs.dir(root .. "/images")) do
      if key:match("^web@") then found = key end
    end
    assert.equals(rootfs_ino, ct.fs.lstat(root .. "/images/" .. found .. "/rootfs").ino)
    -- The way back for the Go tool: its own backup format.
    local backups = go_backups(root)
    assert.equals(1, #backups)
    local info = json.decode(ct.fs.read(backups[1]:match("^(.*)/") .. "/backup-info.json"))
    assert.is_string(info.uid)
    assert.is_string(info.backupDate)
    assert.is_table(info.releaseInfo.appVersions)
    assert.equals(backups[1]:match("([^/]+)%.tar%.gz$"), info.uid)
    local tops = {}
    for _, e in ipairs(assert(ct.archive.list(backups[1]))) do tops[e.name:match("^([^/]+)")] = true end
    assert.same({ ["current-release"] = true, config = true, data = true }, tops)
    -- Running apps keep the Go mapping, shown as privileged; exec works in them.
    local v = H.ok(root, { "-v", "status" })
    assert.matches("privileged %(the Go ctcli's mapping", v)
    assert.matches("by container user 1000", H.ok(root, { "exec", "web", "cat", "/var/lib/web/owned.txt" }))
    -- A restart moves web to the root's range: its data follows, readable by the same user.
    H.ok(root, { "-y", "restart", "web" })
    local range = json.decode(ct.fs.read(root .. "/state/idmap.json"))
    assert.equals(range.uid + 1000, ct.fs.lstat(root .. "/data/web/var/lib/web/owned.txt").uid)
    assert.equals("1000", H.ok(root, { "exec", "web", "stat", "-c", "%u", "/var/lib/web/owned.txt" }):match("%S+"))
    assert.equals(pids.worker, runc_pid(root, "worker"))
    assert.matches("the operator's edit", ct.fs.read(root .. "/config/web/etc/web/app.conf"))
  end)

  it("upgrades an adopted root and rolls back to the Go tool's backup, configs and mapped data intact", function()
    local root = goroot(pkg)
    mkgoroot({ "backup", root })
    local gob = go_backups(root)[1]
    -- The first changing command adopts the root.
    local r = H.ctcli(root, { "-y", "upgrade", pkg2 })
    assert.equals(0, r.code, r.stderr)
    assert.matches("adopted the Go ctcli's root", r.stderr)
    assert.is_true(is_adopted(root))
    assert.equals("2.0.0", H.app_state(root, "web").version)
    -- list-releases shows the Go backups with their release.
    local lr = H.json(root, { "list-releases" })
    local go_listed = 0
    for _, b in ipairs(lr.backups) do
      if b.backup_format == "go-ctcli" then
        go_listed = go_listed + 1
        assert.is_string(b.release.id)
        assert.is_true(b.data)
      end
    end
    assert.equals(2, go_listed)
    assert(ct.fs.write_atomic(root .. "/config/web/etc/web/app.conf", "replaced after the backup\n", 420))
    H.ok(root, { "-y", "rollback", gob })
    assert.equals("1.0.0", H.app_state(root, "web").version)
    assert.equals("running", H.app_state(root, "worker").state)
    assert.matches("the operator's edit", ct.fs.read(root .. "/config/web/etc/web/app.conf"))
    local range = json.decode(ct.fs.read(root .. "/state/idmap.json"))
    local st = ct.fs.lstat(root .. "/data/web/var/lib/web/owned.txt")
    assert.equals(range.uid + 1000, st.uid)
    assert.equals(range.gid + 1000, st.gid)
    assert.matches("by container user 1000", H.ok(root, { "exec", "web", "cat", "/var/lib/web/owned.txt" }))
  end)

  it("adopts an empty Go root (init only) on install", function()
    local root = goroot(pkg, { empty = true })
    H.ok(root, { "-y", "install", pkg })
    assert.is_true(is_adopted(root))
    assert.equals("running", H.app_state(root, "web").state)
  end)

  for _, case in ipairs({ "kill", "fail" }) do
  for _, step in ipairs(STEPS) do
    it("finishes an adoption " .. (case == "kill" and "killed" or "failing") .. " at its step " .. step ..
      ", nothing stopped", function()
      local root = goroot(pkg)
      local pids = { web = runc_pid(root, "web"), worker = runc_pid(root, "worker") }
      local fault = "adopt:" .. step .. (case == "fail" and ":fail" or "")
      local r = H.ctcli(root, { "-y", "adopt" }, { env = { CTCLI_FAULT = fault } })
      assert.are_not.equal(0, r.code)
      if case == "fail" then
        assert.equals(1, r.code)
        assert.truthy(r.stderr:find("adopting the Go ctcli's root failed", 1, true), r.stderr)
      end
      -- Reading still works, and nothing stopped.
      assert.equals(2, #H.json(root, { "status" }).apps)
      assert.same(pids, { web = runc_pid(root, "web"), worker = runc_pid(root, "worker") })
      local rec = H.ctcli(root, { "recover" })
      assert.equals(0, rec.code, rec.stderr)
      assert.matches("interrupted 'adopt'", rec.stderr)
      assert.is_true(is_adopted(root))
      assert.equals(1, #go_backups(root))
      assert.same(pids, { web = runc_pid(root, "web"), worker = runc_pid(root, "worker") })
      assert.is_nil(ct.fs.lstat(root .. "/state/journal.json"))
      assert.same({}, ct.fs.dir(root .. "/tmp"))
      assert.matches("by container user 1000", H.ok(root, { "exec", "web", "cat", "/var/lib/web/owned.txt" }))
      -- The next start moves the apps; everything still reads.
      H.ok(root, { "-y", "restart" })
      assert.equals("running", H.app_state(root, "web").state)
    end)
  end
  end
end)
