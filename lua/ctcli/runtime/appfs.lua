-- The trees an app can write: logs/<app>, data/<app> and config/<app>
-- (DESIGN §2, the threat model). An app may plant symlinks, FIFOs, sockets
-- or devices there and swap them between two system calls, so host-side
-- code touches them only through a directory handle of the app's own dir
-- (ct.fs.opendir: every path resolved beneath it, no symlink followed, the
-- file type checked on the open descriptor). This module is the only one
-- that builds paths inside those trees; the rest of ctcli asks it.
local ct = require("ct")

local M = {}

M.LOG = "stdout-stderr.log"
-- Earlier runs' logs kept on start (as the Go tool rotated on start).
M.KEEP_RUNS = 5

local KINDS = { config = true, data = true, logs = true }

-- host_paths(paths, app) -> the app's three trees as path strings; only
-- for runc's bind sources (checked by check_binds first) and for display.
function M.host_paths(paths, app)
  return {
    config = paths.config .. "/" .. app,
    data = paths.data .. "/" .. app,
    logs = paths.logs .. "/" .. app,
  }
end

-- dir(paths, app, kind [, create]) -> Dir | nil, msg
-- kind: "config", "data" or "logs"; create: make the app's dir (0700) when
-- missing. The root's own config/, data/ and logs/ are the operator's.
function M.dir(paths, app, kind, create)
  assert(KINDS[kind], "appfs.dir: unknown kind")
  local base, err = ct.fs.opendir(paths[kind])
  if not base then
    if create then
      local ok, merr = ct.fs.mkdir(paths[kind], 448, true)
      if not ok then return nil, merr end
      base, err = ct.fs.opendir(paths[kind])
    end
    if not base then return nil, err end
  end
  local d, derr = base:opendir(app, create and 448 or nil)
  base:close()
  return d, derr
end

local function with_dir(paths, app, kind, create, fn)
  local d, err = M.dir(paths, app, kind, create)
  if not d then return nil, err end
  local r1, r2, r3 = fn(d)
  d:close()
  return r1, r2, r3
end

-- rel(p) -> a manifest's absolute container path as a path beneath the
-- app's dir ("/etc/app.conf" -> "etc/app.conf").
local function rel(p)
  return (p:gsub("^/+", ""))
end

-- usage(paths, app, kind) -> bytes, newest mtime (seconds; 0 when empty)
-- of the app's tree, walked beneath its handle (a link is counted, never
-- followed). What a rollback shows it is about to replace.
function M.usage(paths, app, kind)
  local d = M.dir(paths, app, kind)
  if not d then return 0, 0 end
  local bytes, newest = 0, 0
  local function walk(at)
    for _, name in ipairs(d:list(at) or {}) do
      local path = at == "." and name or (at .. "/" .. name)
      local st = d:stat(path)
      if st then
        if st.mtime and st.mtime > newest then newest = st.mtime end
        if st.type == "dir" then walk(path) else bytes = bytes + (st.size or 0) end
      end
    end
  end
  walk(".")
  d:close()
  return bytes, newest
end

local function describe(st)
  local what = { link = "a symlink", fifo = "a FIFO", socket = "a socket", char = "a device",
    block = "a device", dir = "a directory", file = "a file" }
  return what[st.type] or st.type
end

-- ---- stdout/stderr log ----------------------------------------------------

-- Shift stdout-stderr.log.1..KEEP_RUNS-1 up by one and the live log to .1.
-- rename(2) never follows a symlink, so whatever the app planted under
-- these names moves (or, the oldest, is removed) without being opened.
local function shift_runs(d)
  local ok, err = d:rmtree(string.format("%s.%d", M.LOG, M.KEEP_RUNS))
  if not ok then return nil, err end
  for i = M.KEEP_RUNS - 1, 1, -1 do
    local from = string.format("%s.%d", M.LOG, i)
    if d:exists(from) then
      local rok, rerr = d:rename(from, string.format("%s.%d", M.LOG, i + 1))
      if not rok then return nil, rerr end
    end
  end
  return d:rename(M.LOG, M.LOG .. ".1")
