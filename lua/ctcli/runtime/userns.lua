-- Moving apps into and out of user namespaces: the directories a mapped
-- root must traverse, an app's image, data and config shifted to the
-- mapping it starts with, and the hints when it cannot. The mappings
-- themselves and their records are ctcli.store.idmap's (re-exported here,
-- so a runtime caller needs one module).
local ct = require("ct")
local idmap = require("ctcli.store.idmap")
local rootconf = require("ctcli.store.rootconf")
local bundle = require("ctcli.runtime.bundle")

local M = {}
for k, v in pairs(idmap) do M[k] = v end
local IDENTITY = { uid = 0, gid = 0, size = M.SIZE }
local record, shift, segments = M.record, M.shift, M.segments
---------------------------------------------------------------------------
-- Moving an app to its mapping (only while it is stopped)

local function as_range(m) return m or IDENTITY end

-- The directories above a bundle and a rootfs: owner root, group the mapped
-- root's, 0710 (the mapped root traverses them, no other host user does).
local function own_dir(path, gid, mode)
  if not ct.fs.exists(path) then return true end
  local ok, err = ct.fs.lchown(path, 0, gid)
  if ok then ok, err = ct.fs.chmod(path, mode) end
  return ok, err
end

-- reachable(paths, m) -> true | nil, msg: the mapped root must search every
-- directory above the root to reach the rootfs; say which one it cannot.
local function reachable(paths, m)
  if not m then return true end
  local dir = paths.root
  while dir do
    local d = dir == "" and "/" or dir
    local st = ct.fs.stat(d)
    if st and st.mode & 1 == 0 and not (st.gid == m.gid and st.mode & 8 ~= 0) then
      return nil, string.format("%s is not searchable by other users, so the root's user namespace (ids %d-%d) " ..
        "cannot reach its images; run 'chmod o+x %s' (or opt the app out of the user namespace)",
        d, m.uid, m.uid + m.size - 1, d)
    end
    dir = dir ~= "" and dir:match("^(.*)/[^/]*$") or nil
  end
  return true
end

