-- Which runc and umoci to use: the current release's own binaries when it
-- shipped them, else the host's (searched in PATH).
local ct = require("ct")

local M = {}

local function which(name)
  for dir in (os.getenv("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"):gmatch("[^:]+") do
    local p = dir .. "/" .. name
    local st = ct.fs.stat(p)
    if st and st.type == "file" and st.mode & 73 ~= 0 then return p end
  end
  return nil
end
M.which = which

-- The hardened defaults (user namespaces, rro) need runc >= 1.1; an older
-- runc a package ships is not used. Its version is asked once per process.
M.MIN_RUNC = { 1, 1 }
local runc_ok_cache = {}

-- runc_too_old(path) -> the version of the runc at path when it is older
-- than MIN_RUNC (or cannot tell its version), else nil.
function M.runc_too_old(path)
  if runc_ok_cache[path] == nil then
    local v = M.version(path)
    local major, minor = tostring(v):match("^v?(%d+)%.(%d+)")
    major, minor = tonumber(major), tonumber(minor)
    local old = not major or major < M.MIN_RUNC[1] or (major == M.MIN_RUNC[1] and minor < M.MIN_RUNC[2])
    runc_ok_cache[path] = old and (v or "of unknown version") or false
  end
  return runc_ok_cache[path] or nil
end

-- refused_runc_note(path) -> a line saying a shipped runc is not used, or nil.
function M.refused_runc_note(path)
  if not path or not ct.fs.exists(path) then return nil end
  local v = M.runc_too_old(path)
  if not v then return nil end
  return string.format("the package's runc %s is older than %d.%d and is not used: user namespaces and " ..
    "the hardened defaults need runc >= %d.%d; the host's runc runs its apps", v,
    M.MIN_RUNC[1], M.MIN_RUNC[2], M.MIN_RUNC[1], M.MIN_RUNC[2])
end

-- for_release(release_dir) -> {runc=, umoci=, source=, refused_runc=}
function M.for_release(release_dir)
  local t = { source = "host" }
  if release_dir then
    local runc = release_dir .. "/bin/runc"
    local umoci = release_dir .. "/bin/umoci"
    if ct.fs.exists(runc) then
      t.refused_runc = M.runc_too_old(runc)
      if not t.refused_runc then t.runc = runc; t.source = "release" end
    end
    if ct.fs.exists(umoci) then t.umoci = umoci; t.source = "release" end
  end
  t.runc = t.runc or which("runc")
  t.umoci = t.umoci or which("umoci")
  return t
end

-- resolve(ctx) -> the tools of ctx's current release (or the host's).
function M.resolve(ctx)
  local dir
  if ctx.paths then
    dir = ct.fs.realpath(ctx.paths.current)
  else
    local root = require("ctcli.base.root")
    local p = root.paths(ctx.root)
    dir = ct.fs.realpath(p.current)
  end
  return M.for_release(dir)
end

-- version(path) -> the first version-looking word of `path --version`.
function M.version(path)
  if not path then return nil end
  local r = ct.proc.run({ path, "--version" }, { timeout = 10 })
  if not r or r.code ~= 0 then return nil end
  return r.stdout:match("version%s+(%S+)") or r.stdout:match("(%d+%.%d+%S*)")
end

-- of(rel) -> the runc/umoci a release uses.
function M.of(rel)
  return M.for_release(rel and rel.dir)
end

return M
