-- The image store: images/<app>@<digest>/{rootfs/, image.json, oci/}, one per app
-- and image digest, shared by every release that has that app at that
-- digest. umoci unpacks into tmp/; the rootfs is renamed into place (no copy).
local ct = require("ct")
local json = require("ctcli.json")
local rootmod = require("ctcli.root")
local statefile = require("ctcli.statefile")

local M = {}

function M.key(app_name, digest)
  return app_name .. "@" .. digest
end

function M.dir(paths, app_name, digest)
  return paths.images .. "/" .. M.key(app_name, digest)
end

function M.has(paths, app_name, digest)
  local d = M.dir(paths, app_name, digest)
  return ct.fs.exists(d .. "/rootfs") and ct.fs.exists(d .. "/image.json")
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
    local m, merr = require("ctcli.userns").image_idmap(dir, paths)
    if m == nil then return nil, merr end
  end
  return true
end

-- What the image itself says about its process, read from the runtime
-- config umoci generates (we never edit that file; we write our own).
local function process_of(bundle)
  local text = ct.fs.read(bundle .. "/config.json")
  local cfg = text and json.decode(text) or {}
  local p = type(cfg.process) == "table" and cfg.process or {}
  return {
    args = p.args or json.array(),
    env = p.env or json.array(),
    cwd = p.cwd or "/",
    user = type(p.user) == "table" and { uid = p.user.uid or 0, gid = p.user.gid or 0 } or { uid = 0, gid = 0 },
  }
end

