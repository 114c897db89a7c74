-- The root directory: its layout (DESIGN §3), creating it, recognising it
-- (also a root made by the Go ctcli) and its exclusive lock.
local ct = require("ct")
local lockfile = require("ctcli.base.lock")
local clock = require("ctcli.base.clock")

local M = {}

M.FORMAT = 1
M.MARKER = ".ctcli-init"

-- paths(root) -> table of the absolute paths ctcli uses under root.
-- paths_in(paths, releases) -> a copy of paths whose releases/ is another
-- directory (a staged release's, a stage's work dir).
function M.paths_in(paths, releases)
  local p = {}
  for k, v in pairs(paths) do p[k] = v end
  p.releases = releases
  return p
end

function M.paths(root)
  local p = {
    root = root,
    marker = root .. "/" .. M.MARKER,
    state = root .. "/state",
    format = root .. "/state/format",
    lock = root .. "/state/lock",
    journal = root .. "/state/journal.json",
    wanted = root .. "/state/wanted.json",
    id_base_file = root .. "/state/id-base",
    config = root .. "/config",
    data = root .. "/data",
    logs = root .. "/logs",
    ctcli_log = root .. "/logs/ctcli.log",
    current = root .. "/current-release",
    releases = root .. "/releases",
    backups = root .. "/releases/backups",
    images = root .. "/images",
    trusted_keys = root .. "/trusted-keys",
    hooks = root .. "/hooks",
    runc_root = root .. "/runc-root",
    tmp = root .. "/tmp",
  }
  return p
end

-- The modes of a root's directories, in one place (docs/security.md). No
-- other host user may read or enter what an app wrote or can reach: its
-- config, data and logs, its image's rootfs (which may hold setuid files
-- the app planted), the bundles (their environment may hold secrets) and
-- runc's state. state/, trusted-keys/ (public keys) stay readable.
-- releases/ and images/ (and each image dir) are 0710: their group is the
-- root's mapped root (ctcli.runtime.userns), which must get through to a bundle
-- and a rootfs; no other host user is in that group.
M.MODES = {
  ["state"] = 493, ["config"] = 448, ["data"] = 448, ["logs"] = 448,
  ["releases"] = 456, ["releases/backups"] = 448, ["images"] = 456,
  ["trusted-keys"] = 493, ["hooks"] = 448, ["runc-root"] = 448, ["tmp"] = 448,
  -- config/<app>, data/<app>, logs/<app>, and images/<app>@<digest>
  app_dir = 448, image_dir = 456,
}

-- The directories of a root, in the order they are made.
local layout = {
  "state", "config", "data", "logs", "releases", "releases/backups", "images",
  "trusted-keys", "hooks", "runc-root", "tmp",
}

-- Directories whose mode an older ctcli made wider than M.MODES: tightened
-- by init and by every changing command (see M.tighten).
local tightened = { "config", "data", "logs", "releases", "images", "runc-root" }

