-- The layer store as the store commands (images, prune) see it: what it
-- holds (images, extracted layers, blobs) and what refers to it (installed
-- releases, staged releases, backup records). Read only: storegc removes.
local ct = require("ct")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local release = require("ctcli.store.release")
local store = require("ctcli.store.images")

local M = {}

local function blob_names(dir, set)
  for _, n in ipairs(ct.fs.dir(dir) or {}) do
    if n:match("^%x+$") and #n == 64 then set["sha256:" .. n] = true end
  end
end

-- images(paths) -> array of images/<key>: {key=, app=, digest=, dir=,
-- flat= (a rootfs/ from before the layer store), layers= (bottom first,
-- {diff_id=, blob=, size=}), mapping= (false: host ids), mapping_name=,
-- moving= (its mapping is being changed), blobs= (set of digests it needs),
-- err= (its records do not read)}.
function M.images(paths)
  local out = {}
  for _, key in ipairs(ct.fs.dir(paths.images) or {}) do
    local app, digest = key:match("^(.-)@(sha256:%x+)$")
    if app then
      local dir = paths.images .. "/" .. key
      local im = { key = key, app = app, digest = digest, dir = dir, layers = {}, blobs = {} }
      local info, err = store.image_info(paths, app, digest)
      if not info then
        im.err = err
      elseif not store.layered(info) then
        im.flat = true
      else
        im.layers = info.layers
        for _, l in ipairs(info.layers) do im.blobs[l.blob] = true end
        if type(info.config) == "string" then im.blobs[info.config] = true end
        if type(info.manifest) == "string" then im.blobs[info.manifest] = true end
        local m, merr = require("ctcli.store.idmap").image_idmap(dir, paths)
        if m == nil then
          im.err = merr
        elseif m == "moving" then
          im.moving = true
        else
          im.mapping, im.mapping_name = m, layers.mapping_name(m)
        end
      end
      -- The layout it keeps for reset holds what else it needs (an index
      -- of platforms, say).
      blob_names(dir .. "/oci/blobs/sha256", im.blobs)
      out[#out + 1] = im
    end
  end
  return out
end

-- layers(paths) -> array of the extracted layers {id = "<mapping>/<hex>",
-- mapping=, hex=, dir=, record= (its .json, or nil)}, with records whose
-- directory is missing too (dir=nil).
function M.layers(paths)
  local out = {}
  for _, mname in ipairs(layers.mappings(paths)) do
    local base = paths.root .. "/layers/" .. mname
    local seen = {}
    for _, n in ipairs(ct.fs.dir(base) or {}) do
      local h = n:match("^(%x+)%.json$") or n:match("^(%x+)$")
      if h and #h == 64 and not seen[h] then
        seen[h] = true
        local l = { id = mname .. "/" .. h, mapping = mname, hex = h, diff_id = "sha256:" .. h }
        if ct.fs.exists(base .. "/" .. h) then l.dir = base .. "/" .. h end
        local text = ct.fs.read(base .. "/" .. h .. ".json")
        local rec = text and json.decode(text)
        if type(rec) == "table" then l.record = rec end
        out[#out + 1] = l
      end
    end
  end
  return out
end

-- blobs(paths) -> array of {digest=, path=, bytes=} in blobs/sha256/.
function M.blobs(paths)
  local out = {}
  local dir = paths.root .. "/blobs/sha256"
  for _, n in ipairs(ct.fs.dir(dir) or {}) do
    local path = dir .. "/" .. n
    local st = ct.fs.lstat(path)
    out[#out + 1] = { digest = "sha256:" .. n, path = path, bytes = st and st.size or 0 }
  end
  return out
end

-- uses(im, layer_list) -> the layer ids ("<mapping>/<hex>") an image uses:
-- in its mapping, or in every mapping holding its diff ids while its
-- mapping is being changed.
function M.uses(im, all)
  local out = {}
  for _, l in ipairs(im.layers) do
    local h = layers.hex(l.diff_id)
    if h and im.mapping_name then
      out[#out + 1] = im.mapping_name .. "/" .. h
    elseif h and im.moving then
      for _, x in ipairs(all or {}) do
        if x.hex == h then out[#out + 1] = x.id end
      end
    end
  end
  return out
end

local paths_in = require("ctcli.base.root").paths_in

-- references(paths) -> refs | nil, msg: what holds each image and blob.
-- refs.images[key] = {releases = {ids}, staged = {ids}, backups = {names}},
-- refs.blobs[digest] = true (named by a backup record). A release or a
-- backup record that does not read is an error: what it holds is unknown.
function M.references(paths)
  local refs = { images = {}, blobs = {} }
  local function add(key, kind, who)
    local r = refs.images[key]
    if not r then
      r = { releases = {}, staged = {}, backups = {} }
      refs.images[key] = r
    end
    local list = r[kind]
    if list[#list] ~= who then list[#list + 1] = who end
  end
  local list, err = release.list(paths)
  if not list then return nil, err end
  for _, rel in ipairs(list) do
    for _, app in ipairs(rel.apps) do add(store.key(app.name, app.image.digest), "releases", rel.id) end
  end
  -- Staged releases (releases/staged/<id>/) and a stage under way (its
  -- .work-*/wanted.json names the images it placed or will place).
  local sdir = paths.releases .. "/staged"
  for _, n in ipairs(ct.fs.dir(sdir) or {}) do
    if release.is_id(n) then
      local rel, rerr = release.load(paths_in(paths, sdir), n)
      if not rel then
        return nil, "the staged release " .. n .. ": " .. tostring(rerr) ..
          " (drop it with 'ctcli prune --staged')"
      end
      for _, app in ipairs(rel.apps) do add(store.key(app.name, app.image.digest), "staged", n) end
    elseif n:match("^%.work%-") then
      local wanted = json.decode(ct.fs.read(sdir .. "/" .. n .. "/wanted.json") or "null")
      for _, key in ipairs(type(wanted) == "table" and wanted or {}) do
        if type(key) == "string" then add(key, "staged", "(being staged)") end
      end
    end
  end
  -- Backup records: images = {"<app>@<digest>": [blob digests]}.
  local backups, berr = require("ctcli.store.backup").list(paths)
  if not backups then return nil, berr end
  for _, b in ipairs(backups) do
    local name = b.path:match("[^/]+$")
    if type(b.images) == "table" then
      for k, v in pairs(b.images) do
        local key = type(k) == "string" and k or v
        if type(key) == "string" then add(key, "backups", name) end
        for _, d in ipairs(type(v) == "table" and v or {}) do
          if type(d) == "string" then refs.blobs[d] = true end
        end
      end
    end
  end
  return refs
end

-- current_id(paths) -> the current release's id, or nil.
function M.current_id(paths)
  local target = ct.fs.readlink(paths.current)
  return target and target:match("([^/]+)$")
end

return M
