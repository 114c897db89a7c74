-- The image store: images/<app>@<digest>/{image.json, idmap, oci/}, one per
-- app and image digest, shared by every release that has that app at that
-- digest. An image is its layer list (extracted once per mapping in layers/,
-- see ctcli.store.layers) and its config; images unpacked before the layer store
-- are "flat": a whole rootfs/ beside image.json, used as it is.
local ct = require("ct")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local rootmod = require("ctcli.base.root")
local scratch = require("ctcli.store.scratch")
local statefile = require("ctcli.base.statefile")

local M = {}

function M.key(app_name, digest)
  return app_name .. "@" .. digest
end

function M.dir(paths, app_name, digest)
  return paths.images .. "/" .. M.key(app_name, digest)
end

function M.has(paths, app_name, digest)
  local d = M.dir(paths, app_name, digest)
  if not ct.fs.exists(d .. "/image.json") then return false end
  if ct.fs.exists(d .. "/rootfs") then return true end
  -- A layered image: its record is complete once renamed in (its layers
  -- are made again from its blobs when they are missing, see complete).
  return ct.fs.exists(d .. "/oci/index.json")
end

local function image_hint(key)
  return string.format(statefile.HINT.image, key, key)
end

-- image_info(paths, app_name, digest) -> image.json ({process = {args=, env=,
-- cwd=, user=}, ...}) | nil, msg naming the file when it is missing or broken.
function M.image_info(paths, app_name, digest)
  local key = M.key(app_name, digest)
  local file = M.dir(paths, app_name, digest) .. "/image.json"
  local info, err = statefile.read(paths, file, statefile.IMAGE, image_hint(key))
  if info == false then return nil, statefile.problem(paths, file, "missing", image_hint(key)) end
  return info, err
end

-- check_records(paths) -> true | nil, msg: every image's image.json and idmap read.
function M.check_records(paths)
  for _, key in ipairs(ct.fs.dir(paths.images) or {}) do
    local dir = paths.images .. "/" .. key
    local info, err = statefile.read(paths, dir .. "/image.json", statefile.IMAGE, image_hint(key))
    if info == nil then return nil, err end
    local m, merr = require("ctcli.store.idmap").image_idmap(dir, paths)
    if m == nil then return nil, merr end
  end
  return true
end

