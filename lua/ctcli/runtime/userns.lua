-- User namespaces (DESIGN "Settled — user namespaces"): each root owns one
-- range of 65536 subordinate ids, allocated host-wide in /etc/subuid and
-- /etc/subgid for the `ctcli` user (podman's convention) and recorded in
-- state/idmap.json. An app runs with that range unless it opts out; its
-- image, data, config and logs are owned inside the mapping it runs with,
-- and it moves between mappings only while it is stopped.
--
-- A mapping is {uid=, gid=, size=} (container id 0 = host id uid/gid), or
-- false: no user namespace, container root is host root. Two mappings exist
-- in a root (none and its range), so moving a tree to one is shifting the
-- other one's ids to it: idempotent, and a move cut short by a crash is
-- finished by doing it again. A third, M.GO, is only ever moved from: the
-- Go ctcli's (container root = host root, container ids 1.. = host
-- 100000..), kept by the apps of an adopted root until their next start.
local ct = require("ct")
local json = require("ctcli.base.json")
local rootconf = require("ctcli.store.rootconf")
local statefile = require("ctcli.base.statefile")

local M = {}

M.SIZE = 65536
-- Below: useradd's first subordinate range (100000) and the Go tool's roots.
M.FIRST = 200000
M.USER = "ctcli"

local IDENTITY = { uid = 0, gid = 0, size = M.SIZE }

-- The Go ctcli's mapping: umoci's rootless one (0 -> 0, one id) plus the
-- range the Go tool appended (container 1.. -> host 100000.., 65536 ids).
-- Only its first 65535 ids have a place in a range of M.SIZE ids.
M.GO = { uid = 0, gid = 0, size = 1, go = true, rest = { container = 1, host = 100000, size = 65536 } }

function M.is_go(m) return type(m) == "table" and m.go == true end

---------------------------------------------------------------------------
-- The subordinate id files

-- The files' directory. CTCLI_SUBID_DIR exists for the tests only (each
-- spec its own files); it also skips creating the host's `ctcli` user.
local function subid_dir()
  return os.getenv("CTCLI_SUBID_DIR") or "/etc"
end

local function lock_path()
  local dir = os.getenv("CTCLI_SUBID_DIR")
  if dir then return dir .. "/ctcli-subid.lock" end
  return "/run/ctcli/subid.lock"
end

