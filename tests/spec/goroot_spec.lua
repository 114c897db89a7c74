-- tests/support/mkgoroot makes the roots and backups the adoption specs
-- start from, as the Go ctcli makes them. tests/support/check-goroot holds
-- it against the real Go binary (by hand: CI cannot build it); this spec
-- pins the same facts without it, so a change to the generator that
-- drifts from the Go tool's layout fails here.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local APPS = { "web", "worker" }
local UUID4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
-- Go's time.Time in JSON: RFC 3339, a fraction without trailing zeros,
-- "Z" for a zero offset (and, when utc, always).
local function go_time(s, utc)
  local frac, zone = s:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d([.%d]*)(.*)$")
  if not frac then return false end
  if frac ~= "" and not frac:match("^%.%d*[1-9]$") then return false end
  if zone == "Z" then return true end
  return not utc and zone:match("^[-+]%d%d:%d%d$") ~= nil and not zone:match("^.00:00$")
end

local function umask()
  local r = assert(ct.proc.run({ "sh", "-c", "umask" }))
  return tonumber(r.stdout:match("%d+"), 8)
end

local function read_json(path)
  return assert(json.decode(assert(ct.fs.read(path))), path)
end

local function runc_state(root, id)
  local r = assert(ct.proc.run({ root .. "/current-release/runc.amd64", "--root", root .. "/runc-root", "state", id }))
  if r.code ~= 0 then return nil end
  return json.decode(r.stdout)
end

