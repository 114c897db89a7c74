-- Id mappings (DESIGN "Settled — user namespaces"): each root owns one
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
local lockfile = require("ctcli.base.lock")
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
  local lock, lerr = lockfile.acquire(lp, string.format("pid=%d command=subid\n", ct.proc.getpid()), 60)
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
function M.segments(from, to)
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
  for _, seg in ipairs(M.segments(from, to)) do
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

return M
