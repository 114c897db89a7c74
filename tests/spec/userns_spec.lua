-- User namespaces by default: container root is an unprivileged id of the
-- root's own range on the host; setuid files and device nodes planted inside
-- are harmless; an opted-out app runs as host root and is shown as
-- privileged; an app started before the mapping keeps running unmapped
-- until its next start, which moves its data; every root has its own range.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

-- Uid line of /proc/<pid>/status on the host: real, effective, saved, fs.
local function host_uid(pid)
  local text = assert(ct.fs.read("/proc/" .. pid .. "/status"))
  return tonumber(text:match("\nUid:%s+(%d+)"))
end

local function pid_of(root, app)
  local st = H.app_state(root, app)
  assert.equals("running", st.state)
  return st.pid
end

local function range_of(root)
  return assert(json.decode(assert(ct.fs.read(root .. "/state/idmap.json"))))
end

local function ctcli_entries(dir, file)
  local out = {}
  for line in (ct.fs.read(dir .. "/" .. file) or ""):gmatch("[^\n]+") do
    local start, count = line:match("^ctcli:(%d+):(%d+)$")
    if start then out[#out + 1] = { start = tonumber(start), count = tonumber(count) } end
  end
  return out
end

local function set_conf(root, doc)
  if doc then
    assert(ct.fs.write_atomic(root .. "/ctcli.json", json.encode(doc, true)))
  else
    ct.fs.unlink(root .. "/ctcli.json")
  end
end

local OPT_OUT = { apps = { web = { user_namespace = false } } }

describe("user namespaces", function()
  teardown(H.cleanup)

  local pkg
  setup(function()
    pkg = H.package({ "--format", "manifest", "--app", "web" })
  end)

  it("maps container root to the root's range and makes setuid files and mknod harmless", function()
    local root = H.root()
    H.ok(root, { "-y", "install", pkg })
    local range = range_of(root)
    assert.is_true(range.uid >= 200000)
    assert.equals(65536, range.size)
    assert.equals(range.uid, host_uid(pid_of(root, "web")))
    local map = H.ok(root, { "exec", "web", "cat", "/proc/self/uid_map" })
    assert.same({ "0", tostring(range.uid), "65536" }, { map:match("(%d+)%s+(%d+)%s+(%d+)") })

    -- A setuid-root binary written inside is owned by the range's root on the host.
    H.ok(root, { "exec", "web", "sh", "-c", "cp /bin/busybox /var/lib/web/x && chmod u+s /var/lib/web/x" })
    local st = assert(ct.fs.lstat(root .. "/data/web/var/lib/web/x"))
    assert.equals(range.uid, st.uid)
    assert.equals(range.gid, st.gid)
    assert.equals(2048, st.mode & 2048) -- the bit stays: harmless, its owner is no one on the host
    -- No device node can be made.
    local r = H.ctcli(root, { "exec", "web", "mknod", "/var/lib/web/dev", "c", "1", "3" })
    assert.are_not.equal(0, r.code)
    assert.is_nil(ct.fs.lstat(root .. "/data/web/var/lib/web/dev"))

    -- The trees the app writes are owned in its range; the directories
    -- above its bundle and rootfs let only the mapped root's group through.
    for _, d in ipairs({ "data/web", "config/web", "logs/web" }) do
      assert.equals(range.uid, ct.fs.lstat(root .. "/" .. d).uid, d)
    end
    for _, d in ipairs({ "images", "releases", "current-release/apps/web" }) do
      local s = assert(ct.fs.stat(root .. "/" .. d))
      assert.equals(0, s.uid, d)
      assert.equals(range.gid, s.gid, d)
      assert.equals(456, s.mode, d) -- 0710
    end
    local status = H.app_state(root, "web")
    assert.is_false(status.privileged)
    assert.equals(range.uid, status.user_namespace.uid)
  end)

  it("runs an app that opts out as host root and reports it privileged", function()
    -- In the manifest...
    local root = H.root()
    local off = H.package({ "--format", "manifest", "--app", "web:userns=off" })
    local plan = H.ok(root, { "plan", off })
    assert.matches("privileged web %(opted out in manifest%)", plan)
    local insp = H.json(root, { "inspect", off })
    assert.is_true(insp.apps[1].privileged)
    H.ok(root, { "-y", "install", off })
    assert.equals(0, host_uid(pid_of(root, "web")))
    local st = H.app_state(root, "web")
    assert.is_true(st.privileged)
    assert.equals("manifest", st.opted_out)
    assert.matches("privileged %(opted out in manifest%)", H.ok(root, { "-v", "status" }))
    assert.equals(0, ct.fs.lstat(root .. "/data/web/var/lib/web/starts.log").uid)

    -- ...and in the operator's ctcli.json.
    local root2 = H.root()
    set_conf(root2, OPT_OUT)
    assert.matches("privileged web %(opted out in ctcli.json%)", H.ok(root2, { "plan", pkg }))
    assert.is_true(H.json(root2, { "inspect", pkg }).apps[1].privileged)
    H.ok(root2, { "-y", "install", pkg })
    assert.equals(0, host_uid(pid_of(root2, "web")))
    assert.matches("privileged %(opted out in ctcli.json%)", H.ok(root2, { "-v", "status" }))
    -- The image stays unpacked for the range (the root has one) only when used so.
    assert.equals("none\n", ct.fs.read(root2 .. "/images/" .. ct.fs.dir(root2 .. "/images")[1] .. "/idmap"))
  end)

  it("names the directory the mapped root cannot search", function()
    local parent = H.tmpdir() .. "/closed"
    assert(ct.fs.mkdir(parent, 448))
    local root = parent .. "/root"
    H.ok(root, { "init" })
    H.roots[#H.roots + 1] = root
    local r = H.ctcli(root, { "-y", "install", pkg })
    assert.equals(1, r.code)
    assert.matches(parent:gsub("%p", "%%%0") .. " is not searchable by other users", r.stderr)
    assert.matches("chmod o%+x", r.stderr)
  end)

  it("refuses a broken ctcli.json with the path of the problem", function()
    local root = H.root()
    set_conf(root, { apps = { web = { user_namespace = "no" } } })
    local r = H.ctcli(root, { "-y", "install", pkg })
    assert.equals(1, r.code)
    assert.matches("apps%.web%.user_namespace: expected true or false", r.stderr)
  end)

  it("keeps an app running unmapped until its next start, which moves its data", function()
    -- An app started before user namespaces: simulated by the opt-out.
    local root = H.root()
    set_conf(root, OPT_OUT)
    H.ok(root, { "-y", "install", pkg })
    local pid = pid_of(root, "web")
    assert.equals(0, host_uid(pid))
    local log = root .. "/data/web/var/lib/web/starts.log"
    assert.equals(0, ct.fs.lstat(log).uid)
    set_conf(root, nil)

    -- Commands that do not stop it leave it as it runs.
    H.ok(root, { "start" })
    assert.equals(pid, pid_of(root, "web"))
    assert.equals(0, host_uid(pid))
    assert.is_true(H.app_state(root, "web").privileged)
    assert.equals(0, ct.fs.lstat(log).uid)

    H.ok(root, { "restart", "web" })
    local range = range_of(root)
    assert.equals(range.uid, host_uid(pid_of(root, "web")))
    assert.is_false(H.app_state(root, "web").privileged)
    -- The file it wrote before is its own still: the start appended a line.
    local st = assert(ct.fs.lstat(log))
    assert.equals(range.uid, st.uid)
    local _, lines = assert(ct.fs.read(log)):gsub("\n", "")
    assert.equals(2, lines)
    H.ok(root, { "exec", "web", "sh", "-c", "echo more >> /var/lib/web/starts.log" })
    -- Its image moved with it.
    local key = ct.fs.dir(root .. "/images")[1]
    assert.equals(string.format("%d:%d:65536\n", range.uid, range.gid), ct.fs.read(root .. "/images/" .. key .. "/idmap"))
    -- (the layers of its new mapping, extracted from the store's blobs)
    local base = json.decode(ct.fs.read(root .. "/images/" .. key .. "/image.json")).layers[1].diff_id:sub(8)
    local mapped = string.format("%s/layers/%d-%d/%s/bin/busybox", root, range.uid, range.gid, base)
    assert.equals(range.uid, ct.fs.lstat(mapped).uid)

    -- And back: opting out again moves it to host ids at its next start.
    set_conf(root, OPT_OUT)
    H.ok(root, { "restart", "web" })
    assert.equals(0, host_uid(pid_of(root, "web")))
    assert.equals(0, ct.fs.lstat(log).uid)
    assert.equals(0, ct.fs.lstat(root .. "/layers/host/" .. base .. "/bin/busybox").uid)
    assert.equals("none\n", ct.fs.read(root .. "/images/" .. key .. "/idmap"))
  end)

  it("gives every root its own range and one ctcli entry in the subid files", function()
    local dir = H.tmpdir() .. "/subid"
    assert(ct.fs.mkdir(dir, 493))
    -- Another user's range where the first one would go: skipped.
    assert(ct.fs.write_atomic(dir .. "/subuid", "someone:200000:65536\n"))
    assert(ct.fs.write_atomic(dir .. "/subgid", "someone:200000:65536\n"))
    local env = { CTCLI_SUBID_DIR = dir }
    local roots = {}
    for i = 1, 2 do
      local r = H.tmpdir() .. "/root"
      H.ok(r, { "init" }, { env = env })
      H.roots[#H.roots + 1] = r
      H.ok(r, { "-y", "install", pkg }, { env = env })
      roots[i] = r
    end
    H.ok(roots[1], { "restart" }, { env = env })
    local a, b = range_of(roots[1]), range_of(roots[2])
    assert.are_not.equal(a.uid, b.uid)
    for _, f in ipairs({ "subuid", "subgid" }) do
      local e = ctcli_entries(dir, f)
      assert.equals(2, #e, f)
      table.sort(e, function(x, y) return x.start < y.start end)
      assert.same({ { start = math.min(a.uid, b.uid), count = 65536 }, { start = math.max(a.uid, b.uid), count = 65536 } }, e)
      assert.matches("^someone:200000:65536\n", ct.fs.read(dir .. "/" .. f))
      for _, x in ipairs(e) do assert.is_true(x.start >= 265536, f) end
    end
  end)
end)
