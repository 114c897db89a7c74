-- A full disk: a root on a 20 MiB tmpfs. An upgrade with a package larger
-- than the free space, or one whose entries unpack to more than it, is
-- refused with a clear "not enough space" line; the current release stays
-- untouched and running, tmp/ is empty. Needs root (mount).
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

local mounts = {}

-- A root inside a fresh 20 MiB tmpfs (unmounted by cleanup()).
local function tmpfs_root()
  local mnt = H.tmpdir() .. "/mnt"
  -- traversable (0711, as /tmp is): the root's mapped root must reach its rootfs
  assert(ct.fs.mkdir(mnt, 457))
  local r = assert(ct.proc.run({ "mount", "-t", "tmpfs", "-o", "size=20m,mode=0711", "tmpfs", mnt }))
  assert(r.code == 0, "mount: " .. r.stderr)
  local root = mnt .. "/root"
  mounts[#mounts + 1] = { mnt = mnt, root = root }
  H.ok(root, { "init" })
  return root
end

-- Kills and deletes the containers of each tmpfs root by id (as H.cleanup
-- does, but before their runc-root goes away), unmounts, then H.cleanup().
local function cleanup()
  for _, m in ipairs(mounts) do
    H.kill_monitors(m.root)
    local rr = m.root .. "/runc-root"
    local r = ct.proc.run({ "runc", "--root", rr, "list", "-q" }, { timeout = 30 })
    if r and r.code == 0 then
      for id in r.stdout:gmatch("%S+") do
        ct.proc.run({ "runc", "--root", rr, "kill", id, "KILL" }, { timeout = 30 })
        H.wait_for(function()
          local s = ct.proc.run({ "runc", "--root", rr, "delete", "--force", id }, { timeout = 30 })
          return s and s.code == 0
        end, 10)
      end
    end
    local u = ct.proc.run({ "umount", m.mnt }, { timeout = 30 })
    if not u or u.code ~= 0 then ct.proc.run({ "umount", "-l", m.mnt }, { timeout = 30 }) end
  end
  mounts = {}
  H.cleanup()
end

local app_state = H.app_state

-- The upgrade is refused: one line saying so, the release and its app as before.
local function refused_upgrade(root, pkg, words)
  local rel = H.json(root, { "release-info" })
  local web = app_state(root, "web")
  assert.equals("running", web.state)
  local before = H.root_hash(root)
  -- -q: the refusal alone on stderr, without the step lines before it
  local r = H.ctcli(root, { "-q", "upgrade", "--yes", pkg })
  assert.equals(1, r.code, r.stdout .. r.stderr)
  local line = r.stderr:match("^([^\n]*)\n$")
  assert.is_truthy(line, "not one line:\n" .. r.stderr)
  for _, w in ipairs(words) do
    assert.is_truthy(line:find(w, 1, true), "missing '" .. w .. "' in: " .. line)
  end
  assert.same({}, ct.fs.dir(root .. "/tmp"))
  assert.equals(before, (H.root_hash(root)))
  assert.same(rel, H.json(root, { "release-info" }))
  local after = app_state(root, "web")
  assert.equals("running", after.state)
  assert.equals(web.pid, after.pid)
  return line
end

describe("a full disk", function()
  local small, big, mid
  setup(function()
    small = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web" })
    big = H.package({ "--format", "manifest", "--version", "2.0.0", "--app", "web:payload=30,version=2.0.0" })
    mid = H.package({ "--format", "manifest", "--version", "3.0.0", "--app", "web:payload=11,version=3.0.0" })
  end)
  teardown(cleanup)

  it("refuses an upgrade larger than the free space; the current release keeps running", function()
    local root = tmpfs_root()
    H.ok(root, { "install", small })
    local line = refused_upgrade(root, big, { "not enough space", "pkg-" })
    assert.is_truthy(line:find(root .. "/tmp", 1, true), line)
  end)

  it("refuses a small package that unpacks to more than the free space, before writing it", function()
    local root = tmpfs_root()
    H.ok(root, { "install", small })
    -- 64 MiB of zeros (a sparse file here) is a few KB of gzip.
    local dir = H.tmpdir()
    local f = assert(io.open(dir .. "/zeros.bin", "wb"))
    assert(f:seek("set", 64 * 1024 * 1024 - 1))
    f:write("\0")
    f:close()
    local pkg = dir .. "/zero-bomb.tar.gz"
    assert(ct.archive.create(pkg, { { name = "payload/zeros.bin", path = dir .. "/zeros.bin" } },
      { format = "gzip", mtime = 0, owner0 = true }))
    assert.is_truthy(assert(ct.fs.stat(pkg)).size < 1024 * 1024)
    refused_upgrade(root, pkg, { "zero-bomb.tar.gz", "payload/zeros.bin", "not enough space" })
  end)

  it("cleans up when the disk fills while unpacking an image that fit as a package", function()
    -- 11 MiB: the package fits in the ~17 MiB left, its unpacked image does not.
    local root = tmpfs_root()
    H.ok(root, { "install", small })
    local images = ct.fs.dir(root .. "/images")
    refused_upgrade(root, mid, { "unpacking the image of web", "not enough space in " .. root .. "/tmp" })
    assert.same(images, ct.fs.dir(root .. "/images"))
  end)
end)
