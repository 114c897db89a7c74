-- One sha256 per file, not per name. A package whose identical blobs are
-- hard links (pack, mkpkg: ten apps on one base carry the base once) names
-- one inode many times; each reader of a package (signature check, image
-- check, store import) asks through one memo and reads that inode once.
local ct = require("ct")

local M = {}

-- new() -> sha256(path) -> hex | nil, msg, errno: ct.hash.sha256_file,
-- remembered by (dev, inode) for as long as the file keeps its size and
-- mtime. Only for trees the caller alone writes (a package in the root's
-- tmp/, a release engineer's directory during pack).
function M.new()
  local seen = {}
  return function(path)
    local st = ct.fs.lstat(path)
    local key = st and st.type == "file" and (st.dev .. ":" .. st.ino) or nil
    local hit = key and seen[key]
    if hit and hit.size == st.size and hit.mtime == st.mtime then return hit.hex end
    local hex, err, errno = ct.hash.sha256_file(path)
    if hex and key then seen[key] = { hex = hex, size = st.size, mtime = st.mtime } end
    return hex, err, errno
  end
end

return M