function M.secure_dirs(paths, rel, app, m, range)
  local rok, rerr = reachable(paths, m)
  if not rok then return nil, rerr end
  local shared_gid = range and range.gid or 0
  local shared_mode = range and 456 or 448 -- 0710 : 0700
  local gid, mode = m and m.gid or 0, m and 456 or 448
  local store = require("ctcli.store.images")
  local list = {
    { paths.releases, shared_gid, shared_mode, true },
    { rel.dir, shared_gid, shared_mode },
    { rel.dir .. "/apps", shared_gid, shared_mode },
    { rel.dir .. "/apps/" .. app.name, gid, mode },
    { paths.images, shared_gid, shared_mode },
    { store.dir(paths, app.name, app.image.digest), gid, mode },
  }
  if app.upper then
    local layers = require("ctcli.store.layers")
    list[#list + 1] = { layers.uppers_root(paths), shared_gid, shared_mode }
    list[#list + 1] = { layers.uppers_root(paths) .. "/" .. app.name, gid, mode }
    list[#list + 1] = { layers.upper_dir(paths, app.name, app.upper), gid, mode }
  end
  for _, d in ipairs(list) do
    -- releases/ keeps other users out only when a range exists; without
    -- one it keeps its mode (backups stay 0700 beneath it either way).
    if not (d[4] and not range) then
      local ok, err = own_dir(d[1], d[2], d[3])
      if not ok then return nil, err end
    end
  end
  return true
end

-- context(paths) -> {conf=, range=} | nil, msg: what prepare needs, read once
-- per command; allocates the root's range when the root has none.
function M.context(paths)
  local conf, err = rootconf.load(paths)
  if not conf then return nil, err end
  local range, rerr = M.ensure_range(paths)
  if not range then return nil, rerr end
  return { conf = conf, range = range }
end

-- Moving an app, in three parts around apps.prepare_files (which seeds
-- from the rootfs and creates files as host root). The app must be stopped.
-- prepare_image(paths, uc, app) -> mapping | false | nil, msg: its rootfs
-- in the mapping it is to run with.
-- An image of the layer store moves by having its layers of the new
-- mapping extracted (from the store's blobs; layers are never shifted) and
-- the app's upper shifted, as a rootfs was.
local function prepare_layered(paths, uc, app, m)
  local store = require("ctcli.store.images")
  local ok, err = store.complete(paths, app, m)
  if not ok then return nil, "cannot prepare the image of " .. app.name .. ": " .. tostring(err) end
  if not app.upper then return m end
  local layers = require("ctcli.store.layers")
  local udir = layers.upper_dir(paths, app.name, app.upper)
  if not ct.fs.exists(udir .. "/upper.json") then
    -- Named by a release and gone (a backup restored into another root): a fresh one.
    ok, err = store.ensure_upper(paths, app, app.upper, m)
    if not ok then return nil, "cannot make the writable layer of " .. app.name .. ": " .. tostring(err) end
    return m
  end
  local cur, cerr = M.image_idmap(udir, paths)
  if cur == nil then return nil, cerr end
  if cur == "moving" or not M.equal(cur, m) then
    -- A mount left from before the move would show the old mapping's layers.
    ok, err = require("ctcli.runtime.overlay").release(paths, app)
    if ok then ok, err = ct.fs.write_atomic(udir .. "/idmap", "moving\n", 420) end
    if ok then ok, err = shift(udir, layers.top(paths, app.name, app.upper), as_range(not m and uc.range), as_range(m)) end
    if ok then ok, err = ct.fs.lchown(udir, 0, m and m.gid or 0) end
    if ok then ok, err = ct.fs.write_atomic(udir .. "/idmap", M.image_idmap_text(m), 420) end
    if not ok then return nil, "cannot re-own the writable layer of " .. app.name .. ": " .. tostring(err) end
  end
  return m
end

function M.prepare_image(paths, uc, app)
  local store = require("ctcli.store.images")
  local m = M.desired(app, uc.conf, uc.range)
  local info, ierr = store.image_info(paths, app.name, app.image.digest)
  if not info then return nil, ierr end
  if store.layered(info) then return prepare_layered(paths, uc, app, m) end
  local target, other = as_range(m), as_range(not m and uc.range)
  local idir = store.dir(paths, app.name, app.image.digest)
  local cur, cerr = M.image_idmap(idir, paths)
  if cur == nil then return nil, cerr end
  if cur == "moving" or not M.equal(cur, m) then
    local from = other
    if M.is_go(cur) or M.is_go(cerr) then from = M.GO end
    local ok, err = ct.fs.write_atomic(idir .. "/idmap", M.is_go(from) and "moving go\n" or "moving\n", 420)
    if ok then ok, err = shift(idir, "rootfs", from, target) end
    if ok then ok, err = ct.fs.write_atomic(idir .. "/idmap", M.image_idmap_text(m), 420) end
    if not ok then return nil, "cannot re-own the image of " .. app.name .. ": " .. tostring(err) end
  end
  return m
end

-- prepare_files(paths, uc, app) -> mapping | false | nil, msg: its config,
-- data and logs in that mapping, including what the host made there since
-- (seeds, hooks, migrations, the operator's edits): they keep the owner
-- they have as seen from inside.
function M.prepare_files(paths, uc, app)
  local m = M.desired(app, uc.conf, uc.range)
  local target, other = as_range(m), as_range(not m and uc.range)
  -- An adopted app's files are in the Go tool's mapping until it moves.
  local was, werr = M.recorded(paths, app.name)
  if was == nil then return nil, werr end
  if M.is_go(was) then other = M.GO end
  if not M.equal(other, target) then
    for _, seg in ipairs(segments(other, target)) do
      if not M.equal(seg[1], seg[2]) then
        local ok, err = require("ctcli.runtime.appfs").shift_trees(paths, app.name, seg[1], seg[2])
        if not ok then return nil, "cannot re-own the files of " .. app.name .. ": " .. tostring(err) end
      end
    end
  end
  return m
end

-- finish(paths, uc, rel, app, m) -> true | nil, msg: the directories above
-- its bundle and rootfs, its bundle regenerated with today's defaults and
-- mapping (a release made before this change too), the mapping recorded.
function M.finish(paths, uc, rel, app, m)
  local ok, err = M.secure_dirs(paths, rel, app, m, uc.range)
  if not ok then return nil, err end
  -- The link adoption left for the container the Go ctcli started (ctcli.services.adopt)
  -- has served its time once the app starts again.
  local link = rel.dir .. "/apps/" .. app.name .. "/rootfs"
  local lst = ct.fs.lstat(link)
  if lst and lst.type == "link" then ct.fs.unlink(link) end
  local release = require("ctcli.store.release")
  local cfg, cerr = bundle.app_config(paths, app, m)
  if not cfg then return nil, cerr end
  local file = release.bundle_dir(rel, app.name) .. "/config.json"
  -- A bundle made before (an older release, another opt-out): today's.
  if ct.fs.read(file) ~= cfg then
    ok, err = ct.fs.write_atomic(file, cfg, 420)
    if not ok then return nil, err end
  end
  return record(paths, app.name, m)
end

-- adopt_restored(paths, dir, info) -> true | nil, msg: a backup extracted
-- into dir (config/, data/, images/) made in a root with another range has
-- its apps' trees and images shifted to this root's range (or to none when
-- this root has none); the next start then moves each app as usual.
function M.adopt_restored(paths, dir, info)
  local range, rerr = M.range(paths)
  if rerr then return nil, rerr end
  local target = as_range(range)
  for name, a in pairs(type(info.apps) == "table" and info.apps or {}) do
    local m = type(a) == "table" and type(a.idmap) == "table" and a.idmap or nil
    if type(a) == "table" and a.idmap == "go" then m = M.GO end
    if m and math.type(m.uid) == "integer" and not M.equal(m, range) then
      for _, sub in ipairs({ "data", "config" }) do
        local ok, err = shift(dir .. "/" .. sub, name, m, target)
        if not ok then return nil, "cannot re-own the restored " .. sub .. " of " .. name .. ": " .. tostring(err) end
      end
    end
  end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    local idir = dir .. "/images/" .. key
    local m = M.image_idmap(idir)
    if type(m) == "table" and not M.equal(m, range) then
      local ok, err = shift(idir, "rootfs", m, target)
      if ok then ok, err = ct.fs.write_atomic(idir .. "/idmap", M.image_idmap_text(range), 420) end
      if not ok then return nil, "cannot re-own the restored image " .. key .. ": " .. tostring(err) end
    end
  end
  return true
end

---------------------------------------------------------------------------
-- Reporting

-- describe(m, source) -> "userns 200000-265535" | "userns" (m true) |
-- "privileged (opted out in ...)" | "privileged"
function M.describe(m, source)
  if m == true then return "userns" end
  if M.is_go(m) then return "privileged (the Go ctcli's mapping: container root is host root, until its next start)" end
  if m then return string.format("userns %d-%d", m.uid, m.uid + m.size - 1) end
  if source then return "privileged (opted out in " .. source .. ")" end
  return "privileged"
end

M.BIND_HINT = "root in a user namespace has no CAP_NET_BIND_SERVICE on the host's network, " ..
  "so it cannot bind a port below 1024 there; if %s needs one, opt it out with " ..
  "'\"user_namespace\": false' in its manifest or in %s/ctcli.json " ..
  "({\"apps\": {\"%s\": {\"user_namespace\": false}}}), or give it \"network\": \"isolated\""

-- hint(paths, app, m) -> a hint for a failed start of a mapped app on the
-- host's network whose log says a bind was refused, else nil.
function M.hint(paths, app, m)
  if not m or app.network == "isolated" then return nil end
  local log = require("ctcli.runtime.runc").monitor.tail(paths, app.name, 65536) or ""
  local lower = log:lower()
  if lower:find("bind", 1, true) and (lower:find("permission denied", 1, true) or lower:find("eacces", 1, true)) then
    return string.format(M.BIND_HINT, app.name, paths.root, app.name)
  end
  return nil
end

return M