end

-- open_run_log(paths, app [, idmap]) -> File for a new run's output | nil, msg
-- The log of the previous run becomes .1 (when it holds anything: a
-- restart that failed at once leaves an empty one, which is reused), and
-- the new one is a file we create: never a path the app prepared.
function M.open_run_log(paths, app, idmap)
  return with_dir(paths, app, "logs", true, function(d)
    local st = d:stat(M.LOG)
    if st and not (st.type == "file" and st.size == 0 and st.nlink == 1) then
      local ok, err = shift_runs(d)
      if not ok then return nil, err end
    elseif st then
      local ok, err = d:unlink(M.LOG)
      if not ok then return nil, err end
    end
    local f, ferr = d:open(M.LOG, { write = true, create = true, excl = true, append = true, mode = 416 })
    -- Owned by the container's root, so the app can reopen its own stdout
    -- (/proc/self/fd/1, /dev/stdout) inside a user namespace.
    if f and idmap then
      local ok, cerr = d:chown(M.LOG, idmap.uid, idmap.gid)
      if not ok then f:close() return nil, cerr end
    end
    return f, ferr
  end)
end

-- open_log(paths, app [, name]) -> File (read-only) | nil, msg
-- name: the live log (default) or a rotated one; anything but a regular
-- file is refused with a message naming it.
function M.open_log(paths, app, name)
  return with_dir(paths, app, "logs", false, function(d)
    return d:open(name or M.LOG, {})
  end)
end

-- The Go ctcli moved each earlier run's log into this dir when it started
-- the app again, named by the UTC time of the move (Go's RFC 3339 layout,
-- "2006-01-02T15:04:05Z.log"), so the names sort by time.
M.GO_ARCHIVE = "stdout-stderr-arch"
local GO_ARCHIVED = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ%.log$"

-- newest_go_archived(d) -> the name (beneath d) of the newest log in the Go
-- tool's archive | nil [, msg when the archive is there but not a directory
-- we may list, e.g. a symlink]
local function newest_go_archived(d)
  local names, err = d:list(M.GO_ARCHIVE)
  if not names then
    local st = d:stat(M.GO_ARCHIVE)
    if not st then return nil end
    if st.type ~= "dir" then
      return nil, string.format("%s is %s (made inside the container?); not following it",
        d:path(M.GO_ARCHIVE), describe(st))
    end
    return nil, err
  end
  local newest
  for _, n in ipairs(names) do
    if n:match(GO_ARCHIVED) and (not newest or n > newest) then newest = n end
  end
  return newest and (M.GO_ARCHIVE .. "/" .. newest) or nil
end

-- open_previous_log(paths, app) -> File (read-only), its display path | nil, msg
-- The log of the app's newest earlier run. The one place that decides which
-- file that is: today the newest in the Go tool's archive; ctcli's own
-- scheme for earlier runs joins the candidates here. The entry is opened
-- beneath the app's logs dir, a regular file only: a symlink (or anything
-- else) the app planted under that name is refused, never followed.
function M.open_previous_log(paths, app)
  local d, derr = M.dir(paths, app, "logs", false)
  if not d then return nil, string.format("%s: no logs (%s)", app, derr) end
  local entry, lerr = newest_go_archived(d)
  if not entry then
    local shown = d:path(M.GO_ARCHIVE)
    d:close()
    if lerr then return nil, lerr end
    return nil, string.format("%s: no log of an earlier run (none in %s/, where the Go ctcli kept them)", app, shown)
  end
  local st = d:stat(entry)
  if st and st.type ~= "file" then
    local msg = string.format("%s is %s (made inside the container?); not following it", d:path(entry), describe(st))
    d:close()
    return nil, msg
  end
  local f, ferr = d:open(entry, {})
  local shown = d:path(entry)
  d:close()
  if not f then return nil, ferr end
  return f, shown
end

-- read_log_tail(paths, app, max) -> the last max bytes of the live log | nil
function M.read_log_tail(paths, app, max)
  local f = M.open_log(paths, app)
  if not f then return nil end
  local st = f:stat()
  f:seek("set", math.max(0, st.size - max))
  local text = f:read(max)
  f:close()
  return text
