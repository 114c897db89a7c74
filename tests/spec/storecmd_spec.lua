-- The store commands (issue 15) on real roots: diff (what an app changed
-- against its image, in an overlay upper and in an own copy, never
-- following what the app planted), images (a shared base layer counted
-- once), images --verify (a corrupted blob, a changed layer file), and
-- prune (an upgraded image's layers and blobs go, what a backup record
-- names stays).
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local L = require("support.layered")
local release_of, layer_dirs = L.release_of, L.layer_dirs

H.need_root()

local function sh(root, app, script)
  local r = H.ctcli(root, { "exec", app, "sh", "-c", script })
  assert.equals(0, r.code, r.stderr)
  return r
end

local count = H.count

local function image_json(root, key)
  return json.decode(assert(ct.fs.read(root .. "/images/" .. key .. "/image.json")))
end

local function key_of(root, app)
  for _, a in ipairs(release_of(root).apps) do
    if a.name == app then return a.name .. "@" .. a.image.digest end
  end
end

-- What the script below changes, as diff prints it: /app emptied
-- (an opaque dir in an upper) and made again with one file of the image's,
-- a file deleted, one changed, one added, and a symlink to the host's
-- /etc/shadow, a symlink to a directory and a fifo planted.
local CHANGES = table.concat({
  "rm /bin/cat",
  "echo changed >> /etc/passwd",
  "echo new > /etc/written",
  "rm -rf /app && mkdir /app && echo again > /app/mark",
  "ln -s /etc/shadow /shadowlink",
  "mkdir /sub && ln -s /etc /sub/etc",
  "mkfifo /fifo",
}, " && ")

local EXPECTED = {
  "C /app", "C /app/mark", "D /app/run.sh", "D /app/version",
  "C /bin", "D /bin/cat",
  "C /etc", "C /etc/passwd", "A /etc/written",
  "A /fifo", "A /shadowlink", "A /sub", "A /sub/etc",
}

local function diff_lines(root, app)
  -- A fifo read or a link followed would hang or list the host's files:
  -- the time limit fails the spec instead of hanging it.
  local r = H.ctcli(root, { "diff", app }, { timeout = 60 })
  assert.equals(0, r.code, r.stderr)
  local lines = {}
  for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
  return lines
end

