-- Backups as the store keeps them: releases/backups/<stamp>-<reason>-<id>.tar.*
-- beside its record, the checks a restore makes of an extracted backup
-- before anything is replaced, placing its images and writable layers back
-- into the store, listing, what backups hold, retention. Making one and
-- putting data back (pausing the apps) is ctcli.services.backup's.
local ct = require("ct")
local history = require("ctcli.store.history")
local json = require("ctcli.base.json")
local report = require("ctcli.base.report")
local layers = require("ctcli.store.layers")
local manifest = require("ctcli.model.manifest")
local statefile = require("ctcli.base.statefile")
local release = require("ctcli.store.release")
local store = require("ctcli.store.images")
local idmap = require("ctcli.store.idmap")
local clock = require("ctcli.base.clock")

local M = {}
local check_store

M.FORMAT = "ctcli-backup/1"

-- What a restore trusts. A backup is not signed: it is checked as strictly
-- as its content allows before anything of it leaves tmp/ (check_restore).
M.RELEASE_ID = "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x%x%x$"
-- name -> the type it must have; nothing else may be at the top.
local TOP = { ["backup-info.json"] = "file", ["current-release"] = "dir", config = "dir", data = "dir", images = "dir",
  [history.FILE] = "file", blobs = "dir", uppers = "dir" }
local RELEASE_TOP = { ["release.json"] = "file", apps = "dir", hooks = "dir", bin = "dir" }
local TYPE_WORD = { file = "a regular file", dir = "a directory" }

local function expect(dir, rel, want)
  local st = ct.fs.lstat(dir .. "/" .. rel)
  if not st then return nil, rel .. ": missing" end
  if st.type ~= want then return nil, rel .. ": expected " .. TYPE_WORD[want] .. ", found a " .. st.type end
  return true
end

-- Only the names of `allowed` (name -> type) under dir/rel, each of its type.
local function only(dir, rel, allowed, what)
  for _, name in ipairs(ct.fs.dir(dir .. "/" .. rel) or {}) do
    local want = allowed(name)
    local path = rel == "" and name or (rel .. "/" .. name)
    if not want then return nil, path .. ": not part of " .. what end
    local ok, err = expect(dir, path, want)
    if not ok then return nil, err end
  end
  return true
end

-- No special file, and no setuid or setgid file outside the image trees
-- (an image needs its own; nothing else may carry one onto the host). An
-- app may have made one in its data: the bit is taken off (in tmp/, which
-- no container sees) rather than the restore refused, so nothing an app
-- plants can block the operator's way back. A setgid directory (group
-- inheritance) is kept.
-- An image's rootfs and an app's writable layer keep their setuid bits; the
-- writable layer of overlayfs holds its whiteouts (character devices 0:0,
-- the only node the extraction of uppers/ makes, from ".wh." entries).
local function image_tree(path)
  return path:match("^images/[^/]+/rootfs$") or path:match("^uppers/[^/]+/[^/]+/rootfs$")
    or path:match("^uppers/[^/]+/[^/]+/upper$")
end

local function walk_special(dir, rel, in_rootfs)
  local in_upper = in_rootfs and (rel .. "/"):match("^uppers/[^/]+/[^/]+/upper/") ~= nil
  for _, name in ipairs(ct.fs.dir(dir .. "/" .. rel) or {}) do
    local path = rel == "" and name or (rel .. "/" .. name)
    local st = ct.fs.lstat(dir .. "/" .. path)
    if not st then return nil, path .. ": cannot be read" end
    if st.type == "char" and in_upper then
      st = { type = "file", mode = 0 }
    elseif st.type ~= "file" and st.type ~= "dir" and st.type ~= "link" then
      return nil, path .. ": a " .. st.type .. " (a backup holds no special files)"
    end
    if not in_rootfs and st.type == "file" and (st.mode & 3072) ~= 0 then
      local ok, err = ct.fs.chmod(dir .. "/" .. path, st.mode & 1023)
      if not ok then return nil, err end
    end
    if st.type == "dir" then
      local ok, err = walk_special(dir, path, in_rootfs or image_tree(path) ~= nil)
      if not ok then return nil, err end
    end
  end
  return true
end