end

-- log_stat(paths, app [, name]) -> stat table (never follows) | nil
function M.log_stat(paths, app, name)
  return with_dir(paths, app, "logs", false, function(d)
    return d:stat(name or M.LOG)
  end)
end

-- logs_dir(paths, app) -> Dir of the app's logs (for rotation) | nil, msg
function M.logs_dir(paths, app)
  return M.dir(paths, app, "logs", false)
end

-- log_apps(paths) -> names of the apps whose logs dir holds a live log.
function M.log_apps(paths)
  local out = {}
  for _, n in ipairs(ct.fs.dir(paths.logs) or {}) do
    if n:match("^[%w][%w._-]*$") then
      local st = M.log_stat(paths, n)
      if st then out[#out + 1] = n end
    end
  end
  return out
end

-- Where a follower and rotate-logs coordinate: under state/, which no
-- container sees (a lock file in the app's own dir could be a symlink).
function M.rotation_lock(paths, app)
  ct.fs.mkdir(paths.state .. "/logs", 448, true)
  return paths.state .. "/logs/" .. app .. ".lock"
end

function M.collapsed_file(paths, app)
  ct.fs.mkdir(paths.state .. "/logs", 448, true)
  return paths.state .. "/logs/" .. app .. ".collapsed"
end

-- shift_trees(paths, app, from, to) -> true | nil, msg: the app's config,
-- data and logs re-owned from one id range to another (user namespaces),
-- each beneath its handle, never following a link. A setuid or setgid bit
-- on a file the app made is dropped (chown clears it): moved to an opted-out
-- app's identity mapping it would otherwise be a setuid-root file.
function M.shift_trees(paths, app, from, to)
  for _, kind in ipairs({ "data", "config", "logs" }) do
    local d = M.dir(paths, app, kind, false)
    if d then
      local ok, err = d:shift_tree("", from, to, { keep_setid = false })
      d:close()
      if not ok then return nil, err end
    end
  end
  return true
end

-- ---- files an app's container binds ----------------------------------------

-- The source of one bind: every component beneath the app's dir must be a
-- directory (no symlink), the last one of the expected kind.
local function check_source(d, path)
  local r = rel(path)
  local parent = r:match("^(.*)/[^/]+$")
  if parent then
    local pd, err = d:opendir(parent)
    if not pd then return nil, err end
    pd:close()
  end
  local st, err = d:stat(r)
  if not st then return nil, err end
  if st.type ~= "file" and st.type ~= "dir" then
    return nil, string.format("%s is %s (made inside the container?); refusing to bind it into the container",
      d:path(r), describe(st))
  end
  return true
end

-- check_binds(paths, app) -> true | nil, msg: what runc will bind is what
-- we expect. runc takes path strings and follows symlinks, so this runs
-- while the app is stopped (nothing inside can race it) right before the
-- container is created.
function M.check_binds(paths, app)
  for _, kind in ipairs({ "config", "data" }) do
    local list = app[kind == "config" and "configs" or "data"] or {}
    if #list > 0 then
      local ok, err = with_dir(paths, app.name, kind, false, function(d)
        for _, p in ipairs(list) do
          local cok, cerr = check_source(d, p)
          if not cok then return nil, cerr end
        end
        return true
      end)
      if not ok then return nil, err end
    end
  end
  if app.logs then
    local ok, err = with_dir(paths, app.name, "logs", false, function(d)
      local st, serr = d:stat("")
      if not st then return nil, serr end
      return true
    end)
    if not ok then return nil, err end
  end
  return true
end

-- seed(paths, d, r, make) -> true | nil, msg: a new file or tree at r
-- beneath d, made by make(path) in the root's tmp/ (which no container
-- sees) and moved in by one renameat beneath d. A name the app raced in
-- meanwhile is replaced (a file, a symlink) or makes the rename fail (a
-- directory): nothing is ever written through it.
local function seed(paths, d, r, make)
  local tmp, err = ct.fs.mkdtemp(paths.tmp .. "/seed-XXXXXX")
  if not tmp then return nil, err end
  local ok, merr = make(tmp .. "/new")
  local t
  if ok then t, merr = ct.fs.opendir(tmp) end
  if t then
    ok, merr = t:rename("new", r, d)
    t:close()
  else
    ok = nil
  end
  ct.fs.rmtree(tmp)
  if not ok then return nil, merr end
  return true
end

local function ensure_parent(d, r)
  local parent = r:match("^(.*)/[^/]+$")
  if not parent then return true end
  local pd, err = d:opendir(parent, 448)
  if not pd then return nil, err end
  pd:close()
  return true
end

-- prepare(paths, app, rootfs) -> true | nil, msg: the app's config, data
-- and logs dirs. A config file missing on the host is seeded from the
-- image's copy (its symlinks followed inside the rootfs, never leading
-- outside; a FIFO or device is not opened); one already there is never
-- overwritten. A new data path
-- starts with the image's content at that path, as a container volume does.
-- Every directory on the way is created or checked beneath the app's dir.
-- Each path of list (a manifest's configs or data) beneath the app's kind
-- dir: parents made beneath it, a missing one made by make(dst, p, r) in
-- tmp/ and renamed in, then checked as a bind source.
local function prepare_kind(paths, app, kind, list, make)
  return with_dir(paths, app, kind, true, function(d)
    for _, p in ipairs(list or {}) do
      local r = rel(p)
      local pok, perr = ensure_parent(d, r)
      if not pok then return nil, perr end
      if not d:exists(r) then
        local sok, serr = seed(paths, d, r, function(dst) return make(dst, p, r) end)
        if not sok then return nil, serr end
      end
      local cok, cerr = check_source(d, p)
      if not cok then return nil, cerr end
    end
    return true
  end)
end

-- rootfs: the image's tree, or a function(path) -> the tree (a layer of
-- the image, see ctcli.layers.find) whose copy of path the image shows.
function M.prepare(paths, app, image)
  local function tree(p)
    if type(image) == "function" then return image(p) end
    return image
  end
  local ok, err = prepare_kind(paths, app.name, "config", app.configs, function(dst, p, r)
    -- A symlink in the image (nginx's sites-enabled/default) is followed
    -- inside the image's tree, never to the host's (in_root; a kernel
    -- without openat2 says ENOSYS and the seed is empty).
    local rootfs = tree(p)
    local img = rootfs and ct.fs.opendir(rootfs, { in_root = true })
    local copied = img and img:copyfile(r, dst)
    if img then img:close() end
    if copied then return true end
    -- The image has no such file: an empty one keeps the bind mount valid.
    return ct.fs.write_atomic(dst, "", 384)
  end)
  if not ok then return nil, err end
  ok, err = prepare_kind(paths, app.name, "data", app.data, function(dst, p, r)
    -- The image's dir, opened without following a symlink (a running
    -- container of the same image can change its rootfs), copied through
    -- the descriptor we checked.
    local rootfs = tree(p)
    local img = rootfs and ct.fs.opendir(rootfs)
    local st = img and img:stat(r)
    local cok, cerr
    if st and st.type == "dir" then
      cok, cerr = img:copytree(r, dst)
    else
      cok, cerr = ct.fs.mkdir(dst, 493)
    end
    if img then img:close() end
    return cok, cerr
  end)
  if not ok then return nil, err end
  local d, derr = M.dir(paths, app.name, "logs", true)
  if not d then return nil, derr end
  d:close()
  return true
end

-- ---- the migration record (data/<app>/.ctcli/migrations.json) -------------

function M.read_migrations(paths, app)
  return with_dir(paths, app, "data", false, function(d)
    return d:read(".ctcli/migrations.json", 16 * 1024 * 1024)
  end)
end

function M.write_migrations(paths, app, text)
  return with_dir(paths, app, "data", true, function(d)
    local sub, err = d:opendir(".ctcli", 448)
    if not sub then return nil, err end
    sub:close()
    return d:write_atomic(".ctcli/migrations.json", text, 384)
  end)
end

return M