describe("the store commands", function()
  local v1, v2
  setup(function() v1, v2 = L.packages() end)
  teardown(H.cleanup)

  it("diff lists what an app added, changed and deleted in its upper, never following what it planted", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    assert.same({}, diff_lines(root, "api"), "runc's mount points are not the app's changes")
    sh(root, "web", CHANGES)
    assert.same(EXPECTED, diff_lines(root, "web"))
    local upper = root .. "/uppers/web/" .. release_of(root).id .. "/upper"
    assert.is_true(ct.fs.lstat(upper .. "/app").type == "dir")
    local doc = H.json(root, { "diff", "web" })
    assert.equals(1, doc.format)
    assert.equals("overlay", doc.storage)
    local lines = {}
    for _, c in ipairs(doc.changes) do lines[#lines + 1] = c.kind .. " " .. c.path end
    assert.same(EXPECTED, lines)
    assert.same({}, diff_lines(root, "worker"), "one app's changes are its own")
    -- reset drops them all
    H.ok(root, { "-y", "reset", "web" })
    assert.same({}, diff_lines(root, "web"))
    local r = H.ctcli(root, { "diff", "nosuch" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("no app 'nosuch'", 1, true), r.stderr)
  end)

  it("diff compares an app's own copy with its image when overlayfs is off", function()
    local root = H.root()
    assert(ct.fs.write_atomic(root .. "/ctcli.json", '{"storage": {"overlay": false}}\n'))
    H.ok(root, { "install", v1 })
    assert.same({}, H.mounts(root))
    assert.same({}, diff_lines(root, "api"))
    sh(root, "web", CHANGES)
    assert.same(EXPECTED, diff_lines(root, "web"))
    assert.equals("copy", H.json(root, { "diff", "web" }).storage)
  end)

  it("images counts a base layer three apps share once; --verify names a corrupted blob and a changed layer file",
    function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local dirs = layer_dirs(root)
    assert.equals(4, count(dirs))
    local base
    for hex, d in pairs(dirs) do
      if ct.fs.exists(d .. "/bin/busybox") then base = hex end
    end
    local du = {}
    local total = 0
    for hex, d in pairs(dirs) do
      du[hex] = assert(ct.fs.du(d))
      total = total + du[hex]
    end
    local doc = H.json(root, { "images", "--layers" })
    assert.equals(1, doc.format)
    assert.equals(3, #doc.images)
    assert.equals(total, doc.bytes, "each layer counted once")
    local cur = release_of(root).id
    for _, im in ipairs(doc.images) do
      assert.equals(2, #im.layers)
      local own = image_json(root, im.app .. "@" .. im.digest).layers[2].diff_id:sub(8)
      assert.equals(du[base], im.shared_bytes, im.app)
      assert.equals(du[own], im.unique_bytes, im.app)
      assert.equals(du[base] + du[own], im.bytes, im.app)
      assert.same({ cur }, im.releases)
      assert.is_true(im.current)
      -- the install's zero backup holds every image of the release
      assert.equals(1, #im.backups, im.app)
    end
    assert.equals(4, #doc.layers)
    for _, l in ipairs(doc.layers) do
      assert.equals(l.diff_id:sub(8) == base and 3 or 1, #l.images, l.diff_id)
      assert.equals(l.diff_id:sub(8) == base, l.shared)
      assert.equals(du[l.diff_id:sub(8)], l.bytes)
    end
    local text = H.ok(root, { "images", "--layers" })
    local _, seen = text:gsub(base:sub(1, 12), "")
    assert.equals(1, seen, "the base layer is one line:\n" .. text)
    assert.truthy(H.ok(root, { "images" }):find("3 images, 4 layers", 1, true))

    local ok = H.ctcli(root, { "images", "--verify" })
    assert.equals(0, ok.code, ok.stdout .. ok.stderr)
    -- A blob flipped in place, and a file of the shared layer rewritten
    -- (as a process with the store's access could).
    local config = image_json(root, key_of(root, "web")).config
    local blob = root .. "/blobs/sha256/" .. config:sub(8)
    local text_blob = assert(ct.fs.read(blob))
    assert(ct.fs.write_atomic(blob, text_blob:sub(1, -3) .. "X" .. text_blob:sub(-1), 420))
    local passwd = dirs[base] .. "/etc/passwd"
    assert(ct.fs.write_atomic(passwd, assert(ct.fs.read(passwd)) .. "intruder:x:0:0::/:/bin/sh\n", 420))
    local r = H.ctcli(root, { "images", "--verify" })
    assert.equals(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("blob " .. config, 1, true), r.stdout)
    assert.truthy(r.stdout:find("/" .. base .. ": its tree changed", 1, true), r.stdout)
    assert.truthy(r.stdout:find("C /etc/passwd", 1, true), r.stdout)
    local vdoc = json.decode(H.ctcli(root, { "--json", "images", "--verify" }).stdout)
    assert.is_false(vdoc.ok)
    assert.equals(2, #vdoc.problems)
  end)

  it("compares a flat rootfs of a root made before the layer store with its kept layout's layers", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    H.ok(root, { "stop", "web" })
    -- What an older ctcli made: umoci's whole rootfs in images/<key>/, an
    -- image.json without layers, a release record without an upper.
    local key = key_of(root, "web")
    local dir = root .. "/images/" .. key
    local argv = { "umoci", "unpack" }
    local u, g, s = assert(ct.fs.read(dir .. "/idmap")):match("^(%d+):(%d+):(%d+)")
    if u then
      for _, a in ipairs({ "--uid-map", "0:" .. u .. ":" .. s, "--gid-map", "0:" .. g .. ":" .. s }) do
        argv[#argv + 1] = a
      end
    end
    local bundle = H.tmpdir() .. "/bundle"
    for _, a in ipairs({ "--image", "oci:web", bundle }) do argv[#argv + 1] = a end
    local r = assert(ct.proc.run(argv, { cwd = dir, timeout = 120 }))
    assert.equals(0, r.code, r.stderr)
    assert(ct.fs.rename(bundle .. "/rootfs", dir .. "/rootfs"))
    local info = image_json(root, key)
    info.layers = nil
    assert(ct.fs.write_atomic(dir .. "/image.json", json.encode(info)))
    local relfile = ct.fs.realpath(root .. "/current-release") .. "/release.json"
    local rel = release_of(root)
    for _, a in ipairs(rel.apps) do if a.name == "web" then a.upper = nil end end
    assert(ct.fs.write_atomic(relfile, json.encode(rel)))

    local v = H.ctcli(root, { "images", "--verify" })
    assert.equals(0, v.code, v.stdout .. v.stderr)
    assert.truthy(v.stdout:find("its app changed nothing in it", 1, true), v.stdout)
    assert.same({}, diff_lines(root, "web"))
    -- The app wrote its image's rootfs (those roots let it).
    assert(ct.fs.write_atomic(dir .. "/rootfs/etc/written", "x\n"))
    assert(ct.fs.unlink(dir .. "/rootfs/bin/cat"))
    assert(ct.fs.symlink("/etc/shadow", dir .. "/rootfs/shadowlink"))
    -- and runc made its mount point there (not the app's change)
    assert(ct.fs.write_atomic(dir .. "/rootfs/etc/resolv.conf", ""))
    local want = { "C /bin", "D /bin/cat", "C /etc", "A /etc/written", "A /shadowlink" }
    assert.same(want, diff_lines(root, "web"))
    v = H.ctcli(root, { "images", "--verify" })
    assert.equals(0, v.code, "an app's changes are not a broken store: " .. v.stdout .. v.stderr)
    for _, l in ipairs(want) do assert.truthy(v.stdout:find("  " .. l .. "\n", 1, true), l .. " in " .. v.stdout) end
    local doc = H.json(root, { "images" })
    for _, im in ipairs(doc.images) do
      if im.app == "web" then
        assert.is_true(im.flat)
        assert.same({}, im.layers)
      end
    end
    assert.same({}, ct.fs.dir(root .. "/tmp"))
    -- reset unpacks such an image again and swaps its rootfs in: the app's
    -- changes are gone, nothing stays in tmp/
    H.ok(root, { "-y", "reset", "web" })
    assert.falsy(ct.fs.lstat(dir .. "/rootfs/etc/written"))
    assert.falsy(ct.fs.lstat(dir .. "/rootfs/shadowlink"))
    assert.truthy(ct.fs.lstat(dir .. "/rootfs/bin/cat"))
    assert.same({}, ct.fs.dir(root .. "/tmp"))
  end)

  it("prune after an upgrade removes the old image's layers and blobs, and keeps what a backup names", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local first = release_of(root).id
    local old_web = key_of(root, "web")
    local old_info = image_json(root, old_web)
    local old_layer = old_info.layers[2].diff_id:sub(8)
    H.ok(root, { "-y", "upgrade", "--keep", "10", v2 })
    assert.are_not.equals(old_web, key_of(root, "web"))
    assert.equals(5, count(layer_dirs(root)))
    -- A backup record naming the old web image (as a backup of the layer
    -- store writes it: its blobs by digest).
    local blobs = json.array()
    for _, l in ipairs(old_info.layers) do blobs[#blobs + 1] = l.blob end
    blobs[#blobs + 1] = old_info.config
    blobs[#blobs + 1] = old_info.manifest
    local name = "20260101T000000Z-" .. first
    assert(ct.fs.write_atomic(root .. "/releases/backups/" .. name .. ".tar.zst", ""))
    assert(ct.fs.write_atomic(root .. "/releases/backups/" .. name .. ".json", json.encode({
      archive = name .. ".tar.zst", created = "2026-01-01T00:00:00Z", release = first, reason = "manual",
      format = "ctcli-backup/1", data = false, images = { [old_web] = blobs },
    })))
    local held = H.json(root, { "images" })
    for _, im in ipairs(held.images) do
      if im.app .. "@" .. im.digest == old_web then
        local listed = {}
        for _, b in ipairs(im.backups) do listed[b] = true end
        assert.truthy(listed[name .. ".tar.zst"], "the hand-made backup record holds " .. old_web)
      end
    end

    -- And a staged release using it (releases/staged/<id>/, as 'stage'
    -- registers one: a release directory of its own).
    local staged = root .. "/releases/staged/" .. first
    assert(ct.fs.mkdir(root .. "/releases/staged", 448))
    assert(ct.fs.copytree(root .. "/releases/" .. first, staged))

    local out = H.json(root, { "prune", "--keep", "1" })
    assert.equals(1, #out.releases)
    assert.same({}, out.images, "the staged release and the backup hold the old web image")
    assert.same({}, out.layers)
    assert.same({}, out.blobs)
    assert.same({}, out.uppers, "the staged release names the old upper of web")
    local function still_there()
      assert.truthy(ct.fs.exists(root .. "/images/" .. old_web .. "/image.json"))
      assert.truthy(layer_dirs(root)[old_layer])
      for _, b in ipairs(blobs) do assert.truthy(ct.fs.exists(root .. "/blobs/sha256/" .. b:sub(8)), b) end
    end
    still_there()

    assert(ct.fs.rmtree(staged))
    out = H.json(root, { "prune", "--keep", "1" })
    assert.same({}, out.images, "the backup holds the old web image")
    assert.equals(1, #out.uppers, "the old release's upper of web goes")
    assert.equals("web", out.uppers[1].app)
    assert.equals(first, out.uppers[1].id)
    still_there()

    -- The backup gone, nothing holds it any more.
    H.ok(root, { "prune", "--backups", "--keep", "0" })
    out = H.json(root, { "prune", "--keep", "1" })
    assert.same({}, out.releases)
    assert.equals(1, #out.images)
    assert.equals("web", out.images[1].app)
    assert.equals(1, #out.layers)
    assert.equals("sha256:" .. old_layer, out.layers[1].diff_id)
    assert.truthy(out.layers[1].bytes > 0)
    assert.truthy(#out.blobs >= 3, "its layer, config and manifest blobs")
    local sum = 0
    for _, list in ipairs({ out.images, out.layers, out.blobs }) do
      for _, x in ipairs(list) do sum = sum + x.bytes end
    end
    assert.equals(sum, out.bytes)
    assert.falsy(ct.fs.exists(root .. "/images/" .. old_web))
    assert.falsy(layer_dirs(root)[old_layer])
    assert.equals(4, count(layer_dirs(root)))
    for _, b in ipairs(old_info.layers) do
      if b.diff_id:sub(8) == old_layer then assert.falsy(ct.fs.exists(root .. "/blobs/sha256/" .. b.blob:sub(8))) end
    end
    -- what runs is whole
    local v = H.ctcli(root, { "images", "--verify" })
    assert.equals(0, v.code, v.stdout .. v.stderr)
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("running", a.state, a.name) end
    H.ok(root, { "restart", "web" })
    assert.truthy(H.ok(root, { "prune" }):find("nothing to prune", 1, true))
    assert.same({}, ct.fs.dir(root .. "/tmp"))
  end)

  it("orders two releases of one second by which was made from which (prune keeps the newer)", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local first = release_of(root).id
    -- A release made in the same second as the first, from it, whose id
    -- sorts lower: what an upgrade right after an install can give.
    local second = first:match("^(%d+T%d+Z)%-") .. "-00000000"
    assert.truthy(second < first)
    assert(ct.fs.copytree(root .. "/releases/" .. first, root .. "/releases/" .. second))
    local file = root .. "/releases/" .. second .. "/release.json"
    local doc = json.decode(assert(ct.fs.read(file)))
    doc.id, doc.previous = second, first
    assert(ct.fs.write_atomic(file, json.encode(doc)))
    local listed = H.json(root, { "list-releases" }).releases
    assert.equals(second, listed[1].id)
    assert.equals(first, listed[2].id)
    -- keep 1 (and the current one, the first): the newer by making is not the one pruned
    local out = H.json(root, { "prune", "--keep", "1" })
    assert.same({}, out.releases)
    assert.truthy(ct.fs.exists(root .. "/releases/" .. second))
  end)
end)
