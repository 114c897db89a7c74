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

-- for_release(release_dir) -> {runc=, umoci=, source=}
function M.for_release(release_dir)
  local t = { source = "host" }
  if release_dir then
    local runc = release_dir .. "/bin/runc"
    local umoci = release_dir .. "/bin/umoci"
    if ct.fs.exists(runc) then t.runc = runc; t.source = "release" end
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
    local root = require("ctcli.root")
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

return M
