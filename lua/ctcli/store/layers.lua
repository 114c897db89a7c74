-- The layer store (issue 15; DESIGN "Settled — storage"): every compressed
-- blob once in blobs/sha256/, every OCI layer extracted once per id mapping
-- in layers/<mapping>/<diffhex>/ (never written after, only ever an overlay
-- lower), and each app's writable layer in uppers/<app>/<upper-id>/.
-- This module owns those three trees; store.lua keeps the images (an image
-- = its layer list + config) and overlay.lua the mounts.
local ct = require("ct")
local json = require("ctcli.base.json")
local rootconf = require("ctcli.store.rootconf")
local clock = require("ctcli.base.clock")
local scratch = require("ctcli.store.scratch")

local M = {}

local DIR_MODE = 448 -- 0700: only root walks in; the mapped ids reach files through the overlay
local UPPER_MODE = 456 -- 0710 root:<mapped gid>, as the dirs above a bundle

local function blobs_dir(paths) return paths.root .. "/blobs/sha256" end
local function layers_root(paths) return paths.root .. "/layers" end
local function uppers_root(paths) return paths.root .. "/uppers" end
M.uppers_root = uppers_root

local function hex(digest)
  return type(digest) == "string" and digest:match("^sha256:(%x+)$") or nil
end
M.hex = hex

-- mapping_name(m) -> "host" | "<uid>-<gid>" | "go": the directory of
-- layers/ a mapping's layers live in.
function M.mapping_name(m)
  if not m then return "host" end
  if m.go then return "go" end
  return string.format("%d-%d", m.uid, m.gid)
end

-- idmap_opt(m) -> ct.archive.extract's idmap option for mapping m (nil: ids kept).
local function idmap_opt(m)
  if not m or m.go then return nil end
  return { outside = m.uid, size = m.size }
end
M.idmap_opt = idmap_opt

