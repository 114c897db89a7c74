-- Removing what nothing refers to from the store (prune, and the cleanups
-- after an undone upgrade or rollback): images no installed or staged
-- release and no backup record names, then the layers and blobs no image
-- left needs. Run by a holder of the root's lock; a stage under way holds
-- no root lock but names its images in releases/staged/.work-*/wanted.json
-- (see storeinfo.references), and places them under the root's lock.
local ct = require("ct")
local layers = require("ctcli.store.layers")
local storeinfo = require("ctcli.store.info")

local M = {}

-- retire(paths, dir) -> true | nil, msg: dir out of the store in one
-- rename (into tmp/), then removed: a killed prune never leaves half a
-- layer or image under its name.
local function retire(paths, dir)
  local tmp, err = ct.fs.mkdtemp(paths.tmp .. "/prune-XXXXXX")
  if not tmp then return nil, err end
  local ok, rerr = ct.fs.rename(dir, tmp .. "/gone")
  if not ok then ct.fs.rmdir(tmp) return nil, rerr end
  ct.fs.rmtree(tmp)
  return true
end

-- collect(paths, keep) -> freed | nil, msg. keep: a set of image keys the
-- caller knows are used (the releases it kept, even one it could not
-- remove whole). freed = {images = {{image=, bytes=}}, layers = {{layer=,
-- bytes=}}, blobs = {{blob=, bytes=}}, bytes = total}. When a reference
-- cannot be read (a broken release or backup record), nothing is removed.
function M.collect(paths, keep)
  local refs, err = storeinfo.references(paths)
  if not refs then return nil, err end
  local wanted = {}
  for key in pairs(keep or {}) do wanted[key] = true end
  for key in pairs(refs.images) do wanted[key] = true end
  -- An upper that is still there (prune removed those no release names)
  -- keeps the image it was made from, and a mounted one its layers.
  for _, name in ipairs(ct.fs.dir(layers.uppers_root(paths)) or {}) do
    for _, id in ipairs(layers.uppers(paths, name)) do
      local info = layers.upper_info(paths, name, id)
      if type(info) == "table" and type(info.image) == "string" then wanted[info.image] = true end
    end
  end
  local freed = { images = {}, layers = {}, blobs = {}, bytes = 0 }
  local images = storeinfo.images(paths)
  local kept, unknown = {}, false
  for _, im in ipairs(images) do
    if wanted[im.key] then
      -- A kept image whose records do not read needs layers and blobs
      -- nobody can name: they all stay.
      if im.err then unknown = true end
      kept[#kept + 1] = im
    else
      local bytes = ct.fs.du(im.dir) or 0
      if retire(paths, im.dir) then
        freed.images[#freed.images + 1] = { image = im.key, bytes = bytes }
        freed.bytes = freed.bytes + bytes
      else
        kept[#kept + 1] = im
      end
    end
  end
  if unknown then return freed end
  -- A stage under way extracts layers and stores blobs before the image
  -- that names them is placed: while one runs, layers and blobs all stay.
  for _, n in ipairs(ct.fs.dir(paths.releases .. "/staged") or {}) do
    if n:match("^%.work%-") then return freed end
  end
  local all = storeinfo.layers(paths)
  local need_layers, need_blobs = {}, {}
  for d in pairs(refs.blobs) do need_blobs[d] = true end
  for _, im in ipairs(kept) do
    for _, id in ipairs(storeinfo.uses(im, all)) do need_layers[id] = true end
    for d in pairs(im.blobs) do need_blobs[d] = true end
  end
  for _, l in ipairs(all) do
    if not need_layers[l.id] then
      local bytes = l.dir and ct.fs.du(l.dir) or 0
      -- The tree first, then its record: a record alone is a layer not
      -- there (layers.has_layer), made again from its blob when needed.
      local ok = not l.dir or retire(paths, l.dir)
      if ok then
        ct.fs.unlink(paths.root .. "/layers/" .. l.id .. ".json")
        freed.layers[#freed.layers + 1] = { layer = l.id, bytes = bytes }
        freed.bytes = freed.bytes + bytes
      end
    end
  end
  for _, mname in ipairs(layers.mappings(paths)) do ct.fs.rmdir(paths.root .. "/layers/" .. mname) end
  for _, b in ipairs(storeinfo.blobs(paths)) do
    if not need_blobs[b.digest] and ct.fs.unlink(b.path) then
      freed.blobs[#freed.blobs + 1] = { blob = b.digest, bytes = b.bytes }
      freed.bytes = freed.bytes + b.bytes
    end
  end
  return freed
end

return M