-- keep_layout(layout, ref, dest) -> true | nil, msg: an OCI layout at dest
-- holding only ref's image (index.json, its manifest, config and layers),
-- so `reset` can unpack the image again after the package is gone. Blobs
-- are hard-linked where they can be (tmp/ and images/ share a filesystem).
local function keep_layout(layout, ref, dest)
  local index = json.decode(ct.fs.read(layout .. "/index.json") or "null")
  local desc
  for _, m in ipairs(type(index) == "table" and index.manifests or {}) do
    local ann = type(m.annotations) == "table" and m.annotations or {}
    if ann["org.opencontainers.image.ref.name"] == ref then desc = m end
  end
  local function blob(digest)
    return "/blobs/" .. tostring(digest):gsub(":", "/", 1)
  end
  local manifest = desc and json.decode(ct.fs.read(layout .. blob(desc.digest)) or "null")
  if type(manifest) ~= "table" or type(manifest.layers) ~= "table" then
    -- Not a plain image manifest (an index of platforms...): keep it all.
    return ct.fs.copytree(layout, dest)
  end
  local ok, err = ct.fs.mkdir(dest .. "/blobs/sha256", 493, true)
  if not ok then return nil, err end
  local digests = { desc.digest, manifest.config and manifest.config.digest }
  for _, l in ipairs(manifest.layers) do digests[#digests + 1] = l.digest end
  for _, d in ipairs(digests) do
    local from, to = layout .. blob(d), dest .. blob(d)
    if not ct.fs.exists(to) and not ct.fs.link(from, to) then
      ok, err = ct.fs.copyfile(from, to, 420)
      if not ok then return nil, err end
    end
  end
  ok, err = ct.fs.copyfile(layout .. "/oci-layout", dest .. "/oci-layout", 420)
  if ok then
    ok, err = ct.fs.write_atomic(dest .. "/index.json",
      json.encode({ schemaVersion = 2, manifests = json.array({ desc }) }) .. "\n", 420)
  end
  return ok, err
end

-- unpack_all(paths, umoci, jobs) -> true | nil, msg
-- jobs: array of {name=, digest=, layout= (absolute), ref=, idmap= (the
-- mapping to unpack with, or false)}. Runs the
-- unpacks in parallel over the cores; each lands in images/ by rename.
function M.unpack_all(paths, umoci, jobs, on_done)
  if #jobs == 0 then return true end
  if not umoci then return nil, "umoci not found: install it or ship it in the package" end
  local workers = 2
  local f = io.open("/proc/cpuinfo")
  if f then
    local n = 0
    for line in f:lines() do if line:match("^processor") then n = n + 1 end end
    f:close()
    if n > 0 then workers = n end
  end
  local running, failed = {}, nil
  local next_job = 1
  local function launch(job)
    local dir, err = ct.fs.mkdtemp(paths.tmp .. "/unpack-" .. job.name .. "-XXXXXX")
    if not dir then return nil, err end
    job.tmp = dir
    job.bundle = dir .. "/bundle"
    job.errlog = dir .. "/umoci.log"
    -- With the root's mapping the rootfs is owned by the mapped ids (job.idmap).
    local argv = { umoci, "unpack" }
    for _, a in ipairs(require("ctcli.userns").umoci_args(job.idmap)) do argv[#argv + 1] = a end
    for _, a in ipairs({ "--image", job.layout .. ":" .. job.ref, job.bundle }) do argv[#argv + 1] = a end
    local p, serr = ct.proc.spawn(argv, { stdout = "null", stderr = { append = job.errlog } })
    if not p then return nil, serr end
    job.proc = p
    return true
  end
  local function finish(job)
    local code = job.proc:wait()
    job.proc:close()
    if code ~= 0 then
      local log = ct.fs.read(job.errlog) or ""
      local last = ""
      for line in log:gmatch("[^\n]+") do last = line end
      -- On a full disk umoci's log (in tmp/ too) may be cut short: ask the disk.
      local vfs = ct.fs.statvfs(paths.tmp)
      local full = log:find("no space left on device", 1, true) or (vfs and vfs.avail < 4 * 1024 * 1024)
      ct.fs.rmtree(job.tmp)
      if full then
        return nil, string.format("unpacking the image of %s failed: not enough space in %s (%s free)",
          job.name, paths.tmp, vfs and (vfs.avail // 1024 .. " KiB") or "?")
      end
      return nil, string.format("unpacking the image of %s failed: %s", job.name, last)
    end
    -- No device node from a layer reaches images/: runc gives every
    -- container its own /dev, and a node in a rootfs would only serve
    -- whoever reaches the tree from the host. The count stays in image.json.
    local removed, derr = ct.fs.remove_devices(job.bundle .. "/rootfs")
    if not removed then
      ct.fs.rmtree(job.tmp)
      return nil, string.format("unpacking the image of %s failed: %s", job.name, derr)
    end
    local info = process_of(job.bundle)
    local ok, err = ct.fs.write_atomic(job.bundle .. "/image.json", json.encode({
      app = job.name, digest = job.digest, process = info, devices_removed = #removed,
    }, true))
    if not ok then ct.fs.rmtree(job.tmp) return nil, err end
    local final = M.dir(paths, job.name, job.digest)
    local img = job.tmp .. "/image"
    ct.fs.mkdir(img, rootmod.MODES.image_dir)
    -- The mapped root must get through to its rootfs (a migration's
    -- temporary container runs before any start secures the dirs).
    if job.idmap then ct.fs.lchown(img, 0, job.idmap.gid) end
    ok, err = ct.fs.rename(job.bundle .. "/rootfs", img .. "/rootfs")
    if ok then ok, err = ct.fs.rename(job.bundle .. "/image.json", img .. "/image.json") end
    if ok then
      ok, err = ct.fs.write_atomic(img .. "/idmap", require("ctcli.userns").image_idmap_text(job.idmap), 420)
    end
    -- The image itself stays too (images/<key>/oci/), for `reset`.
    if ok then ok, err = keep_layout(job.layout, job.ref, img .. "/oci") end
    -- A stage (which holds no root lock) places under the root's lock
    -- (paths.store_guard), and keeps a complete copy another command placed
    -- meanwhile: a release may use it already.
    local function place()
      if ct.fs.exists(final) then
        if paths.store_guard and M.has(paths, job.name, job.digest) then return true end
        -- A leftover from an interrupted run: the complete copy we just made wins.
        ct.fs.rmtree(final)
      end
      return ct.fs.rename(img, final)
    end
    if ok then ok, err = (paths.store_guard or function(fn) return fn() end)(place) end
    ct.fs.rmtree(job.tmp)
    if not ok then return nil, err end
    if on_done then on_done(job) end
    return true
  end
  while next_job <= #jobs or #running > 0 do
    while not failed and next_job <= #jobs and #running < workers do
      local job = jobs[next_job]
      next_job = next_job + 1
      local ok, err = launch(job)
      if not ok then failed = err break end
      running[#running + 1] = job
    end
    if #running == 0 then break end
    -- Wait for the oldest: unpacks are of similar cost, and a simple FIFO
    -- keeps every core busy without a wait-any primitive.
    local job = table.remove(running, 1)
    local ok, err = finish(job)
    if not ok and not failed then failed = err end
  end
  if failed then return nil, failed end
  return true
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