-- compressed(media_type) -> whether a layer of that media type is gzip
-- or zstd already (OCI "+gzip"/"+zstd", Docker's "tar.gzip").
function M.compressed(media_type)
  return type(media_type) == "string" and (media_type:match("%+gzip$") or media_type:match("%+zstd$")
    or media_type:match("%.tar%.gzip$")) ~= nil
end

function M.blob_path(paths, digest)
  return blobs_dir(paths) .. "/" .. hex(digest)
end

function M.layer_dir(paths, m, diff_id)
  return layers_root(paths) .. "/" .. M.mapping_name(m) .. "/" .. hex(diff_id)
end

function M.has_layer(paths, m, diff_id)
  local d = M.layer_dir(paths, m, diff_id)
  return ct.fs.exists(d) and ct.fs.exists(d .. ".json")
end

-- mappings(paths) -> names of layers/'s mapping dirs (for the store commands).
function M.mappings(paths)
  return ct.fs.dir(layers_root(paths)) or {}
end

local function ensure_dir(path, mode)
  if ct.fs.exists(path) then return true end
  local ok, err = ct.fs.mkdir(path, mode, true)
  if not ok then return nil, err end
  return ct.fs.chmod(path, mode)
end

---------------------------------------------------------------------------
-- OCI layouts

local function read_json(file)
  local text, err = ct.fs.read(file)
  if not text then return nil, err end
  local doc, jerr = json.decode(text)
  if type(doc) ~= "table" then return nil, file .. ": not JSON (" .. tostring(jerr) .. ")" end
  return doc
end

-- checked(layout, digest, sha256) -> the blob's path once its content matches its digest.
local function checked(layout, digest, sha256)
  local h = hex(digest)
  if not h then return nil, "not a sha256 digest: " .. tostring(digest) end
  local file = layout .. "/blobs/sha256/" .. h
  local actual, err = sha256(file)
  if not actual then return nil, "blob " .. digest .. " is missing (" .. tostring(err) .. ")" end
  if actual ~= h then return nil, "blob " .. digest .. " does not match its digest (sha256:" .. actual .. ")" end
  return file
end

-- read_layout(layout, ref) -> image | nil, msg: the image ref names in an OCI
-- layout, every blob checked against its digest: {manifest_desc=, manifest=,
-- config=, config_digest=, layers = {{digest=, diff_id=, size=, media_type=}}}.
-- sha256: the hash function (default ct.hash.sha256_file; a package's
-- ctcli.base.filedigest memo reads a blob several layouts share once).
function M.read_layout(layout, ref, sha256)
  sha256 = sha256 or ct.hash.sha256_file
  local index, err = read_json(layout .. "/index.json")
  if not index then return nil, err end
  local desc
  for _, m in ipairs(type(index.manifests) == "table" and index.manifests or {}) do
    local ann = type(m.annotations) == "table" and m.annotations or {}
    if ann["org.opencontainers.image.ref.name"] == ref then desc = m end
  end
  if not desc then return nil, "the image layout has no ref '" .. tostring(ref) .. "'" end
  local file, ferr = checked(layout, desc.digest, sha256)
  if not file then return nil, ferr end
  local manifest, merr = read_json(file)
  if not manifest then return nil, merr end
  local platform_digest
  if type(manifest.manifests) == "table" then
    -- An index of platforms: this machine's (amd64 and arm64 hosts run linux images).
    local arch = ({ x86_64 = "amd64", aarch64 = "arm64" })[(ct.fs.read("/proc/sys/kernel/arch") or ""):match("%S+")]
    local pick
    for _, m in ipairs(manifest.manifests) do
      local p = type(m.platform) == "table" and m.platform or {}
      if p.os == "linux" and (p.architecture == arch or not arch) and not pick then pick = m end
    end
    if not pick then return nil, "the image index has no linux/" .. tostring(arch) .. " manifest" end
    platform_digest = pick.digest
    file, ferr = checked(layout, pick.digest, sha256)
    if not file then return nil, ferr end
    manifest, merr = read_json(file)
    if not manifest then return nil, merr end
  end
  if type(manifest.config) ~= "table" or type(manifest.layers) ~= "table" then
    return nil, "not an image manifest (no config and layers)"
  end
  local cfile, cerr = checked(layout, manifest.config.digest, sha256)
  if not cfile then return nil, cerr end
  local config, jerr = read_json(cfile)
  if not config then return nil, jerr end
  local diff_ids = type(config.rootfs) == "table" and config.rootfs.diff_ids or {}
  if #diff_ids ~= #manifest.layers then
    return nil, string.format("the image config names %d diff_ids for %d layers", #diff_ids, #manifest.layers)
  end
  local layers = json.array()
  local blobs = { desc.digest, manifest.config.digest }
  if platform_digest then blobs[#blobs + 1] = platform_digest end
  for i, l in ipairs(manifest.layers) do
    local _, lerr = checked(layout, l.digest, sha256)
    if lerr then return nil, "layer " .. i .. ": " .. lerr end
    if not hex(diff_ids[i]) then return nil, "layer " .. i .. ": diff_id " .. tostring(diff_ids[i]) .. " is not sha256" end
    layers[i] = { digest = l.digest, diff_id = diff_ids[i], size = l.size, media_type = l.mediaType }
    blobs[#blobs + 1] = l.digest
  end
  return {
    manifest_desc = desc, manifest = manifest, manifest_digest = desc.digest,
    config = config, config_digest = manifest.config.digest, layers = layers,
    blobs = blobs,
  }
end

-- store_blobs(paths, layout, digests [, added]) -> true | nil, msg: each
-- blob into blobs/sha256/ (a hard link where it can, else a copy), once.
function M.store_blobs(paths, layout, digests, added)
  local ok, err = ensure_dir(blobs_dir(paths), DIR_MODE)
  if not ok then return nil, err end
  ct.fs.chmod(paths.root .. "/blobs", DIR_MODE)
  for _, d in ipairs(digests) do
    local to = M.blob_path(paths, d)
    if not ct.fs.exists(to) then
      local from = layout .. "/blobs/sha256/" .. hex(d)
      -- Through tmp/: a copy cut short never sits under its digest's name.
      local tmp = paths.tmp .. "/blob-" .. hex(d)
      ct.fs.unlink(tmp)
      if not ct.fs.link(from, tmp) then
        ok, err = ct.fs.copyfile(from, tmp, 420)
        if not ok then return nil, err end
      end
      ct.fs.chmod(tmp, 420)
      ok, err = ct.fs.rename(tmp, to)
      if not ok then ct.fs.unlink(tmp) return nil, err end
      if added then added[#added + 1] = to end
    end
  end
  return true
end

-- write_layout(paths, dest, image) -> true | nil, msg: an OCI layout at dest
-- (index.json, oci-layout, blobs as hard links of the store's) holding only
-- this image, for `reset` of a flat image and `images --verify`. write:
-- how its two files are written (default ct.fs.write_atomic).
function M.write_layout(paths, dest, image, write)
  write = write or ct.fs.write_atomic
  local ok, err = ct.fs.mkdir(dest .. "/blobs/sha256", 493, true)
  if not ok then return nil, err end
  for _, d in ipairs(image.blobs) do
    local to = dest .. "/blobs/sha256/" .. hex(d)
    if not ct.fs.exists(to) and not ct.fs.link(M.blob_path(paths, d), to) then
      ok, err = ct.fs.copyfile(M.blob_path(paths, d), to, 420)
      if not ok then return nil, err end
    end
  end
  ok, err = write(dest .. "/oci-layout", '{"imageLayoutVersion":"1.0.0"}\n', 420)
  if ok then
    ok, err = write(dest .. "/index.json",
      json.encode({ schemaVersion = 2, manifests = json.array({ image.manifest_desc }) }) .. "\n", 420)
  end
  return ok, err
end

---------------------------------------------------------------------------
-- Extracting layers

-- extract(paths, layer, m, added) -> true | nil, msg: one layer into
-- layers/<mapping>/<diffhex>, in tmp/ first with its record, flushed to
-- disk, then renamed in (a layer dir that exists is complete and whole
-- after a crash; its record is renamed last). added: a list the paths it
-- made are appended to (so a command that fails can take them back).
-- progress(layer, compressed bytes read): a bar's feed, or nil.
function M.extract(paths, layer, m, added, progress)
  if M.has_layer(paths, m, layer.diff_id) then return true end
  local final = M.layer_dir(paths, m, layer.diff_id)
  local ok, err = ensure_dir(layers_root(paths), DIR_MODE)
  if ok then ok, err = ensure_dir(final:match("^(.*)/[^/]+$"), DIR_MODE) end
  if not ok then return nil, err end
  local tmp, terr = ct.fs.mkdtemp(paths.tmp .. "/layer-XXXXXX")
  if not tmp then return nil, terr end
  local function fail(e) ct.fs.rmtree(tmp) return nil, e end
  local tree = tmp .. "/tree"
  local stats = {}
  local made = not ct.fs.exists(final)
  if made then
    ct.fs.mkdir(tree, 493)
    -- Device nodes, fifos and sockets of an image are left out (runc gives
    -- every container its own /dev), counted in the layer's record. Written
    -- back as extracted: the flush below then waits for the tail only.
    local xerr
    stats, xerr = ct.archive.extract(M.blob_path(paths, layer.digest), tree, {
      preserve = true, whiteouts = "overlay", idmap = idmap_opt(m), check_space = true, special = "skip",
      writeback = true, tree_digest = true,
      progress = progress and function(_, read) progress(layer, read) end,
    })
    if not stats then return fail("extracting layer " .. layer.diff_id .. ": " .. tostring(xerr)) end
  end
  -- ct.fs.tree_digest of the tree, its files hashed as they were written
  -- (made now), or read (a layer dir of an earlier run without its record).
  local digest, derr = stats.tree, nil
  if not digest then digest, derr = ct.fs.tree_digest(final) end
  if not digest then return fail(derr) end
  ok, err = scratch.write(tmp .. "/record", json.encode({
    diff_id = layer.diff_id, blob = layer.digest, media_type = layer.media_type or json.null,
    bytes = stats.bytes or json.null, files = stats.entries or json.null, tree = digest,
    skipped = json.array(stats.skipped or {}),
  }, true) .. "\n", 420)
  if ok then ok, err = scratch.flush(paths) end
  if ok and made then
    ok, err = ct.fs.rename(tree, final)
    if ok and added then added[#added + 1] = final end
  end
  if ok then
    ok, err = ct.fs.rename(tmp .. "/record", final .. ".json")
    if ok and added then added[#added + 1] = final .. ".json" end
  end
  if ok then ok, err = ct.fs.fsync(final:match("^(.*)/[^/]+$")) end
  ct.fs.rmtree(tmp)
  return ok, err
end

-- ensure(paths, layers, m [, added, progress]) -> true | nil, msg: every layer of the list in
-- mapping m, extracted from the store's blobs where missing. One at a time:
-- the extraction is I/O bound, and a layer shared by several images is then
-- extracted once even within one command.
function M.ensure(paths, layers, m, added, progress)
  for _, l in ipairs(layers) do
    if not M.has_layer(paths, m, l.diff_id) then
      if not ct.fs.exists(M.blob_path(paths, l.digest)) then
        return nil, "the store has no blob " .. l.digest .. " for layer " .. l.diff_id
      end
      local ok, err = M.extract(paths, l, m, added, progress)
      if not ok then return nil, err end
    end
  end
  return true
end

-- skipped(paths, layers, m) -> how many device nodes, fifos and sockets
-- the extraction of these layers left out (their records say).
function M.skipped(paths, layers, m)
  local n = 0
  for _, l in ipairs(layers) do
    local rec = read_json(M.layer_dir(paths, m, l.diff_id) .. ".json")
    n = n + (type(rec) == "table" and type(rec.skipped) == "table" and #rec.skipped or 0)
  end
  return n
end

-- lowers(paths, layers, m) -> the layer dirs, top first (overlay's order).
function M.lowers(paths, layers, m)
  local out = {}
  for i = #layers, 1, -1 do out[#out + 1] = M.layer_dir(paths, m, layers[i].diff_id) end
  return out
end

-- find(paths, layers, m, path) -> the layer dir whose copy of path (absolute,
-- in the image) the image shows, or nil: the top-most layer holding it,
-- unless a layer above whites it (or a parent of it) out.
function M.find(paths, layers, m, path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do parts[#parts + 1] = seg end
  for _, dir in ipairs(M.lowers(paths, layers, m)) do
    local sub = dir
    for i, seg in ipairs(parts) do
      sub = sub .. "/" .. seg
      local st = ct.fs.lstat(sub)
      if not st then break end
      if st.type == "char" then return nil end -- a whiteout: gone from the image
      if i == #parts then return dir end
      if st.type ~= "dir" then break end
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- Overlay mounts of the layers (an app's rootfs: runtime/overlay.lua)

-- Always off: an upper is tarred into backups and compared by `diff`, so it
-- must hold plain copies and no redirects, and one lower is mounted under
-- many uppers.
local OVL_FIXED = ",index=off,metacopy=off,redirect_dir=off"
local OVL_OPTS_MAX = 4095 -- mount(2) copies one page of options, NUL included

-- A path overlayfs can take in its options: absolute, no separator of the
-- option string or of lowerdir.
local function ovl_bad_path(p)
  if type(p) ~= "string" or p:sub(1, 1) ~= "/" then return "is not an absolute path" end
  if p:find("[,:\\\n]") then return "holds ',', ':', '\\' or a newline, which overlayfs options cannot carry" end
  return nil
end

-- The directory every lower is beneath ("/a/b" for "/a/b/x", "/a/b/y/z"), or nil.
local function common_dir(lower)
  local common = lower[1]:match("^(.*)/[^/]+$")
  for i = 2, #lower do
    while common and common ~= "" and lower[i]:sub(1, #common + 1) ~= common .. "/" do
      common = common:match("^(.*)/[^/]*$")
    end
  end
  if common == "" then return nil end
  return common
end

-- mount_overlay{lower={dirs, top first}, upper=, work=, target=} -> true |
-- nil, msg, errno; without upper and work a read-only overlay of the
-- lowers. When the absolute lowers overflow mount(2)'s page they are given
-- relative to their common directory, the working directory for the call.
function M.mount_overlay(s)
  assert(type(s.lower) == "table" and #s.lower >= 1 and #s.lower <= 500, "mount_overlay: 1 to 500 lowers")
  assert((s.upper == nil) == (s.work == nil), "mount_overlay: upper and work go together")
  local checks = { { "target", s.target }, { "upper", s.upper }, { "work", s.work } }
  for _, l in ipairs(s.lower) do checks[#checks + 1] = { "lower", l } end
  for _, c in ipairs(checks) do
    local why = (c[2] ~= nil or c[1] == "target") and ovl_bad_path(c[2])
    if why then return nil, string.format("overlay %s %s: %s", c[1], tostring(c[2]), why), ct.fs.errno.EINVAL end
  end
  local function options(lower)
    local o = "lowerdir=" .. table.concat(lower, ":")
    if s.upper then o = o .. ",upperdir=" .. s.upper .. ",workdir=" .. s.work end
    return o .. OVL_FIXED
  end
  local data, cwd = options(s.lower), nil
  if #data > OVL_OPTS_MAX then
    cwd = common_dir(s.lower)
    if cwd then
      local rel = {}
      for i, l in ipairs(s.lower) do rel[i] = l:sub(#cwd + 2) end
      data = options(rel)
    end
    if #data > OVL_OPTS_MAX then
      return nil, string.format("overlay on %s: %d layers give options of %d bytes, more than %d",
        s.target, #s.lower, #data, OVL_OPTS_MAX), ct.fs.errno.E2BIG
    end
  end
  return ct.fs.mount("overlay", s.target, "overlay", data, { rdonly = s.upper == nil, cwd = cwd })
end

---------------------------------------------------------------------------
-- Whether overlayfs can be used (probed once per root)

local function storage_file(paths) return paths.state .. "/storage.json" end

-- storage(paths [, probe]) -> "overlay" | "copy", why: ctcli.json may force
-- the copy; else state/storage.json's record of the probe, made now when
-- probe is true (a holder of the lock: it uses tmp/) and there is none.
function M.storage(paths, probe)
  local conf = rootconf.load(paths) or {}
  if type(conf.storage) == "table" and conf.storage.overlay == false then
    return "copy", "forced by ctcli.json (\"storage\": {\"overlay\": false})"
  end
  local rec = read_json(storage_file(paths))
  if type(rec) == "table" and type(rec.overlay) == "boolean" then
    return rec.overlay and "overlay" or "copy", rec.reason
  end
  if not probe then return "overlay", "not probed yet" end
  local reason
  local dir = ct.fs.mkdtemp(paths.tmp .. "/probe-XXXXXX")
  local ok = false
  if dir then
    for _, d in ipairs({ "lower", "upper", "work", "merged" }) do ct.fs.mkdir(dir .. "/" .. d, 448) end
    local mok, merr = M.mount_overlay({ lower = { dir .. "/lower" }, upper = dir .. "/upper",
      work = dir .. "/work", target = dir .. "/merged" })
    if mok then
      ok = true
      ct.fs.umount(dir .. "/merged", { detach = true })
    else
      reason = "overlayfs cannot be mounted here: " .. tostring(merr)
    end
  end
  if dir then ct.fs.rmtree(dir) end
  reason = reason or "overlayfs mounts here"
  ct.fs.write_atomic(storage_file(paths), json.encode({
    overlay = ok, reason = reason, checked = clock.iso(),
  }, true) .. "\n", 420)
  return ok and "overlay" or "copy", reason
end

---------------------------------------------------------------------------
-- Uppers: an app's writable layer, uppers/<app>/<id>/ (see ctcli.runtime.overlay)

function M.upper_dir(paths, app_name, id)
  return uppers_root(paths) .. "/" .. app_name .. "/" .. id
end

-- upper_info(paths, app_name, id) -> upper.json ({app=, image=<key>,
-- kind="overlay"|"copy"}) | nil
function M.upper_info(paths, app_name, id)
  return read_json(M.upper_dir(paths, app_name, id) .. "/upper.json")
end

-- uppers(paths, app_name) -> the upper ids an app has.
function M.uppers(paths, app_name)
  return ct.fs.dir(uppers_root(paths) .. "/" .. app_name) or {}
end

-- create_upper(paths, a) -> dir | nil, msg where a = {app=, id=, key=,
-- layers=, idmap=}: an empty writable layer (overlay mode), or the app's
-- own copy of the image's layers (copy mode), made in tmp/ and renamed in.
-- One that exists is kept (the id is its release's).
function M.create_upper(paths, a)
  local final = M.upper_dir(paths, a.app, a.id)
  if ct.fs.exists(final .. "/upper.json") then return final end
  local m = a.idmap
  local gid = m and m.gid or 0
  local kind = M.storage(paths, true)
  local ok, err = ensure_dir(uppers_root(paths), UPPER_MODE)
  if ok then ok, err = ensure_dir(uppers_root(paths) .. "/" .. a.app, UPPER_MODE) end
  if not ok then return nil, err end
  local tmp, terr = ct.fs.mkdtemp(paths.tmp .. "/upper-" .. a.app .. "-XXXXXX")
  if not tmp then return nil, terr end
  local function fail(e) ct.fs.rmtree(tmp) return nil, e end
  ok, err = ct.fs.chmod(tmp, UPPER_MODE)
  if ok then ok, err = ct.fs.lchown(tmp, 0, gid) end
  if not ok then return fail(err) end
  local top = kind == "overlay" and "upper" or "rootfs"
  ok, err = ct.fs.mkdir(tmp .. "/" .. top, 493)
  if ok then ok, err = ct.fs.lchown(tmp .. "/" .. top, m and m.uid or 0, gid) end
  if ok and kind == "overlay" then
    ok, err = ct.fs.mkdir(tmp .. "/work", 448)
    if ok then ok, err = ct.fs.mkdir(tmp .. "/merged", 493) end
  elseif ok then
    -- Without overlayfs: the app's own copy, the layers applied in order.
    for _, l in ipairs(a.layers) do
      local stats, xerr = ct.archive.extract(M.blob_path(paths, l.digest), tmp .. "/rootfs",
        { preserve = true, whiteouts = "apply", idmap = idmap_opt(m), check_space = true, special = "skip",
          writeback = true })
      if not stats then return fail("copying the image of " .. a.app .. ": " .. tostring(xerr)) end
    end
  end
  if not ok then return fail(err) end
  ok, err = scratch.write(tmp .. "/upper.json", json.encode({
    app = a.app, image = a.key, kind = kind, created = clock.iso(),
  }, true) .. "\n", 420)
  if ok then ok, err = scratch.write(tmp .. "/idmap", require("ctcli.store.idmap").image_idmap_text(m), 420) end
  if ok then ok, err = scratch.flush(paths) end
  if ok then ok, err = ct.fs.rename(tmp, final) end
  if not ok then return fail(err) end
  ct.fs.fsync(uppers_root(paths) .. "/" .. a.app)
  return final
end

-- root_path(paths, app_name, id) -> the bundle's root.path of an app's
-- upper: merged/ (overlay) or rootfs/ (own copy).
function M.root_path(paths, app_name, id)
  local dir = M.upper_dir(paths, app_name, id)
  if ct.fs.exists(dir .. "/rootfs") then return dir .. "/rootfs" end
  return dir .. "/merged"
end

-- top(paths, app_name, id) -> "upper" | "rootfs": the tree of an upper the app writes.
function M.top(paths, app_name, id)
  if ct.fs.exists(M.upper_dir(paths, app_name, id) .. "/rootfs") then return "rootfs" end
  return "upper"
end

-- remove_all(paths): the uppers, layers and blobs gone (`delete`: the
-- apps are stopped); an upper still mounted (unmounting failed) stays, so
-- nothing is removed through a mount.
function M.remove_all(paths)
  for _, name in ipairs(ct.fs.dir(uppers_root(paths)) or {}) do
    for _, id in ipairs(M.uppers(paths, name)) do
      local dir = M.upper_dir(paths, name, id)
      if ct.fs.mounted(dir .. "/merged") then ct.fs.umount(dir .. "/merged", { detach = true }) end
      if not ct.fs.mounted(dir .. "/merged") then ct.fs.rmtree(dir) end
    end
    ct.fs.rmdir(uppers_root(paths) .. "/" .. name)
  end
  ct.fs.rmtree(layers_root(paths))
  ct.fs.rmtree(paths.root .. "/blobs")
end

return M