-- check_store(dir, info, by_name) -> true | nil, why: the layer store's
-- part of a backup. blobs/sha256/ holds files named by their digest, each
-- matching it; every image of layers has a blob list (backup-info.json
-- "images") naming blobs the backup holds, which covers its record's
-- manifest, config and layers; uppers/<app>/<id>/ is the writable layer the
-- backed-up release names for that app: upper.json, idmap, and upper/ or
-- (without overlayfs) rootfs/.
function check_store(dir, info, by_name)
  local ok, err = only(dir, "blobs", function(n) return n == "sha256" and "dir" end, "the blobs")
  if not ok then return nil, err end
  local have = {}
  for _, h in ipairs(ct.fs.dir(dir .. "/blobs/sha256") or {}) do
    if not h:match("^%x+$") or #h ~= 64 then return nil, "blobs/sha256/" .. h .. ": not a sha256 digest" end
    ok, err = expect(dir, "blobs/sha256/" .. h, "file")
    if not ok then return nil, err end
    local actual = ct.hash.sha256_file(dir .. "/blobs/sha256/" .. h)
    if actual ~= h then
      return nil, "blobs/sha256/" .. h .. ": does not match its digest (sha256:" .. tostring(actual) .. ")"
    end
    have["sha256:" .. h] = true
  end
  if info.images ~= nil and type(info.images) ~= "table" then
    return nil, "backup-info.json: \"images\" is not an object of blob lists"
  end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    local idir = dir .. "/images/" .. key
    local rec = json.decode(ct.fs.read(idir .. "/image.json") or "")
    if type(rec) ~= "table" then return nil, "images/" .. key .. "/image.json: not a JSON object" end
    if store.layered(rec) and not ct.fs.exists(idir .. "/oci/blobs") then
      local list = info.images and info.images[key]
      if type(list) ~= "table" then return nil, "backup-info.json: no blob list for the image " .. key end
      ok, err = only(dir, "images/" .. key .. "/oci", function(n)
        return (n == "index.json" or n == "oci-layout") and "file"
      end, "an image's index")
      if not ok then return nil, err end
      local listed = {}
      for _, d in ipairs(list) do
        if type(d) ~= "string" or not have[d] then
          return nil, "the backup lacks the blob " .. tostring(d) .. " of the image " .. key
        end
        listed[d] = true
      end
      local needed = { rec.manifest, rec.config }
      for _, l in ipairs(rec.layers) do needed[#needed + 1] = type(l) == "table" and l.blob or nil end
      for _, d in ipairs(needed) do
        if not listed[d] then return nil, "images/" .. key .. ": its blob " .. tostring(d) .. " is not in its list" end
      end
    end
  end
  ok, err = only(dir, "uppers", function(n) return by_name[n] and by_name[n].upper and "dir" end,
    "the writable layers of the backed-up release's apps")
  if not ok then return nil, err end
  for _, app in ipairs(ct.fs.dir(dir .. "/uppers") or {}) do
    local id = by_name[app].upper
    ok, err = only(dir, "uppers/" .. app, function(n) return n == id and "dir" end, "the writable layer of " .. app)
    if not ok then return nil, err end
    local rel = "uppers/" .. app .. "/" .. id
    ok, err = only(dir, rel, function(n)
      return ((n == "upper" or n == "rootfs") and "dir") or ((n == "upper.json" or n == "idmap") and "file") or nil
    end, "a writable layer")
    if ok then ok, err = expect(dir, rel .. "/upper.json", "file") end
    if not ok then return nil, err end
    local u = json.decode(ct.fs.read(dir .. "/" .. rel .. "/upper.json") or "")
    local key = store.key(app, by_name[app].image.digest)
    if type(u) ~= "table" or u.image ~= key then
      return nil, rel .. "/upper.json: not the writable layer of " .. key
    end
    if ct.fs.exists(dir .. "/" .. rel .. "/upper") == ct.fs.exists(dir .. "/" .. rel .. "/rootfs") then
      return nil, rel .. ": expected upper/ or rootfs/"
    end
  end
  return true
end

-- check_restore(dir) -> info, rel | nil, why: a backup extracted into dir
-- holds only what create writes, with ids and names valid as a package's
-- manifest must have them, and metadata that matches its content.
function M.check_restore(dir)
  local ok, err = only(dir, "", function(n) return TOP[n] end, "a ctcli backup")
  if not ok then return nil, err end
  local info = json.decode(ct.fs.read(dir .. "/backup-info.json") or "")
  if type(info) ~= "table" then return nil, "backup-info.json: not a JSON object" end
  if info.format ~= M.FORMAT then
    return nil, "backup-info.json: format " .. tostring(info.format) .. ", expected " .. M.FORMAT
  end
  if type(info.release) ~= "string" or not info.release:match(M.RELEASE_ID) then
    return nil, "backup-info.json: release " .. json.encode(info.release) .. " is not a release id"
  end
  if type(info.data) ~= "boolean" or type(info.apps) ~= "table" then
    return nil, "backup-info.json: expected \"data\" (true or false) and \"apps\""
  end
  -- "only": the backup holds the configs and data of these apps alone (an
  -- upgrade's backup); a restore puts back theirs and leaves the others'.
  local only_set
  if info.only ~= nil then
    if type(info.only) ~= "table" then return nil, "backup-info.json: \"only\" is not a list of app names" end
    only_set = {}
    for i, n in ipairs(info.only) do
      if not manifest.valid_app_name(n) then
        return nil, "backup-info.json: \"only\" item " .. i .. " is not an app name"
      end
      only_set[n] = true
    end
  end
  ok, err = only(dir, "current-release", function(n) return RELEASE_TOP[n] end, "a release")
  if ok then ok, err = expect(dir, "current-release/release.json", "file") end
  if not ok then return nil, err end
  local rel = json.decode(ct.fs.read(dir .. "/current-release/release.json") or "")
  if type(rel) ~= "table" or type(rel.apps) ~= "table" then
    return nil, "current-release/release.json: not a release"
  end
  if rel.id ~= info.release then
    return nil, string.format("current-release/release.json: release %s, backup-info.json says %s",
      json.encode(rel.id), info.release)
  end
  -- The release's apps must pass the manifest validator, as a package's do
  -- (names, mount paths, hooks paths): a restore regenerates their bundles.
  local doc = { manifest_version = manifest.MANIFEST_VERSION, release = { name = rel.name, version = rel.version },
    apps = json.array() }
  for i, a in ipairs(rel.apps) do
    local copy = {}
    for k, v in pairs(type(a) == "table" and a or {}) do copy[k] = v end
    local img = type(copy.image) == "table" and copy.image or {}
    copy.image = { layout = "images", ref = img.ref, digest = img.digest }
    -- Its writable layer's name (the layer store's): a release id, a path part.
    if copy.upper ~= nil and not (type(copy.upper) == "string" and release.is_id(copy.upper)) then
      return nil, string.format("current-release/release.json: apps[%d].upper: not a release id", i)
    end
    copy.upper = nil
    doc.apps[i] = copy
  end
  local problems = manifest.validate(doc, "current-release/release.json")
  if #problems > 0 then return nil, manifest.format_problems(problems)[1] end
  local by_name = {}
  for _, a in ipairs(rel.apps) do
    if type(a.image) ~= "table" or type(a.image.digest) ~= "string" then
      return nil, "current-release/release.json: app " .. a.name .. " has no image digest"
    end
    if a.hooks ~= nil and a.hooks ~= "hooks/" .. a.name .. ".lua" then
      return nil, "current-release/release.json: app " .. a.name .. ": hooks " .. json.encode(a.hooks)
        .. ", expected hooks/" .. a.name .. ".lua"
    end
    by_name[a.name] = a
    local said = info.apps[a.name]
    if type(said) ~= "table" or said.digest ~= a.image.digest then
      return nil, "backup-info.json: app " .. a.name .. " does not match the backed-up release"
    end
  end
  for name in pairs(info.apps) do
    if not by_name[name] then return nil, "backup-info.json: app " .. tostring(name) .. " is not in the backed-up release" end
  end
  for name in pairs(only_set or {}) do
    if not by_name[name] then return nil, "backup-info.json: \"only\" names " .. name .. ", not in the backed-up release" end
  end
  local function app_dir(n) return manifest.valid_app_name(n) and (not only_set or only_set[n]) and "dir" end
  local checks = {
    { "current-release/apps", function(n) return by_name[n] and "dir" end, "the release's apps" },
    { "current-release/hooks", function(n)
      local app = n:match("^(.*)%.lua$")
      return app and by_name[app] and "file"
    end, "the release's hook files" },
    { "current-release/bin", function(n) return (n == "runc" or n == "umoci") and "file" end, "the release's tools" },
    { "images", function(n)
      local name, digest = n:match("^([^@]+)@(sha256:%x+)$")
      return name and by_name[name] and by_name[name].image.digest == digest and "dir"
    end, "the release's images" },
    { "config", app_dir, only_set and "the configs of the apps it names in \"only\"" or "the apps' configs" },
    { "data", app_dir, only_set and "the data of the apps it names in \"only\"" or "the apps' data" },
  }
  for _, c in ipairs(checks) do
    ok, err = only(dir, c[1], c[2], c[3])
    if not ok then return nil, err end
  end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    ok, err = only(dir, "images/" .. key, function(n)
      return ((n == "rootfs" or n == "oci") and "dir") or ((n == "image.json" or n == "idmap") and "file") or nil
    end, "an image")
    if not ok then return nil, err end
  end
  ok, err = check_store(dir, info, by_name)
  if not ok then return nil, err end
  if info.data ~= (ct.fs.lstat(dir .. "/data") ~= nil) then
    return nil, info.data and "backup-info.json says the backup holds data, and it has none"
      or "data: backup-info.json says the backup holds no data"
  end
  ok, err = walk_special(dir, "", false)
  if not ok then return nil, err end
  return info, rel
end

-- extract(file, dir, progress) -> stats | nil, msg: a backup into dir. The
-- writable layers (uppers/) are read again on their own with their ".wh."
-- entries made overlay whiteouts again; nothing else is (a file an app
-- named ".wh.x" in its data stays a file). A FIFO, socket or device an app
-- made in its data, or an older backup holds, is skipped with a warning
-- (stats.warnings): it never blocks the way back.
function M.extract(file, dir, progress)
  local stats, err = ct.archive.extract(file, dir, {
    preserve = true, check_space = true, special = "skip", progress = progress,
  })
  if not stats then return nil, err end
  local skipped = stats.skipped
  if ct.fs.lstat(dir .. "/uppers") then
    local ok, rerr = ct.fs.rmtree(dir .. "/uppers")
    if not ok then return nil, rerr end
    local more, xerr = ct.archive.extract(file, dir, {
      preserve = true, check_space = true, special = "skip", only = { uppers = true }, whiteouts = "overlay",
    })
    if not more then return nil, xerr end
    skipped = more.skipped
    for _, name in ipairs(stats.skipped) do
      if not name:find("^uppers/") then skipped[#skipped + 1] = name end
    end
  end
  stats.warnings = {}
  for _, name in ipairs(skipped) do
    stats.warnings[#stats.warnings + 1] = file .. ": " .. name .. ": skipped a device node, fifo or socket"
  end
  return stats
end

-- Where a restored app's flattened rootfs goes when this root's store
-- holds its image as layers: the app's own copy (an upper without
-- overlayfs) named by the restored release, its writes kept.
local function flat_to_copy(dir, rel_doc, key, id)
  local name = key:match("^([^@]+)@")
  local udir = dir .. "/uppers/" .. name .. "/" .. id
  local ok, err = ct.fs.mkdir(udir, 456, true)
  if ok then ok, err = ct.fs.rename(dir .. "/images/" .. key .. "/rootfs", udir .. "/rootfs") end
  if ok then
    ok, err = ct.fs.write_atomic(udir .. "/upper.json", json.encode({
      app = name, image = key, kind = "copy", created = clock.iso(),
      restored = "the flattened rootfs of a backup made before the layer store",
    }, true) .. "\n", 420)
  end
  if ok then
    ok, err = ct.fs.write_atomic(udir .. "/idmap", ct.fs.read(dir .. "/images/" .. key .. "/idmap") or "none\n", 420)
  end
  if not ok then return nil, err end
  for _, a in ipairs(rel_doc.apps) do
    if a.name == name then a.upper = id end
  end
  return true
end

-- place(paths, dir, info, id [, rep]) -> true | nil, msg: the store's part of a
-- checked backup (dir, extracted in tmp/) into this root: the blobs into
-- blobs/sha256/ (checked against their digests by check_restore), each
-- image the root lacks (its OCI index linked to its blobs again), each
-- writable layer the root lacks, in this root's range. What the root
-- already holds stays as it is. A backup made before the layer store holds
-- flattened rootfs: one the root lacks is placed as a flat image, as it was;
-- where the root holds that image as layers, it becomes the app's own copy.
-- Layers missing from layers/ are extracted when each app is prepared
-- (store.complete, before it starts). rep: the reporter (ctcli.base.report).
function M.place(paths, dir, info, id, rep)
  local digests = {}
  for _, h in ipairs(ct.fs.dir(dir .. "/blobs/sha256") or {}) do digests[#digests + 1] = "sha256:" .. h end
  local ok, err = layers.store_blobs(paths, dir, digests)
  if not ok then return nil, "restoring the blobs: " .. tostring(err) end
  local placed_release = ct.fs.exists(release.dir(paths, id))
  local rel_file = dir .. "/current-release/release.json"
  local rel_doc = json.decode(ct.fs.read(rel_file) or "")
  local rewrite = false
  ct.fs.mkdir(paths.images, 493, true)
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    local idir = dir .. "/images/" .. key
    local live = paths.images .. "/" .. key
    if ct.fs.exists(idir .. "/rootfs") and ct.fs.exists(live .. "/image.json") and not ct.fs.exists(live .. "/rootfs")
        and not placed_release then
      ok, err = flat_to_copy(dir, rel_doc, key, id)
      if not ok then return nil, "restoring the rootfs of " .. key .. ": " .. tostring(err) end
      rewrite = true
    elseif not ct.fs.exists(live) then
      for _, d in ipairs(type(info.images) == "table" and info.images[key] or {}) do
        ok, err = ct.fs.mkdir(idir .. "/oci/blobs/sha256", 493, true)
        if ok and not ct.fs.exists(idir .. "/oci/blobs/sha256/" .. layers.hex(d)) then
          ok, err = ct.fs.link(layers.blob_path(paths, d), idir .. "/oci/blobs/sha256/" .. layers.hex(d))
          if not ok then ok, err = ct.fs.copyfile(layers.blob_path(paths, d), idir .. "/oci/blobs/sha256/" .. layers.hex(d), 420) end
        end
        if not ok then return nil, "restoring the image " .. key .. ": " .. tostring(err) end
      end
      ok, err = ct.fs.rename(idir, live)
      if not ok then return nil, err end
    end
  end
  if rewrite then
    ok, err = ct.fs.write_atomic(rel_file, json.encode(rel_doc, true) .. "\n", 420)
    if not ok then return nil, err end
  end
  local range, rerr = idmap.range(paths)
  if rerr then return nil, rerr end
  local kind = layers.storage(paths, true)
  for _, app in ipairs(ct.fs.dir(dir .. "/uppers") or {}) do
    for _, uid in ipairs(ct.fs.dir(dir .. "/uppers/" .. app) or {}) do
      local udir = dir .. "/uppers/" .. app .. "/" .. uid
      local live = layers.upper_dir(paths, app, uid)
      if not ct.fs.exists(live) then
        if kind == "copy" and ct.fs.exists(udir .. "/upper") then
          -- An overlay's writable layer cannot serve without overlayfs: the
          -- app starts from its image (a fresh own copy), its changes left out.
          report.of(rep).warn("the writable layer of %s is not restored: this root has no overlayfs (%s); " ..
            "the app starts from its image", app, select(2, layers.storage(paths)))
        else
          ok, err = M.adopt_upper(udir, range)
          if ok and ct.fs.exists(udir .. "/upper") then
            ok, err = ct.fs.mkdir(udir .. "/work", 448)
            if ok then ok, err = ct.fs.mkdir(udir .. "/merged", 493) end
          end
          if ok then ok, err = ct.fs.mkdir(layers.uppers_root(paths) .. "/" .. app, 456, true) end
          if ok then ok, err = ct.fs.rename(udir, live) end
          if not ok then return nil, "restoring the writable layer of " .. app .. ": " .. tostring(err) end
        end
      end
    end
  end
  return true
end

-- adopt_upper(udir, range) -> true | nil, msg: a restored writable layer
-- made in a root with another range shifted to this root's (none: to host
-- ids), as adopt_restored does for data and images; the next start moves
-- it to the mapping its app runs with.
function M.adopt_upper(udir, range)
  local m = idmap.image_idmap(udir)
  if type(m) ~= "table" or idmap.is_go(m) or idmap.equal(m, range) then return true end
  local target = range or { uid = 0, gid = 0, size = idmap.SIZE }
  for _, top in ipairs({ "upper", "rootfs" }) do
    local ok, err = idmap.shift(udir, top, m, target)
    if not ok then return nil, err end
  end
  return ct.fs.write_atomic(udir .. "/idmap", idmap.image_idmap_text(range), 420)
end

-- list(paths) -> backups newest first: ours (<stamp>-<id>.json beside the
-- archive) and the Go tool's (releases/<date>/backup-info.json + <uuid>.tar.gz)
-- | nil, msg when one of our records is broken.
function M.list(paths)
  local out = {}
  for _, f in ipairs(ct.fs.dir(paths.backups) or {}) do
    if f:match("%.json$") then
      local info, err = statefile.read(paths, paths.backups .. "/" .. f, statefile.BACKUP_RECORD, statefile.HINT.backup)
      if info == nil then return nil, err end
      if info and ct.fs.exists(paths.backups .. "/" .. info.archive) then
        info.path = paths.backups .. "/" .. info.archive
        out[#out + 1] = info
      end
    end
  end
  for _, d in ipairs(ct.fs.dir(paths.releases) or {}) do
    local dir = paths.releases .. "/" .. d
    if d ~= "backups" and ct.fs.exists(dir .. "/backup-info.json") then
      local goroot = require("ctcli.store.goroot")
      local info = goroot.record_of(dir .. "/x") or {}
      for _, f in ipairs(ct.fs.dir(dir) or {}) do
        -- Whether it holds data is read from the archive by who shows it
        -- (goroot.has_data), not on every list.
        if f:match("%.tar%.gz$") then out[#out + 1] = goroot.summary(dir .. "/" .. f, info) end
      end
    end
  end
  table.sort(out, function(a, b) return tostring(a.created) > tostring(b.created) end)
  return out
end

-- held(paths) -> {images = set of "<app>@<digest>", blobs = set of digests}
-- | nil, msg: what this root's backups hold of the store (their records'
-- "images"), which prune leaves; a backup made before the layer store
-- holds its images whole and names none.
function M.held(paths)
  local list, err = M.list(paths)
  if not list then return nil, err end
  local out = { images = {}, blobs = {} }
  for _, b in ipairs(list) do
    for key, digests in pairs(type(b.images) == "table" and b.images or {}) do
      out.images[key] = true
      for _, d in ipairs(digests) do out.blobs[d] = true end
    end
  end
  return out
end

-- The retention class of a backup's reason: an install's backup counts
-- with the upgrades', a backup recorded before reasons were (or by the
-- backup command) with the manual ones.
function M.class(reason)
  if reason == "upgrade" or reason == "install" then return "upgrade" end
  if reason == "safety" then return "safety" end
  return "manual"
end

-- protected(paths, list) -> set of paths: the newest backup of each kept
-- release (the current one included), which its rollback from an archive
-- needs; retention never removes one.
function M.protected(paths, list)
  local out, seen = {}, {}
  local kept = {}
  for _, r in ipairs(release.list(paths)) do kept[r.id] = true end
  for _, b in ipairs(list) do
    if b.format == M.FORMAT and kept[b.release] and not seen[b.release] then
      seen[b.release] = true
      out[b.path] = true
    end
  end
  return out
end

-- remove(b) -> true | nil, msg: one listed backup, its record first
-- (a backup with no record is not listed), then its archive. The Go tool's
-- dir goes when its last archive does.
function M.remove(b)
  if b.format == M.FORMAT then
    local ok, err = ct.fs.unlink((b.path:gsub("%.tar%.%a+$", ".json")))
    if not ok then return nil, err end
    return ct.fs.unlink(b.path)
  end
  local ok, err = ct.fs.unlink(b.path)
  if not ok then return nil, err end
  local dir = b.path:match("^(.*)/[^/]+$")
  for _, f in ipairs(ct.fs.dir(dir) or {}) do
    if f:match("%.tar%.gz$") then return true end
  end
  ct.fs.unlink(dir .. "/backup-info.json")
  ct.fs.rmdir(dir)
  return true
end

-- retain(paths, keep) -> removed backups | nil, msg: keeps the newest
-- keep[class] backups of each class and every protected one; the Go
-- tool's backups are never touched here (only when named).
function M.retain(paths, keep)
  local list = M.list(paths)
  local protected = M.protected(paths, list)
  local count, removed = {}, {}
  for _, b in ipairs(list) do
    if b.format == M.FORMAT then
      local class = M.class(b.reason)
      count[class] = (count[class] or 0) + 1
      if count[class] > (keep[class] or math.huge) and not protected[b.path] then
        local ok, err = M.remove(b)
        if not ok then return nil, "cannot remove the backup " .. b.path .. ": " .. tostring(err) end
        removed[#removed + 1] = b
      end
    end
  end
  return removed
end

-- partial(name) -> whether a file in releases/backups/ is an archive
-- ct.archive.create was still writing when ctcli died (it writes
-- <archive>.tmp-XXXXXX and renames it whole); recovery removes those.
function M.partial(name)
  return name:match("%.tmp%-%w+$") ~= nil
end

return M
