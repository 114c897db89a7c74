-- Apps built on one base carry its blob once: mkpkg and `pack` write every
-- later copy as a tar hard link to the first; install extracts the links,
-- checks the blob once and extracts its layer once. Package extraction still
-- refuses a hard link leading out of the package, and a blob hard-linked
-- under another blob's name is refused by its digest: the root unchanged.
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

local ARGS = { "--format", "manifest", "--app", "web:health=none", "--app", "api:health=none",
  "--app", "worker:health=none" }

-- hardlinks(pkg) -> {[name] = target} of the archive's hard link entries
local function hardlinks(pkg)
  local out = {}
  for _, e in ipairs(assert(ct.archive.list(pkg))) do
    if e.type == "hardlink" then out[e.name] = e.link end
  end
  return out
end

local count = H.count

-- base_blob(dir) -> the hex of the blob every layout under dir/images holds
local function base_blob(dir)
  local seen = {}
  for _, app in ipairs(ct.fs.dir(dir .. "/images")) do
    for _, h in ipairs(ct.fs.dir(dir .. "/images/" .. app .. "/blobs/sha256")) do
      seen[h] = (seen[h] or 0) + 1
    end
  end
  for h, n in pairs(seen) do
    if n == 3 then return h end
  end
end

-- extracted(pkg) -> a directory holding the package's content
local function extracted(pkg)
  local dir = H.tmpdir() .. "/pkg"
  assert(ct.fs.mkdir(dir, 493))
  assert(ct.archive.extract(pkg, dir, { special = "refuse" }))
  return dir
end

local function layer_count(root)
  local n = 0
  for _, m in ipairs(ct.fs.dir(root .. "/layers") or {}) do
    for _, name in ipairs(ct.fs.dir(root .. "/layers/" .. m)) do
      if not name:match("%.json$") then n = n + 1 end
    end
  end
  return n
end

-- installed(pkg): install --no-start into a fresh root; the base layer is
-- extracted once, every blob stored once, the store verifies.
local function installed(pkg)
  local root = H.root()
  H.ok(root, { "install", "--no-start", pkg })
  assert.same({}, ct.fs.dir(root .. "/tmp"))
  -- three images of two layers each, one layer shared
  assert.equals(4, layer_count(root))
  H.ok(root, { "images", "--verify" })
  return root
end

