-- What an app changed against its image, as `docker diff` prints it: A
-- (added), C (changed), D (deleted) paths. Three shapes of an app's rootfs:
--   overlay  uppers/<app>/<id>/upper: its entries are the changes (a char
--            0:0 node is a deletion, an opaque dir hides the image's content
--            of that dir);
--   copy     uppers/<app>/<id>/rootfs (no overlayfs): a whole tree, compared
--            with the image's layers entry by entry;
--   flat     images/<key>/rootfs (made before the layer store): a whole tree,
--            compared with its layers applied from images/<key>/oci/ into tmp/.
-- The app writes all three: they are read only through Dir:walk (never a
-- link followed, a fifo only lstat'ed), never handed to a tool. The image's
-- layers are the store's own (root only, never written after extraction).
local ct = require("ct")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local store = require("ctcli.store.images")

local M = {}

local function parent(p) return p:match("^(.*)/[^/]*$") end

-- has_cut_ancestor(p, cut, below): whether p, or a dir above it, is in
-- cut (a whiteout: the path and all beneath) or below (all beneath only).
local function is_cut(p, cut, below)
  if cut[p] then return true end
  local a = parent(p)
  while a and a ~= "" do
    if cut[a] or below[a] then return true end
    a = parent(a)
  end
  return false
end

local function walk(dir)
  local d, err = ct.fs.opendir(dir)
  if not d then return nil, err end
  local list, werr = d:walk("")
  d:close()
  return list, werr
end

-- image_view(paths, list, m) -> map "/path" -> walk entry (+ .layer = the
-- layer dir showing it) | nil, msg: the image's tree as an overlay of its
-- layers shows it (bottom first: a whiteout removes a path and what is
-- beneath it, an opaque dir what lower layers had beneath it).
function M.image_view(paths, list, m)
  local view = {}
  for _, l in ipairs(list) do
    local dir = layers.layer_dir(paths, m, l.diff_id)
    local entries, err = walk(dir)
    if not entries then return nil, "layer " .. l.diff_id .. " of the image: " .. tostring(err) end
    local cut, below, any = {}, {}, false
    for _, e in ipairs(entries) do
      local p = "/" .. e.path
      local old = view[p]
      if e.type == "char" and e.rdev == 0 then
        cut[p], any = true, true
      elseif e.type == "dir" and e.opaque then
        below[p], any = true, true
      elseif old and old.type == "dir" and e.type ~= "dir" then
        below[p], any = true, true
      end
    end
    if any then
      for p in pairs(view) do
        if is_cut(p, cut, below) then view[p] = nil end
      end
    end
    for _, e in ipairs(entries) do
      if not (e.type == "char" and e.rdev == 0) then
        e.layer = dir
        view["/" .. e.path] = e
      end
    end
  end
  return view
end

-- tree_view(dir) -> map "/path" -> walk entry | nil, msg: a whole tree.
function M.tree_view(dir)
  local entries, err = walk(dir)
  if not entries then return nil, err end
  local view = {}
  for _, e in ipairs(entries) do view["/" .. e.path] = e end
  return view
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- Deleted paths: the top-most image paths (under `within`, "" for all)
-- that are gone, once each (docker lists a removed dir, not its content,
-- nor that of a dir that became a file). keys: view's paths, sorted.
local function deleted(keys, present, within, out)
  local prefix = within .. "/"
  local gone = {}
  for _, p in ipairs(keys) do
    if not present[p] and (within == "" or p:sub(1, #prefix) == prefix) then
      local a, covered = parent(p), false
      while a and a ~= "" and a ~= within do
        if gone[a] or (present[a] and present[a].type ~= "dir") then covered = true break end
        a = parent(a)
      end
      gone[p] = true
      if not covered then out[p] = "D" end
    end
  end
end

-- of_upper(dir, view) -> map path -> kind | nil, msg: the changes an
-- overlay upper holds.
function M.of_upper(dir, view)
  local entries, err = walk(dir)
  if not entries then return nil, err end
  local out, present = {}, {}
  for _, e in ipairs(entries) do
    if not (e.type == "char" and e.rdev == 0) then present["/" .. e.path] = e end
  end
  local keys
  for _, e in ipairs(entries) do
    local p = "/" .. e.path
    if e.type == "char" and e.rdev == 0 then
      if view[p] then out[p] = "D" end
    else
      out[p] = view[p] and "C" or "A"
      if e.type == "dir" and e.opaque and view[p] then
        keys = keys or sorted_keys(view)
        deleted(keys, present, p, out)
      end
    end
  end
  return out, present
end

-- differs(a, b): whether a tree's entry is not the image's. Times tell a
-- rewritten file (the extraction keeps the archive's); a directory's time
-- moves with its content, so a directory counts by its own metadata (and
-- as the parent of a change, below).
local function differs(a, b)
  if a.type ~= b.type or a.mode ~= b.mode or a.uid ~= b.uid or a.gid ~= b.gid then return true end
  if a.type == "dir" then return false end
  if a.type == "char" or a.type == "block" then return a.rdev ~= b.rdev end
  return a.size ~= b.size or a.mtime ~= b.mtime or a.mtime_nsec ~= b.mtime_nsec
end

-- of_tree(dir, view) -> map path -> kind | nil, msg: a whole tree (an own
-- copy or a flat rootfs) against the image.
function M.of_tree(dir, view)
  local entries, err = walk(dir)
  if not entries then return nil, err end
  local out, present = {}, {}
  for _, e in ipairs(entries) do
    local p = "/" .. e.path
    present[p] = e
    local v = view[p]
    if not v then out[p] = "A" elseif differs(e, v) then out[p] = "C" end
  end
  deleted(sorted_keys(view), present, "", out)
  -- The dirs above a change changed too, as an overlay upper shows them.
  for _, p in ipairs(sorted_keys(out)) do
    local a = parent(p)
    while a and a ~= "" and present[a] and view[a] and not out[a] do
      out[a] = "C"
      a = parent(a)
    end
  end
  return out, present
end

-- without_mount_points(changes, view, present, dests): runc makes the
-- mount points of the bundle (/etc/hosts, the data and logs dirs, ...) in
-- the rootfs; they are ctcli's, not the app's changes (docker hides its
-- own the same way). Gone: a mount point added, and the dirs above it that
-- changed for it only (added for it, or copied up unchanged).
function M.without_mount_points(changes, view, present, dests)
  local function beneath(p)
    local prefix = p .. "/"
    for q in pairs(changes) do
      if q:sub(1, #prefix) == prefix then return true end
    end
    return false
  end
  for _, d in ipairs(dests) do
    if changes[d] == "A" and not beneath(d) then
      changes[d] = nil
      local a = parent(d)
      while a and a ~= "" do
        local e, v = present[a], view[a]
        if not e or e.type ~= "dir" or e.opaque or beneath(a) then break end
        if changes[a] == "C" and not (v and v.type == "dir" and v.mode == e.mode and v.uid == e.uid
            and v.gid == e.gid) then
          break
        end
        if changes[a] ~= "A" and changes[a] ~= "C" then break end
        changes[a] = nil
        a = parent(a)
      end
    end
  end
  return changes
end

-- list(changes) -> sorted array of {kind=, path=}
function M.list(changes)
  local out = json.array()
  for _, p in ipairs(sorted_keys(changes)) do out[#out + 1] = { kind = changes[p], path = p } end
  return out
end

local function mapping_of(paths, app_name, digest)
  local userns = require("ctcli.store.idmap")
  local m, err = userns.image_idmap(store.dir(paths, app_name, digest), paths)
  if m == nil then return nil, err end
  if m == "moving" then
    return nil, "the image of " .. app_name .. " is being moved to another id mapping; start the app first"
  end
  return m
end

-- flat(paths, app_name, digest, rootfs [, mounts]) -> changes | nil, msg: a flat
-- rootfs against its image's layers, applied in order from the OCI layout
-- the image kept (images/<key>/oci/) into tmp/ (a holder of the lock).
function M.flat(paths, app_name, digest, rootfs, mounts)
  local dir = store.dir(paths, app_name, digest)
  local layout = dir .. "/oci"
  local index = json.decode(ct.fs.read(layout .. "/index.json") or "null")
  local ref
  for _, d in ipairs(type(index) == "table" and type(index.manifests) == "table" and index.manifests or {}) do
    local ann = type(d) == "table" and type(d.annotations) == "table" and d.annotations or {}
    ref = ref or ann["org.opencontainers.image.ref.name"]
  end
  if not ref then
    return nil, "the image " .. store.key(app_name, digest) .. " kept no OCI layout to compare its rootfs with"
  end
  local image, lerr = layers.read_layout(layout, ref)
  if not image then return nil, store.key(app_name, digest) .. ": " .. lerr end
  local m, merr = mapping_of(paths, app_name, digest)
  if m == nil then return nil, merr end
  local tmp, terr = ct.fs.mkdtemp(paths.tmp .. "/diff-XXXXXX")
  if not tmp then return nil, terr end
  local tree = tmp .. "/tree"
  local ok, err = ct.fs.mkdir(tree, 493)
  for _, l in ipairs(image.layers) do
    if not ok then break end
    ok, err = ct.archive.extract(layout .. "/blobs/sha256/" .. layers.hex(l.digest), tree,
      { preserve = true, whiteouts = "apply", idmap = layers.idmap_opt(m), check_space = true })
  end
  local changes
  if ok then
    local view
    view, err = M.tree_view(tree)
    if view then
      local present
      changes, present = M.of_tree(rootfs, view)
      if changes then M.without_mount_points(changes, view, present, mounts or {}) else err = present end
    end
  end
  ct.fs.rmtree(tmp)
  if not changes then return nil, "comparing the rootfs of " .. app_name .. ": " .. tostring(err) end
  return changes
end

-- mounts_of(bundle_dir) -> the mount destinations of an app's bundle.
function M.mounts_of(bundle_dir)
  local cfg = json.decode(ct.fs.read(bundle_dir .. "/config.json") or "null")
  local out = {}
  for _, m in ipairs(type(cfg) == "table" and type(cfg.mounts) == "table" and cfg.mounts or {}) do
    if type(m) == "table" and type(m.destination) == "string" then
      out[#out + 1] = "/" .. m.destination:gsub("^/+", ""):gsub("/+$", "")
    end
  end
  return out
end

-- of_app(paths, app [, mounts]) -> changes, how ("overlay" | "copy" |
-- "flat") | nil, msg for an app record of a release; mounts: its bundle's
-- mount points (M.mounts_of), not listed. "flat" needs the root's lock (tmp/).
function M.of_app(paths, app, mounts)
  if not app.upper then
    local rootfs = store.dir(paths, app.name, app.image.digest) .. "/rootfs"
    if not ct.fs.exists(rootfs) then return nil, "the rootfs of " .. app.name .. " is missing (" .. rootfs .. ")" end
    local changes, err = M.flat(paths, app.name, app.image.digest, rootfs, mounts)
    if not changes then return nil, err end
    return changes, "flat"
  end
  local list, lerr = store.layers_of(paths, app.name, app.image.digest)
  if not list then return nil, lerr or ("the image of " .. app.name .. " has no layers") end
  local m, merr = mapping_of(paths, app.name, app.image.digest)
  if m == nil then return nil, merr end
  local view, verr = M.image_view(paths, list, m)
  if not view then return nil, verr end
  local top = layers.top(paths, app.name, app.upper)
  local dir = layers.upper_dir(paths, app.name, app.upper) .. "/" .. top
  local changes, present
  if top == "upper" then
    changes, present = M.of_upper(dir, view)
  else
    changes, present = M.of_tree(dir, view)
  end
  if not changes then return nil, present end
  M.without_mount_points(changes, view, present, mounts or {})
  return changes, top == "upper" and "overlay" or "copy"
end

return M