-- What the image itself says about its process, from its config as umoci's
-- config.json gave it before (Entrypoint + Cmd, Env, WorkingDir, User).
-- A user given by name is looked up in the image's /etc/passwd and /etc/group.
local function process_of(config, lookup)
  local c = type(config.config) == "table" and config.config or {}
  local args = json.array()
  for _, list in ipairs({ c.Entrypoint, c.Cmd }) do
    for _, a in ipairs(type(list) == "table" and list or {}) do args[#args + 1] = a end
  end
  local env = json.array()
  for _, e in ipairs(type(c.Env) == "table" and c.Env or {}) do env[#env + 1] = e end
  local user = { uid = 0, gid = 0 }
  if type(c.User) == "string" and c.User ~= "" then
    local u, g = c.User:match("^([^:]*):?(.*)$")
    local function id_of(name, file, field)
      if name == "" then return nil end
      if name:match("^%d+$") then return tonumber(name) end
      for line in (lookup(file) or ""):gmatch("[^\n]+") do
        local f = {}
        for x in (line .. ":"):gmatch("([^:]*):") do f[#f + 1] = x end
        if f[1] == name then return tonumber(f[field]), tonumber(f[4]) end
      end
      return nil
    end
    local uid, pgid = id_of(u, "/etc/passwd", 3)
    user.uid = uid or 0
    user.gid = id_of(g, "/etc/group", 3) or pgid or 0
  end
  return { args = args, env = env, cwd = type(c.WorkingDir) == "string" and c.WorkingDir ~= "" and c.WorkingDir or "/",
    user = user }
end

-- layered(info) -> whether an image.json describes an image of layers (else
-- a flat rootfs/ unpacked before the layer store).
function M.layered(info)
  return type(info) == "table" and type(info.layers) == "table"
end

-- layers_of(paths, app_name, digest) -> the image's layers (bottom first),
-- its mapping | nil, msg (flat image: nil, nil).
function M.layers_of(paths, app_name, digest)
  local info, err = M.image_info(paths, app_name, digest)
  if not info then return nil, err end
  if not M.layered(info) then return nil end
  local m, merr = require("ctcli.store.idmap").image_idmap(M.dir(paths, app_name, digest), paths)
  if m == nil then return nil, merr end
  return info.layers, m
end

-- import(paths, job, added) -> place | nil, msg: one image from an OCI
-- layout into the store: its blobs, its layers in job.idmap's mapping (those
-- the store lacks), and images/<key>/{image.json, idmap, oci/} made in tmp/
-- (written unsynced: see ctcli.store.scratch); place() renames it in whole, once
-- the caller has flushed.
local function import(paths, job, added, progress)
  local image, err = job.image, nil
  if not image then image, err = layers.read_layout(job.layout, job.ref, job.sha256) end
  if not image then return nil, err end
  local ok
  ok, err = layers.store_blobs(paths, job.layout, image.blobs, added)
  if not ok then return nil, err end
  ok, err = layers.ensure(paths, image.layers, job.idmap, added, progress)
  if not ok then return nil, err end
  local function lookup(file)
    local dir = layers.find(paths, image.layers, job.idmap, file)
    return dir and ct.fs.read(dir .. file)
  end
  local tmp, terr = ct.fs.mkdtemp(paths.tmp .. "/image-" .. job.name .. "-XXXXXX")
  if not tmp then return nil, terr end
  local function fail(e) ct.fs.rmtree(tmp) return nil, e end
  ok, err = ct.fs.chmod(tmp, rootmod.MODES.image_dir)
  if not ok then return fail(err) end
  if job.idmap then ct.fs.lchown(tmp, 0, job.idmap.gid) end
  local list = json.array()
  for i, l in ipairs(image.layers) do
    list[i] = { diff_id = l.diff_id, blob = l.digest, size = l.size or json.null, media_type = l.media_type or json.null }
  end
  ok, err = scratch.write(tmp .. "/image.json", json.encode({
    app = job.name, digest = job.digest, process = process_of(image.config, lookup), layers = list,
    config = image.config_digest, manifest = image.manifest_digest,
    -- No device node from a layer reaches the store (runc gives every
    -- container its own /dev): the count the extraction skipped.
    devices_removed = layers.skipped(paths, image.layers, job.idmap),
  }, true) .. "\n", 420)
  if ok then
    ok, err = scratch.write(tmp .. "/idmap", require("ctcli.store.idmap").image_idmap_text(job.idmap), 420)
  end
  if ok then ok, err = layers.write_layout(paths, tmp .. "/oci", image, scratch.write) end
  if not ok then return fail(err) end
  local final = M.dir(paths, job.name, job.digest)
  -- A stage (which holds no root lock) places under the root's lock
  -- (paths.store_guard), and keeps a complete record another command
  -- placed meanwhile: a release may use it already.
  local function place()
    if ct.fs.exists(final) then
      if paths.store_guard and M.has(paths, job.name, job.digest) then
        ct.fs.rmtree(tmp)
        return true
      end
      -- A leftover of an interrupted run: the complete record just made wins.
      ct.fs.rmtree(final)
    end
    return ct.fs.rename(tmp, final)
  end
  return function()
    local pok, perr = (paths.store_guard or function(fn) return fn() end)(place)
    if not pok then return fail(perr) end
    return true
  end, function() ct.fs.rmtree(tmp) end
end

-- unpack_bar(rep, paths, jobs) -> a bar over the compressed bytes of the layers the
-- store lacks (each counted once), and its feed for layers.ensure.
local function unpack_bar(rep, paths, jobs)
  local total, counted = 0, {}
  for _, job in ipairs(jobs) do
    job.image = job.image or layers.read_layout(job.layout, job.ref, job.sha256)
    for _, l in ipairs(job.image and job.image.layers or {}) do
      local key = layers.mapping_name(job.idmap) .. "/" .. l.diff_id
      if not counted[key] and not layers.has_layer(paths, job.idmap, l.diff_id) then
        counted[key] = true
        total = total + (l.size or 0)
      end
    end
  end
  local bar = rep.bar("unpacking", total)
  local base, current = 0, nil
  return bar, function(layer, read)
    if current ~= layer then
      if current then base = base + (current.size or 0) end
      current = layer
    end
    bar.set(base + math.min(read, layer.size or read))
  end
end

-- unpack_all(paths, rep, jobs [, on_done]) -> true | nil, msg
-- jobs: array of {name=, digest=, layout= (absolute), ref=, idmap= (the
-- mapping to extract its layers in, or false)[, sha256= the package's
-- ctcli.base.filedigest memo]}. Layers shared by several
-- images are extracted once (the second finds the first's). Every image is
-- made in tmp/ first; one flush, then each is renamed in. rep: the reporter
-- (ctcli.base.report) whose bar follows the layers' bytes.
function M.unpack_all(paths, rep, jobs, on_done)
  -- What this call adds to blobs/ and layers/, taken back when it fails:
  -- a refused upgrade leaves the store as it was.
  local added = {}
  local places, drops = {}, {}
  local bar, progress
  if rep and #jobs > 0 then bar, progress = unpack_bar(rep, paths, jobs) end
  local function failed(job, err)
    if bar then bar.stop() end
    for _, drop in ipairs(drops) do drop() end
    for i = #added, 1, -1 do
      if not ct.fs.rmtree(added[i]) then ct.fs.unlink(added[i]) end
    end
    for _, d in ipairs({ "blobs/sha256", "blobs", "layers/" .. layers.mapping_name(job.idmap), "layers" }) do
      ct.fs.rmdir(paths.root .. "/" .. d) -- only when this call made them (empty now)
    end
    local vfs = ct.fs.statvfs(paths.tmp)
    if vfs and vfs.avail < 4 * 1024 * 1024 then
      return nil, string.format("unpacking the image of %s failed: not enough space in %s (%s free)",
        job.name, paths.tmp, vfs.avail // 1024 .. " KiB")
    end
    return nil, string.format("unpacking the image of %s failed: %s", job.name, err)
  end
  for i, job in ipairs(jobs) do
    local place, drop = import(paths, job, added, progress)
    if not place then return failed(job, drop) end
    places[i], drops[i] = place, drop
  end
  if #jobs == 0 then return true end
  local ok, err = scratch.flush(paths)
  if not ok then return failed(jobs[1], err) end
  for i, job in ipairs(jobs) do
    ok, err = places[i]()
    if not ok then
      if bar then bar.stop() end
      for k = i + 1, #jobs do drops[k]() end
      return nil, string.format("unpacking the image of %s failed: %s", job.name, err)
    end
    if on_done then on_done(job) end
  end
  if bar then bar.done() end
  return ct.fs.fsync(paths.images)
end

-- complete(paths, app, m) -> true | nil, msg: a layered image's layers in
-- mapping m (from the store's blobs, or its own oci/ after a restore) and
-- images/<key>/idmap saying so. Nothing for a flat image.
function M.complete(paths, app, m)
  local info, err = M.image_info(paths, app.name, app.image.digest)
  if not info then return nil, err end
  if not M.layered(info) then return true end
  local dir = M.dir(paths, app.name, app.image.digest)
  for _, l in ipairs(info.layers) do
    l.digest = l.blob
    if not ct.fs.exists(layers.blob_path(paths, l.blob)) then
      local ok, serr = layers.store_blobs(paths, dir .. "/oci", { l.blob })
      if not ok then return nil, serr end
    end
  end
  local ok, lerr = layers.ensure(paths, info.layers, m)
  if not ok then return nil, lerr end
  local userns = require("ctcli.store.idmap")
  local cur = userns.image_idmap(dir, paths)
  if cur == nil or not userns.equal(cur, m) or cur == "moving" then
    return ct.fs.write_atomic(dir .. "/idmap", userns.image_idmap_text(m), 420)
  end
  return true
end

-- rootfs(paths, app) -> the bundle's root.path of an app record: its
-- upper's merged/ or own copy, or images/<key>/rootfs for a flat image.
function M.rootfs(paths, app)
  if app.upper then return layers.root_path(paths, app.name, app.upper) end
  return M.dir(paths, app.name, app.image.digest) .. "/rootfs"
end

-- ensure_upper(paths, app, id, m) -> true | nil, msg: the upper `id` of an
-- app of a layered image (created empty, or as an own copy without overlayfs).
function M.ensure_upper(paths, app, id, m)
  local list, err = M.layers_of(paths, app.name, app.image.digest)
  if not list then return nil, err or ("the image of " .. app.name .. " has no layers") end
  for _, l in ipairs(list) do l.digest = l.blob end
  local dir, cerr = layers.create_upper(paths, { app = app.name, id = id, key = M.key(app.name, app.image.digest),
    layers = list, idmap = m })
  if not dir then return nil, cerr end
  return true
end

-- image_seed(paths, app) -> what appfs.prepare seeds configs and data from:
-- the flat rootfs, or a function finding a path in the image's layers.
function M.image_seed(paths, app)
  local list, m = M.layers_of(paths, app.name, app.image.digest)
  if not list then return M.dir(paths, app.name, app.image.digest) .. "/rootfs" end
  return function(p) return layers.find(paths, list, m, p) end
end

-- users(paths) -> map image key -> list of release ids using it
function M.users(paths)
  local users = {}
  local dirs = {}
  for _, id in ipairs(ct.fs.dir(paths.releases) or {}) do dirs[#dirs + 1] = { id, paths.releases .. "/" .. id } end
  -- A staged release uses its images too (shown as "staged:<id>").
  local sdir = paths.releases .. "/staged"
  for _, id in ipairs(ct.fs.dir(sdir) or {}) do
    if not id:match("^%.") then dirs[#dirs + 1] = { "staged:" .. id, sdir .. "/" .. id } end
  end
  for _, entry in ipairs(dirs) do
    local id = entry[1]
    local text = ct.fs.read(entry[2] .. "/release.json")
    local rel = text and json.decode(text)
    if rel and type(rel.apps) == "table" then
      for _, app in ipairs(rel.apps) do
        -- A broken record names no image (release.list says what is wrong).
        if type(app) == "table" and type(app.name) == "string" and type(app.image) == "table"
            and type(app.image.digest) == "string" then
          local k = M.key(app.name, app.image.digest)
          users[k] = users[k] or {}
          table.insert(users[k], id)
        end
      end
    end
  end
  return users
end

return M