describe("shared blobs", function()
  teardown(H.cleanup)

  it("mkpkg carries the base once; the package installs", function()
    local pkg = H.package(ARGS)
    local links = hardlinks(pkg)
    assert.equals(2, count(links), "the web and worker layouts link the base to api's")
    for name, target in pairs(links) do
      assert.truthy(name:match("^images/[a-z]+/blobs/sha256/%x+$"), name)
      assert.equals(name:match("[^/]+$"), target:match("[^/]+$"))
      assert.truthy(target:match("^images/api/"), target)
    end
    local root = installed(pkg)
    H.ok(root, { "verify", pkg })
  end)

  it("pack writes equal blobs of separate layouts once, as hard links", function()
    local dir = extracted(H.package(ARGS))
    local base = base_blob(dir)
    assert.truthy(base)
    -- Three separate files, as a release engineer's directory holds them.
    for _, app in ipairs({ "web", "worker" }) do
      local f = dir .. "/images/" .. app .. "/blobs/sha256/" .. base
      assert(ct.fs.copyfile(f, f .. ".copy", 420))
      assert(ct.fs.rename(f .. ".copy", f))
    end
    assert.equals(1, ct.fs.lstat(dir .. "/images/web/blobs/sha256/" .. base).nlink)
    ct.fs.unlink(dir .. "/manifest.sig")
    local out = H.tmpdir() .. "/packed.pkg"
    H.ok(nil, { "pack", dir, "-o", out })
    assert.same({
      ["images/web/blobs/sha256/" .. base] = "images/api/blobs/sha256/" .. base,
      ["images/worker/blobs/sha256/" .. base] = "images/api/blobs/sha256/" .. base,
    }, hardlinks(out))
    -- one copy of the base in the archive: about a third of three
    local size = ct.fs.lstat(out).size
    local base_size = ct.fs.lstat(dir .. "/images/api/blobs/sha256/" .. base).size
    assert.is_true(size < 2 * base_size + 64 * 1024, "packed " .. size .. " for a base of " .. base_size)
    H.ok(nil, { "verify", out })
    installed(out)
    -- Packing again gives the same bytes.
    local again = H.tmpdir() .. "/again.pkg"
    H.ok(nil, { "pack", dir, "-o", again })
    assert.equals(ct.hash.sha256_file(out), ct.hash.sha256_file(again))
  end)

  it("ct.archive.create's links name archive members only", function()
    local dir = H.tmpdir()
    assert(ct.fs.write_atomic(dir .. "/a", "same\n"))
    assert(ct.fs.write_atomic(dir .. "/b", "same\n"))
    local out = dir .. "/out.tar"
    local res, err = ct.archive.create(out, { { name = "x/a", path = dir .. "/a" }, { name = "x/b", path = dir .. "/b" } },
      { format = "none", links = { ["x/b"] = "../x/a" } })
    assert.is_nil(res)
    assert.truthy(err:find("links[x/b]", 1, true) and err:find("'..'", 1, true), err)
    assert.is_falsy(ct.fs.lstat(out))
    assert(ct.archive.create(out, { { name = "x/a", path = dir .. "/a" }, { name = "x/b", path = dir .. "/b" } },
      { format = "none", links = { ["x/b"] = "x/a" } }))
    assert.same({ ["x/b"] = "x/a" }, hardlinks(out))
    local into = dir .. "/into"
    assert(ct.fs.mkdir(into, 493))
    assert(ct.archive.extract(out, into))
    local sa, sb = ct.fs.lstat(into .. "/x/a"), ct.fs.lstat(into .. "/x/b")
    assert.equals(sa.ino, sb.ino)
    assert.equals("same\n", ct.fs.read(into .. "/x/b"))
  end)

  -- A fresh root with a canary beside it; the package refused, nothing changed.
  local function refused(pkg, words)
    local root = H.root()
    local canary = root:gsub("/root$", "") .. "/canary"
    assert(ct.fs.mkdir(canary, 493))
    assert(ct.fs.write_atomic(canary .. "/secret", "keep me\n"))
    local before, canary_before = H.root_hash(root), H.tree_hash(canary)
    local r = H.ctcli(root, { "install", "--no-start", pkg })
    assert.equals(1, r.code, r.stdout .. r.stderr)
    for _, w in ipairs(words) do
      assert.truthy(r.stderr:find(w, 1, true), "missing '" .. w .. "' in: " .. r.stderr)
    end
    assert.equals(before, (H.root_hash(root)))
    assert.equals(canary_before, (H.tree_hash(canary)))
    assert.same({}, ct.fs.dir(root .. "/tmp"))
  end

  it("refuses a shared blob hard-linked out of the package", function()
    local pkg = H.package(ARGS)
    local base = base_blob(extracted(pkg))
    local out = H.tmpdir() .. "/escape.pkg"
    -- Python's tarfile writes what no ctcli writer would: a link target with '..'.
    local r = assert(ct.proc.run({ "python3", "-c", [[
import sys, tarfile
src, dst, name, target = sys.argv[1:]
with tarfile.open(src) as i, tarfile.open(dst, "w:gz") as o:
    for m in i.getmembers():
        if m.name == name:
            m.type, m.linkname, m.size = tarfile.LNKTYPE, target, 0
            o.addfile(m)
        else:
            o.addfile(m, i.extractfile(m) if m.isfile() else None)
]], pkg, out, "images/web/blobs/sha256/" .. base, "../../../canary/secret" }))
    assert.equals(0, r.code, r.stderr)
    assert.equals("../../../canary/secret", hardlinks(out)["images/web/blobs/sha256/" .. base])
    refused(out, { "escape.pkg", "images/web/blobs/sha256/" .. base, "hard link to ../../../canary/secret" })
  end)

  it("refuses a blob hard-linked under another blob's name", function()
    local dir = extracted(H.package(ARGS))
    local function config_of(app)
      local index = assert(require("ctcli.base.json").decode(ct.fs.read(dir .. "/images/" .. app .. "/index.json")))
      local mf = require("ctcli.base.json").decode(ct.fs.read(dir .. "/images/" .. app .. "/blobs/sha256/"
        .. index.manifests[1].digest:sub(8)))
      return mf.config.digest:sub(8)
    end
    -- web's config blob becomes a link to api's (same size class, other content).
    local name = "images/web/blobs/sha256/" .. config_of("web")
    local out = H.tmpdir() .. "/swapped.pkg"
    assert(ct.archive.create(out, {
      { name = "manifest.json", path = dir .. "/manifest.json" },
      { name = "images", path = dir .. "/images" },
    }, { format = "gzip", owner0 = true, links = { [name] = "images/api/blobs/sha256/" .. config_of("api") } }))
    assert.truthy(hardlinks(out)[name])
    refused(out, { "swapped.pkg", "app web", config_of("web"), "does not match its digest" })
  end)
end)
