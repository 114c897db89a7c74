-- Backups and deltas of the layer store (issue 15, items 3 and 5) on real
-- runc containers: a backup holds each image's blobs and each app's
-- writable layer (whiteouts as OCI ".wh." entries, no device node), a
-- restore on another root rebuilds the same layers and the app's changes;
-- a backup made before the layer store (a flattened rootfs) still restores
-- and runs; a delta package leaves out every blob its base has and installs
-- wherever the root's store holds them, else fails naming the blob.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local L = require("support.layered")
local release_of, upper_of, sh = L.release_of, L.upper_of, L.sh

H.need_root()

-- layer_digests(root, mapping) -> diff hex -> the tree digest of its layer dir
local function layer_digests(root, mapping)
  local out = {}
  for _, n in ipairs(ct.fs.dir(root .. "/layers/" .. mapping) or {}) do
    if not n:match("%.json$") then out[n] = assert(ct.fs.tree_digest(root .. "/layers/" .. mapping .. "/" .. n)) end
  end
  return out
end

-- walk(dir) -> the entries of a tree as comparable lines (path, type, mode,
-- owner, device, opaque, content)
local function walk(dir)
  local d = assert(ct.fs.opendir(dir))
  local out = {}
  for _, e in ipairs(assert(d:walk(""))) do
    local line = string.format("%s %s %o %d:%d %s %s", e.path, e.type, e.mode, e.uid, e.gid,
      tostring(e.rdev or "-"), tostring(e.opaque))
    if e.type == "file" then line = line .. " " .. ct.hash.sha256_file(dir .. "/" .. e.path) end
    out[#out + 1] = line
  end
  d:close()
  return out
end

local function newest_backup(root)
  local files = {}
  for _, f in ipairs(ct.fs.dir(root .. "/releases/backups") or {}) do
    if f:match("%.tar%.zst$") or f:match("%.tar%.gz$") then files[#files + 1] = f end
  end
  table.sort(files)
  return root .. "/releases/backups/" .. files[#files]
end

-- unpacked(pkg) -> a directory holding the package's content (for pack)
local function unpacked(pkg)
  local dir = H.tmpdir() .. "/content"
  assert(ct.fs.mkdir(dir, 493, true))
  assert(ct.archive.extract(pkg, dir, {}))
  return dir
end

describe("backups of the layer store", function()
  local v1
  setup(function()
    -- web runs without a user namespace: its layers and upper are owned
    -- alike in every root, so two roots' trees compare digest for digest.
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0",
      "--app", "web:health=none,userns=off", "--app", "api:health=none" })
  end)
  teardown(H.cleanup)

  it("hold blobs and uppers, no device node, and restore the same layers and changes on another root", function()
    local a = H.root()
    H.ok(a, { "install", "-y", v1 })
    -- added, changed, deleted, and a directory replaced (opaque in the upper)
    local r = sh(a, "web", "echo mine > /etc/added && echo changed > /app/mark && rm /bin/hostname && " ..
      "cp -a /app /tmp/app && rm -rf /app && mkdir /app && cp -a /tmp/app/. /app/ && echo new > /app/only && echo ok")
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.equals(0, sh(a, "api", "echo api-was-here > /etc/api-note").code)
    local wupper = a .. "/uppers/web/" .. upper_of(a, "web") .. "/upper"
    assert.equals("char", ct.fs.lstat(wupper .. "/bin/hostname").type)
    local opaque
    for _, e in ipairs(assert(assert(ct.fs.opendir(wupper)):walk(""))) do
      if e.path == "app" then opaque = e.opaque end
    end
    assert.is_true(opaque, "/app is an opaque dir in the upper")

    H.ok(a, { "backup" })
    local file = newest_backup(a)
    local names, by_name = {}, {}
    for _, e in ipairs(assert(ct.archive.list(file))) do
      local n = e.name:gsub("^%./", "")
      names[#names + 1] = n
      by_name[n] = e
      assert.truthy(e.type == "file" or e.type == "dir" or e.type == "link" or e.type == "hardlink",
        n .. " is a " .. tostring(e.type))
      assert.falsy(n:match("^images/[^/]+/rootfs"), "no flattened rootfs: " .. n)
    end
    local id = upper_of(a, "web")
    local up = "uppers/web/" .. id .. "/upper/"
    assert.truthy(by_name[up .. "etc/added"], table.concat(names, "\n"))
    assert.truthy(by_name[up .. "bin/.wh.hostname"], "the whiteout as an OCI entry")
    assert.truthy(by_name[up .. "app/.wh..wh..opq"], "the opaque dir as an OCI marker")
    -- every blob of each image once, named in the record
    local rec = json.decode(assert(ct.fs.read((file:gsub("%.tar%.%a+$", ".json")))))
    local blobs = 0
    for _, n in ipairs(names) do if n:match("^blobs/sha256/%x+$") then blobs = blobs + 1 end end
    local distinct = {}
    for _, list in pairs(rec.images) do for _, d in ipairs(list) do distinct[d] = true end end
    local n = 0
    for d in pairs(distinct) do
      n = n + 1
      assert.truthy(by_name["blobs/sha256/" .. d:sub(8)], d)
    end
    assert.equals(n, blobs)
    -- 2 images x (manifest, config, app layer) + the one base layer they share
    assert.equals(7, blobs)
    H.ok(a, { "stop" })
    local a_layers = layer_digests(a, "host")
    local a_upper = walk(wupper)

    -- another root: restored from the archive alone
    local b = H.root()
    H.ok(b, { "rollback", "-y", file })
    assert.same(a_layers, layer_digests(b, "host"))
    assert.equals(upper_of(a, "web"), upper_of(b, "web"))
    assert.same(a_upper, walk(b .. "/uppers/web/" .. id .. "/upper"))
    for _, f in ipairs(ct.fs.dir(a .. "/blobs/sha256")) do
      assert.equals(f, ct.hash.sha256_file(b .. "/blobs/sha256/" .. f))
    end
    local o = sh(b, "web", "cat /etc/added /app/mark /app/only; test -e /bin/hostname || echo no-vi; ls /app")
    assert.equals(0, o.code, o.stderr)
    assert.truthy(o.stdout:find("mine\nchanged\nnew\nno-vi\n", 1, true), o.stdout)
    assert.truthy(o.stdout:find("run.sh", 1, true), o.stdout)
    -- api ran in a user namespace: its upper moved to this root's range, its change there
    assert.equals("api-was-here\n", sh(b, "api", "cat /etc/api-note").stdout)
    local st = H.json(b, { "status" })
    for _, app in ipairs(st.apps) do assert.equals("running", app.state, app.name) end

    -- the same layers: a delta made against the backed-up release applies here
    local v2 = H.package({ "--format", "manifest", "--version", "1.1.0",
      "--app", "web:health=none,userns=off,version=1.1.0", "--app", "api:health=none,version=1.0.0" })
    local delta = H.tmpdir() .. "/delta.tar.zst"
    H.ok(nil, { "pack", unpacked(v2), "-o", delta, "--base", v1 })
    H.ok(b, { "upgrade", "-y", delta })
    assert.equals("1.1.0", release_of(b).version)
    assert.equals("api-was-here\n", sh(b, "api", "cat /etc/api-note").stdout, "api unchanged keeps its upper")
  end)

  it("restores a backup made before the layer store (a flattened rootfs), and the app runs", function()
    local a = H.root()
    H.ok(a, { "install", "-y", v1 })
    assert.equals(0, sh(a, "web", "echo old-write > /etc/old-write").code)
    H.ok(a, { "stop" })
    -- The archive the code before the layer store made: the release, each
    -- image as images/<key>/{rootfs, image.json, idmap}, config/ and data/
    -- (git show d8e8cf4^:lua/ctcli/store/backup.lua); its release names no upper.
    local cur = ct.fs.realpath(a .. "/current-release")
    local old = H.tmpdir()
    local rel = release_of(a)
    local info = { format = "ctcli-backup/1", release = rel.id, name = rel.name, version = rel.version,
      created = "2026-01-01T00:00:00Z", data = true, reason = "backup", apps = {} }
    assert(ct.fs.mkdir(old .. "/current-release", 493, true))
    local entries = {}
    for i, app in ipairs(rel.apps) do
      info.apps[app.name] = { version = app.version, digest = app.image.digest, idmap = false }
      local key = app.name .. "@" .. app.image.digest
      -- the flattened rootfs: the image's layers and the app's changes, as the
      -- app's own copy is made (the layers applied in order, then its upper)
      local rootfs = old .. "/" .. key .. "/rootfs"
      assert(ct.fs.mkdir(rootfs, 493, true))
      local image = json.decode(ct.fs.read(a .. "/images/" .. key .. "/image.json"))
      for _, l in ipairs(image.layers) do
        assert(ct.archive.extract(a .. "/blobs/sha256/" .. l.blob:sub(8), rootfs,
          { preserve = true, whiteouts = "apply" }))
      end
      local utar = old .. "/upper-" .. i .. ".tar"
      assert(ct.archive.create(utar, { { name = "", path = a .. "/uppers/" .. app.name .. "/" .. app.upper .. "/upper",
        whiteouts = "oci" } }, { format = "gzip" }))
      assert(ct.archive.extract(utar, rootfs, { preserve = true, whiteouts = "apply" }))
      local image_old = { process = image.process, app = image.app, digest = image.digest, devices_removed = 0 }
      assert(ct.fs.write_atomic(old .. "/" .. key .. "/image.json", json.encode(image_old)))
      assert(ct.fs.write_atomic(old .. "/" .. key .. "/idmap", "none\n"))
      entries[#entries + 1] = { name = "images/" .. key, path = old .. "/" .. key }
      app.upper = nil
    end
    assert(ct.fs.write_atomic(old .. "/current-release/release.json", json.encode(rel, true)))
    assert(ct.fs.write_atomic(old .. "/backup-info.json", json.encode(info, true)))
    assert(ct.fs.mkdir(old .. "/config", 493) and ct.fs.mkdir(old .. "/data", 448))
    table.insert(entries, 1, { name = "backup-info.json", path = old .. "/backup-info.json" })
    table.insert(entries, 2, { name = "current-release", path = old .. "/current-release" })
    table.insert(entries, 3, { name = "current-release/apps", path = cur .. "/apps" })
    entries[#entries + 1] = { name = "config", path = old .. "/config" }
    entries[#entries + 1] = { name = "data", path = old .. "/data" }
    for _, n in ipairs({ "web", "api" }) do
      entries[#entries + 1] = { name = "config/" .. n, path = a .. "/config/" .. n }
      entries[#entries + 1] = { name = "data/" .. n, path = a .. "/data/" .. n }
    end
    local file = old .. "/old-backup.tar.zst"
    assert(ct.archive.create(file, entries, { format = "zstd" }))

    -- a fresh root: the rootfs becomes a flat image, as before
    local b = H.root()
    H.ok(b, { "rollback", "-y", file })
    assert.truthy(ct.fs.exists(b .. "/images/web@" .. rel.apps[1].image.digest .. "/rootfs"))
    assert.equals("old-write\n", sh(b, "web", "cat /etc/old-write").stdout)
    for _, app in ipairs(H.json(b, { "status" }).apps) do assert.equals("running", app.state, app.name) end

    -- a root whose store holds the image as layers: the rootfs becomes the app's own copy
    local c = H.root()
    H.ok(c, { "install", "-y", v1 })
    H.ok(c, { "rollback", "-y", file })
    local id = upper_of(c, "web")
    assert.truthy(id, "the restored release names an upper for web")
    assert.truthy(ct.fs.exists(c .. "/uppers/web/" .. id .. "/rootfs/etc/old-write"))
    assert.equals("old-write\n", sh(c, "web", "cat /etc/old-write").stdout)
    for _, app in ipairs(H.json(c, { "status" }).apps) do assert.equals("running", app.state, app.name) end
  end)
end)

-- blobs_in(pkg) -> set of hex of the blobs an archive holds, and by layout
local function blobs_in(pkg)
  local out, by = {}, {}
  for _, e in ipairs(assert(ct.archive.list(pkg))) do
    local layout, h = e.name:gsub("^%./", ""):match("^(.*)/blobs/sha256/(%x+)$")
    if h then
      out[h] = true
      by[layout] = (by[layout] or 0) + 1
    end
  end
  return out, by
end

describe("deltas by layer", function()
  teardown(H.cleanup)

  it("carry only the layer that changed and install where the store holds the rest, whatever release brought it", function()
    local old = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:health=none,payload=2" })
    local new = H.package({ "--format", "manifest", "--version", "1.1.0",
      "--app", "web:health=none,version=1.1.0,payload=2" })
    local content = unpacked(new)
    local delta = H.tmpdir() .. "/web-1.1.0-delta.tar.zst"
    local full = H.tmpdir() .. "/web-1.1.0.tar.zst"
    H.ok(nil, { "pack", content, "-o", full })
    local out = H.json(nil, { "pack", content, "-o", delta, "--base", old })
    assert.truthy(out.delta ~= json.null and out.delta.blobs["images/web"], json.encode(out))

    -- of web's two layers, the base one (busybox) is left out, the app's own carried
    local mf = json.decode(assert(ct.fs.read(content .. "/images/web/blobs/sha256/" ..
      json.decode(ct.fs.read(content .. "/manifest.json")).apps[1].image.digest:sub(8))))
    assert.equals(2, #mf.layers)
    local held = blobs_in(delta)
    assert.falsy(held[mf.layers[1].digest:sub(8)], "the base layer is left out")
    assert.truthy(held[mf.layers[2].digest:sub(8)], "the changed layer is carried")
    local left = out.delta.blobs["images/web"]
    assert.same({ mf.layers[1].digest }, left)
    local fsize, dsize = (ct.fs.stat(full) or {}).size, (ct.fs.stat(delta) or {}).size
    print(string.format("\n[delta] one changed layer of two: full package %d bytes, delta %d bytes (%.0f%%)",
      fsize, dsize, 100 * dsize / fsize))
    assert.truthy(dsize < fsize * 0.8, "delta " .. dsize .. " vs full " .. fsize)

    -- validate, verify and inspect read a delta without a root
    H.ok(nil, { "validate", delta })
    H.ok(nil, { "verify", delta })
    local ins = H.json(nil, { "inspect", delta })
    assert.equals("1.1.0", ins.release.version)

    -- a root that got the base layer through another app and release
    local root = H.root()
    H.ok(root, { "install", "-y", H.package({ "--format", "manifest", "--version", "0.9.0", "--app", "other:health=none" }) })
    assert.truthy(ct.fs.exists(root .. "/blobs/sha256/" .. mf.layers[1].digest:sub(8)))
    H.ok(root, { "upgrade", "-y", delta })
    assert.equals("1.1.0", release_of(root).version)
    local r = sh(root, "web", "cat /app/version; ls /bin/busybox")
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1.1.0", 1, true), r.stdout)
    for _, app in ipairs(H.json(root, { "status" }).apps) do assert.equals("running", app.state, app.name) end
  end)

  it("fails naming the blob on a root whose store lacks it, and changes nothing", function()
    local old = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:health=none",
      "--app", "api:health=none" })
    local new = H.package({ "--format", "manifest", "--version", "1.1.0", "--app", "web:health=none,version=1.1.0",
      "--app", "api:health=none,version=1.0.0" })
    local delta = H.tmpdir() .. "/delta.tar.zst"
    local out = H.json(nil, { "pack", unpacked(new), "-o", delta, "--base", old })
    -- api is unchanged: its app layer, config and manifest are left out too
    local api_left = out.delta.blobs["images/api"]
    assert.equals(4, #api_left)
    local _, by = blobs_in(delta)
    assert.falsy(by["images/api"], "none of api's blobs is carried")

    local root = H.root()
    H.ok(root, { "install", "-y", H.package({ "--format", "manifest", "--version", "0.9.0", "--app", "canary:health=none" }) })
    -- the canary has written what it writes at its start
    assert.truthy(H.wait_for(function() return ct.fs.exists(root .. "/data/canary/var/lib/canary/starts.log") end, 20))
    local before, before_parts = H.root_hash(root)
    local r = H.ctcli(root, { "upgrade", "-y", delta })
    assert.equals(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("leaves out the blob sha256:%x+ of images/api"), r.stderr)
    local missing = r.stderr:match("the blob (sha256:%x+)")
    local listed = false
    for _, d in ipairs(api_left) do if d == missing then listed = true end end
    assert.is_true(listed, missing)
    assert.falsy(ct.fs.exists(root .. "/blobs/sha256/" .. missing:sub(8)))
    local after, after_parts = H.root_hash(root)
    if after ~= before then assert.same(before_parts, after_parts) end
    assert.equals("0.9.0", release_of(root).version)
    assert.equals("running", H.app_state(root, "canary").state)
  end)
end)
