-- images --verify: every blob re-hashed against its digest, every extracted
-- layer's tree against the digest recorded at its extraction (a changed
-- layer is extracted again from its blob in tmp/ to name what changed),
-- and each flat image (a rootfs from before the layer store, which its app
-- wrote) compared with its layers: what the app changed there. A holder of
-- the root's lock runs it (tmp/).
local ct = require("ct")
local diff = require("ctcli.store.diff")
local layers = require("ctcli.store.layers")
local storeinfo = require("ctcli.store.info")

local M = {}

-- what_changed(paths, l, m) -> sorted changes of a layer's tree against a
-- fresh extraction of its blob, or nil (no blob, or the extraction failed).
local function what_changed(paths, l, m)
  local blob = l.record and l.record.blob
  if type(blob) ~= "string" or not ct.fs.exists(layers.blob_path(paths, blob)) then return nil end
  local tmp = ct.fs.mkdtemp(paths.tmp .. "/verify-XXXXXX")
  if not tmp then return nil end
  local out
  ct.fs.mkdir(tmp .. "/tree", 493)
  if ct.archive.extract(layers.blob_path(paths, blob), tmp .. "/tree",
    { preserve = true, whiteouts = "overlay", idmap = layers.idmap_opt(m) }) then
    local view = diff.tree_view(tmp .. "/tree")
    local changes = view and diff.of_tree(l.dir, view)
    if changes then out = diff.list(changes) end
  end
  ct.fs.rmtree(tmp)
  return out
end

-- run(paths [, progress]) -> report: {blobs=, layers=, problems = {{kind=,
-- name=, message=, changes=}}, notes = {strings}, flat = {{image=,
-- changes=} | {image=, error=}}}. progress(what) is called per item.
function M.run(paths, progress)
  progress = progress or function() end
  local report = { blobs = 0, layers = 0, problems = {}, notes = {}, flat = {} }
  local function problem(kind, name, message, changes)
    report.problems[#report.problems + 1] = { kind = kind, name = name, message = message, changes = changes }
  end
  local inodes = {}
  for _, b in ipairs(storeinfo.blobs(paths)) do
    progress(b.digest)
    report.blobs = report.blobs + 1
    local want = layers.hex(b.digest)
    local got, err = ct.hash.sha256_file(b.path)
    if not got then
      problem("blob", b.digest, "cannot be read: " .. tostring(err))
    elseif got ~= want then
      problem("blob", b.digest, "its content hashes to sha256:" .. got)
    end
    local st = ct.fs.lstat(b.path)
    if st then inodes[st.ino] = true end
  end
  local images = storeinfo.images(paths)
  local mapping_of = {}
  for _, im in ipairs(images) do
    if im.err then
      problem("image", im.key, im.err)
    elseif not im.flat then
      if im.mapping_name then mapping_of[im.mapping_name] = im.mapping end
      for d in pairs(im.blobs) do
        if not ct.fs.exists(layers.blob_path(paths, d)) then
          problem("image", im.key, "the store has no blob " .. d)
        end
      end
    end
    -- The image's own layout (for reset): hard links of the store's blobs,
    -- or copies where a link could not be made, checked as well.
    local odir = im.dir .. "/oci/blobs/sha256"
    for _, n in ipairs(ct.fs.dir(odir) or {}) do
      local st = ct.fs.lstat(odir .. "/" .. n)
      if st and st.type == "file" and not inodes[st.ino] then
        report.blobs = report.blobs + 1
        local got = ct.hash.sha256_file(odir .. "/" .. n)
        if got ~= n then
          problem("blob", "sha256:" .. n, string.format("%s's copy hashes to %s", im.key,
            got and ("sha256:" .. got) or "nothing (unreadable)"))
        end
      end
    end
  end
  for _, l in ipairs(storeinfo.layers(paths)) do
    progress(l.id)
    if not l.dir then
      report.notes[#report.notes + 1] = "layer " .. l.id .. " is not extracted (made again from its blob when needed)"
    elseif not l.record then
      problem("layer", l.id, "has no record (" .. l.dir .. ".json)")
    elseif type(l.record.tree) ~= "string" then
      report.notes[#report.notes + 1] = "layer " .. l.id .. " has no recorded tree digest to check"
    else
      report.layers = report.layers + 1
      local got, err = ct.fs.tree_digest(l.dir)
      if not got then
        problem("layer", l.id, "cannot be read: " .. tostring(err))
      elseif got ~= l.record.tree then
        local m = mapping_of[l.mapping]
        if m == nil and l.mapping == "host" then m = false end
        local changes = m ~= nil and what_changed(paths, l, m) or nil
        problem("layer", l.id, "its tree changed since its extraction (recorded " .. l.record.tree .. ", now " ..
          got .. ")", changes)
      end
    end
  end
  local refs = storeinfo.references(paths) or { images = {} }
  for _, im in ipairs(images) do
    if im.flat then
      progress(im.key)
      -- runc's mount points are not the app's changes: those of a release
      -- that runs the image.
      local rels = refs.images[im.key] and refs.images[im.key].releases or {}
      local mounts = rels[1] and diff.mounts_of(paths.releases .. "/" .. rels[1] .. "/apps/" .. im.app) or {}
      local changes, err = diff.flat(paths, im.app, im.digest, im.dir .. "/rootfs", mounts)
      if changes then
        report.flat[#report.flat + 1] = { image = im.key, changes = diff.list(changes) }
      else
        report.flat[#report.flat + 1] = { image = im.key, error = err }
      end
    end
  end
  return report
end

return M