-- parse(text) -> array of {user=, start=, count=}
local function parse(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local user, start, count = line:match("^%s*([^:#%s][^:]*):(%d+):(%d+)%s*$")
    if user then out[#out + 1] = { user = user, start = tonumber(start), count = tonumber(count) } end
  end
  return out
end

local function overlaps(start, size, entries, skip)
  for _, e in ipairs(entries) do
    if e ~= skip and start < e.start + e.count and e.start < start + size then return e end
  end
  return nil
end

local function has_entry(entries, start, size)
  for _, e in ipairs(entries) do
    if e.user == M.USER and e.start == start and e.count == size then return e end
  end
  return nil
end

-- The `ctcli` system user the ranges belong to; only for the real files.
local function ensure_user()
  if os.getenv("CTCLI_SUBID_DIR") then return true end
  local passwd = ct.fs.read("/etc/passwd") or ""
  if passwd:find("\nctcli:", 1, true) or passwd:sub(1, 6) == "ctcli:" then return true end
  local r, err = ct.proc.run({ "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", M.USER },
    { timeout = 60 })
  if not r then return nil, "cannot create the ctcli user: " .. tostring(err) end
  if r.code ~= 0 and r.code ~= 9 then -- 9: it exists already
    return nil, "cannot create the ctcli user (useradd): " .. (r.stderr:match("[^\n]+") or ("exit " .. r.code))
  end
  return true
end

local function append_entry(file, text, start, size)
  if text ~= "" and text:sub(-1) ~= "\n" then text = text .. "\n" end
  return ct.fs.write_atomic(file, text .. string.format("%s:%d:%d\n", M.USER, start, size), 420)
end

local function state_file(paths)
  return paths.state .. "/idmap.json"
end

-- range(paths) -> the root's recorded range, or nil (none allocated yet).
-- A broken record is an error (nil, msg), never "none": allocating another
-- range would leave every file the apps own in the old one.
function M.range(paths)
  local doc, err = statefile.read(paths, state_file(paths), statefile.ROOT_IDMAP, statefile.HINT.root_idmap)
  if not doc then return nil, err end
  return { uid = doc.uid, gid = doc.gid, size = doc.size }
end

-- ensure_range(paths) -> range | nil, msg: the root's range, allocated now
-- (under a host-wide lock, the files replaced atomically) if it has none.
function M.ensure_range(paths)
  local have, herr = M.range(paths)
  if herr then return nil, herr end
  local dir = subid_dir()
  local files = { dir .. "/subuid", dir .. "/subgid" }
  local lp = lock_path()
  ct.fs.mkdir(lp:match("^(.*)/[^/]+$"), 448, true)
  local lock, lerr = ct.lock.acquire(lp, string.format("pid=%d command=subid\n", ct.proc.getpid()), 60)
  if not lock then return nil, "cannot lock " .. lp .. ": " .. tostring(lerr) end
  local function done(...) lock:release() return ... end
  local texts, entries, all = {}, {}, {}
  for i, f in ipairs(files) do
    texts[i] = ct.fs.read(f) or ""
    entries[i] = parse(texts[i])
    for _, e in ipairs(entries[i]) do all[#all + 1] = e end
  end
  if have and has_entry(entries[1], have.uid, have.size) and has_entry(entries[2], have.gid, have.size) then
    return done(have)
  end
  if not have then
    local ok, uerr = ensure_user()
    if not ok then return done(nil, uerr) end
  end
  local base = have and have.uid
  if not base then
    base = M.FIRST
    while true do
      local e = overlaps(base, M.SIZE, all)
      if not e then break end
      -- Next multiple of the size past the entry in the way.
      base = ((e.start + e.count + M.SIZE - 1) // M.SIZE) * M.SIZE
      if base + M.SIZE > 4294967294 then return done(nil, "no free range of subordinate ids in " .. dir) end
    end
  end
  for i, f in ipairs(files) do
    if not has_entry(entries[i], base, M.SIZE) then
      local e = overlaps(base, M.SIZE, entries[i])
      if e then
        return done(nil, string.format("%s: the root's id range %d-%d overlaps %s's entry %d:%d; remove one of them",
          f, base, base + M.SIZE - 1, e.user, e.start, e.count))
      end
      local ok, werr = append_entry(f, texts[i], base, M.SIZE)
      if not ok then return done(nil, "cannot write " .. f .. ": " .. tostring(werr)) end
    end
  end
  local r = { uid = base, gid = base, size = M.SIZE }
  if not have then
    local ok, werr = ct.fs.write_atomic(state_file(paths), json.encode(r, true) .. "\n", 420)
    if not ok then return done(nil, werr) end
  end
  return done(r)
end

---------------------------------------------------------------------------
-- Which mapping an app runs with

-- desired(app, conf, range) -> mapping | false, and where an opt-out comes from.
-- The operator's ctcli.json wins over the manifest.
function M.desired(app, conf, range)
  local over = rootconf.app(conf, app.name).user_namespace
  if over == false then return false, "ctcli.json" end
  if over == nil and app.user_namespace == false then return false, "manifest" end
  return range or false, nil
end

-- opted_out(app, conf) -> "manifest" | "ctcli.json" when the app runs
-- without a user namespace, else nil.
function M.opted_out(app, conf)
  local _, source = M.desired(app, conf, true)
  return source
end

function M.equal(a, b)
  if not a or not b then return not a and not b end
  if M.is_go(a) or M.is_go(b) then return M.is_go(a) and M.is_go(b) end
  return a.uid == b.uid and a.gid == b.gid and a.size == b.size
end

local function app_state_file(paths, name)
  return paths.state .. "/apps/" .. name .. ".json"
end

-- recorded(paths, name) -> the mapping the app last started with; false for
-- one never started with a mapping (every app before user namespaces).
-- A broken record: nil, msg.
function M.recorded(paths, name)
  local doc, err = statefile.read(paths, app_state_file(paths, name), statefile.APP_STATE, statefile.HINT.app_state)
  if doc == nil then return nil, err end
  if not doc then return false end
  if doc.idmap == "go" then return M.GO end
  if type(doc.idmap) ~= "table" then return false end
  return { uid = doc.idmap.uid, gid = doc.idmap.gid, size = doc.idmap.size }
end

-- check_records(paths) -> true | nil, msg: state/idmap.json and every state/apps/<app>.json read.
function M.check_records(paths)
  local _, err = M.range(paths)
  if err then return nil, err end
  for _, f in ipairs(ct.fs.dir(paths.state .. "/apps") or {}) do
    local name = f:match("^(.+)%.json$")
    if name then
      local m, rerr = M.recorded(paths, name)
      if m == nil then return nil, rerr end
    end
  end
  return true
end

local function record(paths, name, m)
  ct.fs.mkdir(paths.state .. "/apps", 493, true)
  local v = m or false
  if M.is_go(m) then v = "go" end
  return ct.fs.write_atomic(app_state_file(paths, name), json.encode({ idmap = v }, true) .. "\n", 420)
end
M.record = record

---------------------------------------------------------------------------
-- Re-owning trees

-- shift(parent, rel, from, to) -> true | nil, msg: the ids of parent/rel
-- (a tree an app may write) in `from` moved to `to`, beneath a handle of
-- parent, never following a symlink.
-- From M.GO it is two shifts (its root, then its other ids); the target's
-- range is disjoint from 100000.. (see M.FIRST), so doing it again after a
-- crash moves only what the first time did not.
local function segments(from, to)
  to = to or IDENTITY
  if not M.is_go(from) then return { { from, to } } end
  local n = math.min(from.rest.size, to.size - 1)
  return {
    { { uid = 0, gid = 0, size = 1 }, { uid = to.uid, gid = to.gid, size = 1 } },
    { { uid = from.rest.host, gid = from.rest.host, size = n }, { uid = to.uid + 1, gid = to.gid + 1, size = n } },
  }
end

local function shift(parent, rel, from, to)
  if M.equal(from, to) then return true end
  if not ct.fs.lstat(parent .. "/" .. rel) then return true end
  local d, err = ct.fs.opendir(parent)
  if not d then return nil, err end
  for _, seg in ipairs(segments(from, to)) do
    if not M.equal(seg[1], seg[2]) then
      local ok, serr = d:shift_tree(rel, seg[1], seg[2])
      if not ok then d:close() return nil, serr end
    end
  end
  d:close()
  return true
end
M.shift = shift

---------------------------------------------------------------------------
-- The image store's record of the mapping a rootfs is unpacked with:
-- images/<key>/idmap, "none", "<uid>:<gid>:<size>" or "moving" (a shift
-- began; finish it whatever the target). Absent: unpacked before user
-- namespaces, so with none.

function M.image_idmap_text(m)
  if not m then return "none\n" end
  if M.is_go(m) then return "go\n" end
  return string.format("%d:%d:%d\n", m.uid, m.gid, m.size)
end

-- image_idmap(dir [, paths]) -> mapping | false, or "moving" (and M.GO
-- when the move began from it) | nil, msg when the record holds anything
-- else (which ids own the rootfs is then unknown).
function M.image_idmap(dir, paths)
  local text = ct.fs.read(dir .. "/idmap")
  if not text then return false end
  if text:match("^moving\n?$") then return "moving" end
  if text:match("^moving go\n?$") then return "moving", M.GO end
  if text:match("^none\n?$") then return false end
  if text:match("^go\n?$") then return M.GO end
  local u, g, s = text:match("^(%d+):(%d+):(%d+)\n?$")
  if u then return { uid = tonumber(u), gid = tonumber(g), size = tonumber(s) } end
  local key = dir:match("([^/]+)$")
  local what = "expected \"none\", \"moving\" or \"UID:GID:SIZE\", found " .. json.encode(text:sub(1, 40))
  local hint = string.format(statefile.HINT.image, key, key)
  if paths then return nil, statefile.problem(paths, dir .. "/idmap", what, hint) end
  return nil, dir .. "/idmap: " .. what .. "; " .. hint
end

-- umoci_args(m) -> the extra arguments of `umoci unpack` for mapping m.
function M.umoci_args(m)
  if not m then return {} end
  return {
    "--uid-map", string.format("0:%d:%d", m.uid, m.size),
    "--gid-map", string.format("0:%d:%d", m.gid, m.size),
  }
end

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
  -- The link adoption left for the container the Go ctcli started (ctcli.adopt)
  -- has served its time once the app starts again.
  local link = rel.dir .. "/apps/" .. app.name .. "/rootfs"
  local lst = ct.fs.lstat(link)
  if lst and lst.type == "link" then ct.fs.unlink(link) end
  local release = require("ctcli.store.release")
  local cfg, cerr = release.app_config(paths, app, m)
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
