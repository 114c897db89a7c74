-- Reading a package: extract it (securely, with limits) into the root's
-- tmp/, recognise its format (manifest.json, or the original meta.json +
-- package/ layout), validate it and check each app's image in its OCI layout.
local ct = require("ct")
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")

local M = {}

-- Limits on what a package may unpack to (an archive bomb is refused
-- before it fills the disk; the free-space budget is checked as it goes).
M.MAX_ENTRIES = 500000
M.MAX_BYTES = 64 * 1024 * 1024 * 1024

local function read_json(path, label)
  local text, err = ct.fs.read(path)
  if not text then return nil, err end
  local v, jerr = json.decode(text)
  if v == nil then return nil, label .. ": " .. jerr end
  return v, nil, text
end

-- image(dir, image, label [, declared_by]) -> {digest=, manifest=, config=} | nil, msg
-- Finds ref in the OCI layout's index.json and checks the manifest's digest
-- (and the declared one) against the blob's bytes. declared_by names where
-- the declared digest came from (a legacy package's version.json imageSha),
-- for the message when it matches neither digest of the image.
--
-- absent: the set of blob digests a delta package leaves out of this layout
-- and none has put back (validate, inspect without a root): not looked for;
-- with the manifest left out, the digest is the index's, unread.
-- sha256: the hash function (default ct.hash.sha256_file; see ctcli.base.filedigest).
function M.image(dir, image, label, declared_by, absent, sha256)
  absent = absent or {}
  sha256 = sha256 or ct.hash.sha256_file
  local layout = dir .. "/" .. image.layout
  local index, err = read_json(layout .. "/index.json", label .. "/index.json")
  if not index then
    return nil, string.format("%s: no OCI image layout at %s (%s)", label, image.layout, err)
  end
  local desc
  for _, m in ipairs(type(index.manifests) == "table" and index.manifests or {}) do
    local ann = type(m.annotations) == "table" and m.annotations or {}
    if ann["org.opencontainers.image.ref.name"] == image.ref then desc = m end
  end
  if not desc then
    return nil, string.format("%s: image %s has no tag '%s'", label, image.layout, image.ref)
  end
  local digest = desc.digest
  if type(digest) ~= "string" or not digest:match("^sha256:%x+$") then
    return nil, string.format("%s: tag '%s' has no sha256 digest", label, image.ref)
  end
  local function blob(d)
    return layout .. "/blobs/sha256/" .. d:sub(8)
  end
  if absent[digest] and not ct.fs.exists(blob(digest)) then
    if image.digest and image.digest ~= digest then
      return nil, string.format("%s: image %s:%s has digest %s, the package declares %s",
        label, image.layout, image.ref, digest, image.digest)
    end
    return { digest = digest, left_out = true }
  end
  local actual, herr = sha256(blob(digest))
  if not actual then
    return nil, string.format("%s: image manifest %s is missing (%s)", label, digest, herr)
  end
  if "sha256:" .. actual ~= digest then
    return nil, string.format("%s: blob %s does not match its digest (sha256:%s)", label, digest, actual)
  end
  local mf, merr = read_json(blob(digest), label .. ": manifest " .. digest)
  if not mf then return nil, merr end
  local config_digest = type(mf.config) == "table" and mf.config.digest or nil
  if image.digest and image.digest ~= digest and image.digest ~= config_digest then
    if declared_by then
      -- The Go tool never checked imageSha; say what it must be to pass here.
      return nil, string.format("%s: %s is %s, but the image in %s (tag %s) has manifest digest %s and config "
        .. "digest %s; imageSha must be one of them (a registry's digest of another manifest, e.g. before "
        .. "skopeo converted the image, does not identify this image)", label, declared_by, image.digest,
        image.layout, image.ref, digest, tostring(config_digest))
    end
    return nil, string.format("%s: image %s:%s has digest %s, the package declares %s",
      label, image.layout, image.ref, digest, image.digest)
  end
  if type(config_digest) == "string" and not (absent[config_digest] and not ct.fs.exists(blob(config_digest))) then
    local c = sha256(blob(config_digest))
    if "sha256:" .. tostring(c) ~= config_digest then
      return nil, string.format("%s: config blob %s is missing or does not match its digest", label, config_digest)
    end
  end
  for _, layer in ipairs(type(mf.layers) == "table" and mf.layers or {}) do
    if type(layer.digest) ~= "string" or not (ct.fs.exists(blob(layer.digest)) or absent[layer.digest]) then
      return nil, string.format("%s: layer %s is missing from %s", label, tostring(layer.digest), image.layout)
    end
  end
  return { digest = digest, config_digest = config_digest, manifest = mf }
end

local function problems_error(problems, file)
  local lines = manifest.format_problems(problems, file)
  local msg = lines[1]
  if #lines > 1 then
    msg = string.format("%s (and %d more problem%s:\n  %s)", lines[1], #lines - 1,
      #lines > 2 and "s" or "", table.concat(lines, "\n  ", 2))
  end
  return msg
end

M.LEGACY_APPS = "package/apps"

-- is_legacy_dir(dir) -> whether dir holds a package in the Go ctcli's layout:
-- meta.json, or (the Go tool never read meta.json) just package/apps/.
function M.is_legacy_dir(dir)
  return ct.fs.exists(dir .. "/meta.json") or ct.fs.exists(dir .. "/" .. M.LEGACY_APPS)
end

-- read_legacy(dir [, fallback_name]) -> doc | nil, problems: the manifest of a
-- package in the Go ctcli's layout (meta.json + package/apps/<app>/...), the
-- one reader install, validate, lint and convert share. Every problem is
-- reported with the legacy file it is about. fallback_name names the release
-- when meta.json has no releaseMeta.id (the package's file name).
function M.read_legacy(dir, fallback_name)
  local problems = {}
  local function read(rel)
    local text = ct.fs.read(dir .. "/" .. rel)
    if not text then return nil end
    local v, err = json.decode(text)
    if v == nil then problems[#problems + 1] = { file = rel, path = "", message = err } end
    return v
  end
  local meta = read("meta.json")
  local names = ct.fs.dir(dir .. "/" .. M.LEGACY_APPS)
  if not names then
    return nil, { { file = M.LEGACY_APPS, path = "", message = "missing; not a ctcli package" } }
  end
  local apps = {}
  for _, name in ipairs(names) do
    local base = M.LEGACY_APPS .. "/" .. name
    apps[#apps + 1] = {
      name = name, package_config = read(base .. "/package-config.json"),
      version = read(base .. "/version.json"), layout = base .. "/skopeo",
      hooks = ct.fs.exists(dir .. "/" .. base .. "/hooks.lua") and (base .. "/hooks.lua") or nil,
    }
  end
  if #problems > 0 then return nil, problems end
  local present = {}
  for _, f in ipairs({ "package/runc.amd64", "package/umoci.amd64" }) do
    if ct.fs.exists(dir .. "/" .. f) then present[f] = true end
  end
  return manifest.from_legacy(meta, apps, present, fallback_name)
end

-- package_name(label) -> a package's file name without its archive suffix.
function M.package_name(label)
  local base = tostring(label or ""):match("[^/]*$")
  for _, ext in ipairs({ "%.tar%.gz$", "%.tar%.zst$", "%.tgz$", "%.tar$" }) do
    local cut = base:gsub(ext, "")
    if cut ~= base then return cut end
  end
  return base ~= "" and base or nil
end

-- M.DELTA: the manifest key of a delta package (pack --base): the apps whose
-- image layouts it leaves out, by image digest, and the base it relies on.
M.DELTA = "x-ctcli-delta"

-- A delta made by layer (this ctcli's pack --base) leaves out single blobs
-- instead: "blobs" = {<layout> = [digests]}, every blob (layer, config,
-- manifest) of that layout the base package has; the root's store puts
-- them back. "images" is then empty. Deltas that left out whole images
-- ("images" = {app = digest}) still install where the image is in the store.

-- delta_of(doc) -> {base=, images={app=digest}, blobs={layout=[digests]}} | nil
function M.delta_of(doc)
  local d = type(doc) == "table" and doc[M.DELTA]
  if type(d) ~= "table" or (type(d.images) ~= "table" and type(d.blobs) ~= "table") then return nil end
  if type(d.images) ~= "table" then d.images = {} end
  if type(d.blobs) ~= "table" then d.blobs = {} end
  return d
end

-- absent(doc, layout) -> set of the blob digests a delta leaves out of layout
function M.absent(doc, layout)
  local d = M.delta_of(doc)
  local set = {}
  local list = d and type(layout) == "string" and d.blobs[(layout:gsub("/+$", ""))]
  for _, digest in ipairs(type(list) == "table" and list or {}) do set[digest] = true end
  return set
end

-- fill_blobs(dir, delta, label, blob) -> true | nil, msg: every blob a delta
-- leaves out, put back into its layout from the root's store (blob(digest)
-- -> the store's file or nil), checked against its digest first: a root
-- holds it whatever release brought it. A blob the store lacks fails here,
-- named, before anything is changed.
local function fill_blobs(dir, delta, label, blob)
  local layouts = {}
  for layout in pairs(delta.blobs) do layouts[#layouts + 1] = layout end
  table.sort(layouts)
  for _, layout in ipairs(layouts) do
    local list = delta.blobs[layout]
    if type(layout) ~= "string" or layout:find("%.%.") or layout:sub(1, 1) == "/" or type(list) ~= "table" then
      return nil, label .. ": " .. M.DELTA .. ".blobs: not a list of blobs by image layout"
    end
    for _, digest in ipairs(list) do
      local h = type(digest) == "string" and digest:match("^sha256:(%x+)$")
      if not h or #h ~= 64 then return nil, label .. ": " .. M.DELTA .. ".blobs: " .. tostring(digest) .. " is not a digest" end
      local dest = dir .. "/" .. layout .. "/blobs/sha256/" .. h
      if not ct.fs.lstat(dest) then
        local src = blob(digest)
        if not src then
          return nil, string.format("%s: a delta package (base %s) leaves out the blob %s of %s, and this root's "
            .. "store does not hold it: upgrade from a release that has it first, or use the full package",
            label, tostring(delta.base), digest, layout)
        end
        local actual = ct.hash.sha256_file(src)
        if actual ~= h then
          return nil, string.format("%s: the store's blob %s does not match its digest (sha256:%s); run "
            .. "'ctcli images --verify'", label, digest, tostring(actual))
        end
        local ok, err = ct.fs.mkdir(dir .. "/" .. layout .. "/blobs/sha256", 493, true)
        if ok and not ct.fs.link(src, dest) then ok, err = ct.fs.copyfile(src, dest, 420) end
        if not ok then return nil, label .. ": " .. tostring(err) end
      end
    end
  end
  return true
end

-- read_dir(dir [, label [, opts]]) -> pkg | nil, msg: a package already
-- extracted into dir. opts.have(app_name, digest): whether the root's image
-- store holds an image a delta package leaves out; opts.blob(digest): the
-- root's stored file of a blob a delta leaves out (without it, as for
-- validate and inspect, left-out blobs are not looked for); opts.sha256:
-- the hash function (a ctcli.base.filedigest memo: each inode read once).
function M.read_dir(dir, label, opts)
  opts = opts or {}
  local pkg = { dir = dir, label = label }
  if ct.fs.exists(dir .. "/manifest.json") then
    pkg.format = "manifest"
    local text, err = ct.fs.read(dir .. "/manifest.json")
    if not text then return nil, err end
    pkg.manifest_text = text
    local doc, problems = manifest.parse(text, "manifest.json")
    if not doc then return nil, label .. ": " .. problems_error(problems, "manifest.json") end
    local vp = manifest.validate(doc, "manifest.json")
    if #vp > 0 then return nil, label .. ": " .. problems_error(vp, "manifest.json") end
    pkg.doc = doc
  elseif M.is_legacy_dir(dir) then
    pkg.format = "legacy"
    local doc, problems = M.read_legacy(dir, M.package_name(label))
    if not doc then return nil, label .. ": " .. problems_error(problems, "meta.json") end
    pkg.doc = doc
    pkg.manifest_text = json.encode(doc, true)
  else
    return nil, label .. ": not a ctcli package (no manifest.json, no meta.json, no package/apps/)"
  end
  pkg.release = manifest.normalize(pkg.doc)
  local delta = M.delta_of(pkg.doc)
  pkg.delta = delta
  if delta and opts.blob then
    local ok, ferr = fill_blobs(dir, delta, label, opts.blob)
    if not ok then return nil, ferr end
  end
  for _, app in ipairs(pkg.release.apps) do
    local needed = delta and delta.images[app.name]
    if needed then
      if not (opts.have and opts.have(app.name, needed)) then
        return nil, string.format("%s: a delta package (base %s) without the image of %s (%s); "
          .. "this root does not hold it: upgrade from the base release first, or use the full package",
          label, tostring(delta.base), app.name, needed)
      end
      app.image.digest = needed
    else
      local img, err = M.image(dir, app.image, label .. ": app " .. app.name,
        pkg.format == "legacy" and (M.LEGACY_APPS .. "/" .. app.name .. "/version.json imageSha") or nil,
        M.absent(pkg.doc, app.image.layout), opts.sha256)
      if not img then return nil, err end
      app.image.digest = img.digest
      app.image.config_digest = img.config_digest
    end
  end
  return pkg
end

return M