-- is_root(root) -> true when root carries the marker of ctcli (ours or the Go tool's).
function M.is_root(root)
  local st = ct.fs.stat(root .. "/" .. M.MARKER)
  return st ~= nil
end

-- is_legacy(root) -> true for a root the Go ctcli made (marker, no state/format).
function M.is_legacy(root)
  return M.is_root(root) and not ct.fs.exists(root .. "/state/format")
end

-- init(root) -> created (bool), or nil, msg. Idempotent: completes a
-- partial layout, never touches what is there.
function M.init(root)
  local st = ct.fs.stat(root)
  if st and st.type ~= "dir" then
    return nil, root .. " exists and is not a directory"
  end
  local ok, err = ct.fs.mkdir(root, 493, true)
  if not ok then return nil, err end
  local created = not M.is_root(root)
  for _, d in ipairs(layout) do
    local path = root .. "/" .. d
    if not ct.fs.exists(path) then
      ok, err = ct.fs.mkdir(path, M.MODES[d], true)
      if not ok then return nil, err end
      ct.fs.chmod(path, M.MODES[d])
    end
  end
  local p = M.paths(root)
  ok, err = M.tighten(p)
  if not ok then return nil, err end
  ok, err = M.record_id_base(p)
  if not ok then return nil, err end
  if not ct.fs.exists(p.format) then
    ok, err = ct.fs.write_atomic(p.format, tostring(M.FORMAT) .. "\n")
    if not ok then return nil, err end
  end
  if not ct.fs.exists(p.marker) then
    ok, err = ct.fs.write_atomic(p.marker, "")
    if not ok then return nil, err end
  end
  return created
end

-- narrow(path, mode) -> true | nil, msg: takes from the directory at path
-- every permission bit mode does not grant; a missing path is fine, a
-- symlink is left alone (an operator's, e.g. images/ on another disk, is
-- tightened at its target by the operator).
local function narrow(path, mode)
  local st = ct.fs.lstat(path)
  if not st or st.type ~= "dir" or st.mode & ~mode == 0 then return true end
  local ok, err = ct.fs.chmod(path, st.mode & mode)
  if not ok then return nil, "cannot restrict the permissions of " .. path .. ": " .. tostring(err) end
  return true
end

-- tighten(paths) -> true | nil, msg: brings a root made by an older ctcli
-- (or the Go tool) to M.MODES, including each app's logs directory.
function M.tighten(p)
  for _, d in ipairs(tightened) do
    local ok, err = narrow(p.root .. "/" .. d, M.MODES[d])
    if not ok then return nil, err end
  end
  for _, name in ipairs(ct.fs.dir(p.logs) or {}) do
    local ok, err = narrow(p.logs .. "/" .. name, M.MODES.app_dir)
    if not ok then return nil, err end
  end
  return true
end

-- Container ids are `<md5 of an absolute root>-<app>` (the Go tool's, see
-- runtime.container_id). The absolute root they are made from, the id base,
-- is recorded in state/id-base when the root is made or first changed, and
-- used ever after: a root reached through another path (a symlink) finds
-- the same containers.

-- read_id_base(p) -> the recorded base, false when there is none, or nil, msg.
local function read_id_base(p)
  local text = ct.fs.read(p.id_base_file)
  if text == nil then
    if ct.fs.lstat(p.id_base_file) then return nil, "cannot read " .. p.id_base_file end
    return false
  end
  local base = text:match("^(/[^\n]*)\n?$")
  if not base then
    return nil, p.id_base_file .. " does not hold an absolute path; write the root's absolute path into it" ..
      " (the one its container ids were made from)"
  end
  return base
end

-- guess_id_base(p) -> the base for a root with no record: of the path it was
-- given and that path with symlinks resolved, the one whose md5 starts the
-- id of a container in runc-root (ours or the Go tool's, which used the
-- same ids), so running containers keep their ids; else the given path, as
-- ids were always made before the record.
local function guess_id_base(p)
  local real = ct.fs.realpath(p.root)
  local candidates = { p.root }
  if real and real ~= p.root then candidates[2] = real end
  local ids = ct.fs.dir(p.runc_root) or {}
  for _, base in ipairs(candidates) do
    local prefix = ct.hash.md5(base) .. "-"
    for _, id in ipairs(ids) do
      if id:sub(1, #prefix) == prefix then return base end
    end
  end
  return p.root
end

-- id_base(p) -> the base container ids are made from (no write), or nil, msg.
function M.id_base(p)
  local base, err = read_id_base(p)
  if base == nil then return nil, err end
  return base or guess_id_base(p)
end

-- record_id_base(p) -> true | nil, msg: writes state/id-base when missing
-- (a holder of the lock, or init) and sets p.id_base.
function M.record_id_base(p)
  local base, err = read_id_base(p)
  if base == nil then return nil, err end
  if not base then
    base = guess_id_base(p)
    local ok, werr = ct.fs.write_atomic(p.id_base_file, base .. "\n")
    if not ok then return nil, "cannot record the container id base in " .. p.id_base_file .. ": " .. tostring(werr) end
  end
  p.id_base = base
  return true
end

-- open(root) -> paths, or nil, msg when root is not a ctcli root.
function M.open(root)
  if not ct.fs.exists(root) then
    return nil, string.format("%s does not exist; create a root with 'ctcli --root %s init'", root, root)
  end
  if not M.is_root(root) then
    return nil, string.format("%s is not a ctcli root (no %s); create one with 'ctcli --root %s init'",
      root, M.MARKER, root)
  end
  local p = M.paths(root)
  local fmt = ct.fs.read(p.format)
  if fmt and tonumber(fmt) and tonumber(fmt) > M.FORMAT then
    return nil, string.format("%s has layout version %s, newer than this ctcli understands (%d); use a newer ctcli",
      root, fmt:gsub("%s+$", ""), M.FORMAT)
  end
  local base, err = M.id_base(p)
  if not base then return nil, err end
  p.id_base = base
  return p
end

-- lock(paths, command [, wait]) -> lock, or nil, msg naming the holder.
function M.lock(p, command, wait)
  if not ct.fs.exists(p.state) then
    local ok, err = ct.fs.mkdir(p.state, M.MODES.state, true)
    if not ok then return nil, err end
  end
  local info = string.format("pid=%d command=%s since=%s\n", ct.proc.getpid(), command,
    clock.iso())
  local lock, err, _, holder = lockfile.acquire(p.lock, info, wait)
  if lock then return lock end
  if holder then
    local pid = holder:match("pid=(%d+)") or "?"
    local cmd = holder:match("command=(%S+)") or "?"
    local since = holder:match("since=(%S+)") or "?"
    return nil, string.format("another ctcli holds the root's lock (pid %s, command %s, since %s); wait for it or retry with --wait",
      pid, cmd, since)
  end
  return nil, "cannot lock " .. p.lock .. ": " .. tostring(err)
end

return M