local function map_lines(path)
  local out = {}
  for line in assert(ct.fs.read(path)):gmatch("[^\n]+") do
    out[#out + 1] = table.concat({ line:match("(%d+)%s+(%d+)%s+(%d+)") }, " ")
  end
  return out
end

local function tar_members(archive)
  local r = assert(ct.proc.run({ "tar", "-tzf", archive }))
  assert.equals(0, r.code, r.stderr)
  local set = {}
  for name in r.stdout:gmatch("[^\n]+") do set[name] = true end
  return set
end

describe("mkgoroot: roots and backups as the Go ctcli makes them", function()
  teardown(H.cleanup)

  local pkg
  setup(function()
    pkg = H.package({ "--format", "legacy", "--app", "web", "--app", "worker" })
  end)

  it("installs into a current-release/ directory: the apps' bundles, runc.amd64, release-info.json", function()
    local root = H.goroot(nil, pkg)
    local mask = umask()
    assert.equals("file", ct.fs.lstat(root .. "/.ctcli-init").type)
    for _, d in ipairs({ "config", "logs", "releases", "current-release", "data" }) do
      local st = assert(ct.fs.lstat(root .. "/" .. d), d)
      assert.equals("dir", st.type)
      assert.equals(511 & ~mask, st.mode, d) -- os.ModePerm through the umask
    end
    assert.is_nil(ct.fs.lstat(root .. "/tmp"))
    assert.equals(509, ct.fs.lstat(root .. "/current-release/runc.amd64").mode) -- 0775, chmod'ed

    local info = read_json(root .. "/current-release/release-info.json")
    assert.truthy(info.id:match(UUID4))
    assert.equals("", info.baseRelease)
    assert.truthy(go_time(info.createdAt), info.createdAt)
    assert.equals(#APPS, #info.appVersions)
    for i, app in ipairs(APPS) do
      local dir = root .. "/current-release/apps/" .. app
      -- appVersions: version.json's fields, in the apps' name order
      assert.same(read_json(dir .. "/version.json"), info.appVersions[i])
      for _, f in ipairs({ "package-config.json", "version.json", "config.json", "rootfs/app/run.sh" }) do
        assert.truthy(ct.fs.lstat(dir .. "/" .. f), f)
      end
      assert.is_nil(ct.fs.lstat(dir .. "/skopeo"))

      local conf = read_json(dir .. "/config.json")
      assert.is_false(conf.process.terminal)
      assert.same({ "/bin/sh", "/app/run.sh" }, conf.process.args)
      local binds = {}
      for _, m in ipairs(conf.mounts) do binds[m.destination] = m end
      local want = {
        ["/var/log/" .. app] = root .. "/logs/" .. app,
        ["/etc/hosts"] = "/etc/hosts",
        ["/var/lib/" .. app] = root .. "/data/" .. app .. "/var/lib/" .. app,
        ["/etc/" .. app .. "/app.conf"] = root .. "/config/" .. app .. "/etc/" .. app .. "/app.conf",
      }
      for dest, source in pairs(want) do
        assert.same({ destination = dest, source = source, type = "bind", options = { "noexec", "nosuid", "rbind" } },
          binds[dest])
      end
      local extra = { containerID = 1, hostID = 100000, size = 65536 }
      assert.same({ { containerID = 0, hostID = 0, size = 1 }, extra }, conf.linux.uidMappings)
      assert.same({ { containerID = 0, hostID = 0, size = 1 }, extra }, conf.linux.gidMappings)
      -- the layout Go's json.Indent gives: four spaces, no newline at the end
      local text = assert(ct.fs.read(dir .. "/config.json"))
      assert.truthy(text:match('^{\n    "ociVersion": '))
      assert.equals("}", text:sub(-1))
      -- the config seeded from the image; the data directory made
      assert.equals(assert(ct.fs.read(dir .. "/rootfs/etc/" .. app .. "/app.conf")),
        ct.fs.read(root .. "/config/" .. app .. "/etc/" .. app .. "/app.conf"))
      assert.equals("dir", ct.fs.lstat(root .. "/data/" .. app .. "/var/lib/" .. app).type)
    end
    local text = assert(ct.fs.read(root .. "/current-release/release-info.json"))
    assert.truthy(text:match('^{\n "id": "[^"]+",\n "baseRelease": "",\n "createdAt": '))
  end)

  it("starts the apps as the Go tool: its container ids and id mappings, output on the app's log", function()
    local root, ids = H.goroot(nil, pkg, { start = true })
    local mask = umask()
    for _, app in ipairs(APPS) do
      assert.equals(ct.hash.md5(root) .. "-" .. app, ids[app])
      local st = assert(runc_state(root, ids[app]), app)
      assert.equals("running", st.status)
      assert.equals(root .. "/current-release/apps/" .. app, st.bundle)
      -- container root is host root; ids 1... are host 100000...
      assert.same({ "0 0 1", "1 100000 65536" }, map_lines("/proc/" .. st.pid .. "/uid_map"))
      assert.same({ "0 0 1", "1 100000 65536" }, map_lines("/proc/" .. st.pid .. "/gid_map"))
      local log = root .. "/logs/" .. app .. "/stdout-stderr.log"
      assert.equals(log, ct.fs.readlink("/proc/" .. st.pid .. "/fd/1"))
      assert.equals(log, ct.fs.readlink("/proc/" .. st.pid .. "/fd/2"))
      assert.equals(511 & ~mask, ct.fs.lstat(log).mode) -- opened with os.ModePerm
      assert.truthy(H.wait_for(function()
        return (ct.fs.read(log) or ""):match("^" .. app .. " 1%.0%.0\n")
      end, 10), app .. " printed no mark")
      -- data written by container root is host root's
      assert.truthy(H.wait_for(function()
        return ct.fs.lstat(root .. "/data/" .. app .. "/var/lib/" .. app .. "/starts.log")
      end, 10))
    end
    assert.equals(448, ct.fs.lstat(root .. "/runc-root").mode)
    -- a container user other than root writes as host id 99999 + its id
    -- (the Go images' roots hold no CAP_CHOWN: the directory is given here)
    local sub = root .. "/data/web/var/lib/web/u1000"
    assert(ct.fs.mkdir(sub, 493))
    assert(ct.fs.chown(sub, 100999, 100999))
    local r = H.goroot_exec(root, "web", { "sh", "-c", "echo x > /var/lib/web/u1000/f" }, "1000:1000")
    assert.equals(0, r.code, r.stderr)
    local st = assert(ct.fs.lstat(sub .. "/f"))
    assert.same({ 100999, 100999 }, { st.uid, st.gid })

    -- A start of a running app changes nothing; stop and start archive the log.
    local pid = runc_state(root, ids.web).pid
    assert.truthy(H.mkgoroot({ "start", root, "web" }):match("web already running"))
    assert.equals(pid, runc_state(root, ids.web).pid)
    H.mkgoroot({ "stop", root, "web" })
    assert.is_nil(runc_state(root, ids.web))
    H.mkgoroot({ "start", root, "web" })
    assert.equals("running", runc_state(root, ids.web).status)
    local arch = assert(ct.fs.dir(root .. "/logs/web/stdout-stderr-arch"))
    assert.equals(1, #arch)
    assert.truthy(arch[1]:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ%.log$"), arch[1])
    assert.truthy(ct.fs.read(root .. "/logs/web/stdout-stderr-arch/" .. arch[1]):match("^web 1%.0%.0\n"))
  end)

  it("backs up as the Go tool: releases/<UTC date>/<uid>.tar.gz beside backup-info.json", function()
    local root = H.goroot(nil, pkg, { start = true })
    for _, app in ipairs(APPS) do
      assert.truthy(H.wait_for(function()
        return ct.fs.lstat(root .. "/data/" .. app .. "/var/lib/" .. app .. "/starts.log")
      end, 10))
    end
    local b = H.gobackup(root)
    assert.truthy(b.uid:match(UUID4))
    assert.equals(root .. "/releases", b.dir:match("^(.*)/[^/]+$"))
    local stamp = b.dir:match("([^/]+)$")
    assert.truthy(stamp:match("^%d%d%d%d%-%d%d%-%d%d_%d%d%-%d%d%-%d%d$"), stamp)
    local files = assert(ct.fs.dir(b.dir))
    table.sort(files)
    local want = { b.uid .. ".tar.gz", "backup-info.json" }
    table.sort(want) -- the uid is random: it sorts before or after "backup-info.json"
    assert.same(want, files)

    assert.equals(b.uid, b.info.uid)
    assert.truthy(go_time(b.info.backupDate, true), b.info.backupDate)
    -- the folder is named by backupDate, in UTC, to the second
    assert.equals(stamp, (b.info.backupDate:sub(1, 19):gsub("T", "_"):gsub(":", "-")))
    assert.same(read_json(root .. "/current-release/release-info.json"), b.info.releaseInfo)
    assert.truthy(b.text:match('^{\n "uid": "[^"]+",\n "backupDate": "[^"]+",\n "releaseInfo": {\n  "id": '))

    local members = tar_members(b.archive)
    for name in pairs(members) do
      assert.truthy(name:match("^current%-release/") or name:match("^data/") or name:match("^config/"), name)
    end
    for _, name in ipairs({ "current-release/", "current-release/release-info.json", "current-release/runc.amd64",
      "current-release/apps/web/config.json", "current-release/apps/worker/rootfs/app/run.sh",
      "data/", "data/web/var/lib/web/starts.log", "config/", "config/worker/etc/worker/app.conf" }) do
      assert.truthy(members[name], name)
    end

    -- --ignore-data leaves data/ out; a second backup in the same second
    -- would clash, as the Go tool's does.
    local later = H.gobackup(root, { ignore_data = true, date = "2030-01-02T03:04:05.5Z" })
    assert.equals(root .. "/releases/2030-01-02_03-04-05", later.dir)
    assert.equals("2030-01-02T03:04:05.5Z", later.info.backupDate)
    local again = ct.proc.run({ H.mkgoroot_bin, "backup", root, "--date", "2030-01-02T03:04:05.9Z" })
    assert.equals(1, again.code)
    for name in pairs(tar_members(later.archive)) do
      assert.is_nil(name:match("^data/"), name)
    end
    assert.truthy(tar_members(later.archive)["config/web/etc/web/app.conf"])
  end)

  it("writes a given release id and creation time the way Go marshals them", function()
    local id = "0b9c2d1e-3f4a-4b5c-8d6e-7f8091a2b3c4"
    local root = H.goroot(nil, pkg, { id = id, created_at = "2024-05-06T07:08:09.120000+00:00" })
    local info = read_json(root .. "/current-release/release-info.json")
    assert.equals(id, info.id)
    assert.equals("2024-05-06T07:08:09.12Z", info.createdAt)
    root = H.goroot(nil, pkg, { created_at = "2024-05-06T07:08:09+03:00" })
    assert.equals("2024-05-06T07:08:09+03:00", read_json(root .. "/current-release/release-info.json").createdAt)
  end)

  it("repacks a legacy package without meta.json or its packageVersion; the Go install never reads it", function()
    local dir = H.tmpdir()
    local function listing(p)
      local r = assert(ct.proc.run({ "tar", "-tzf", p }))
      return r.stdout
    end
    H.mkgoroot({ "repack", pkg, dir .. "/nometa.tar.gz", "--no-meta" })
    assert.is_nil(listing(dir .. "/nometa.tar.gz"):match("meta%.json"))
    H.mkgoroot({ "repack", pkg, dir .. "/nover.tar.gz", "--no-package-version" })
    assert.truthy(listing(dir .. "/nover.tar.gz"):match("^meta%.json\n"))
    local r = assert(ct.proc.run({ "tar", "-xzOf", dir .. "/nover.tar.gz", "meta.json" }))
    local meta = assert(json.decode(r.stdout))
    assert.is_nil(meta.packageVersion)
    assert.truthy(meta.releaseMeta)
    local root = H.goroot(nil, dir .. "/nometa.tar.gz")
    assert.equals(#APPS, #read_json(root .. "/current-release/release-info.json").appVersions)
  end)
end)
