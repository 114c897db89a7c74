-- Records written into a fresh directory of tmp/ that is renamed into place
-- whole (an image's record, an upper, a release being built): each file is
-- written without fsyncs of its own, and the caller flushes the filesystem
-- once (flush) before the rename. What is in place is then whole after a
-- crash, as with write_atomic, for one journal commit instead of two
-- fsyncs per file (an install of ten apps made about 180 of them).
local ct = require("ct")

local M = {}

-- write(path, data [, mode]) -> true | nil, msg: a new file in a directory
-- only this command writes (a leftover of that name is replaced).
function M.write(path, data, mode)
  ct.fs.unlink(path)
  local f, err = ct.fs.open(path, { write = true, create = true, excl = true, mode = mode or 420 })
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if ok then ok, werr = ct.fs.chmod(path, mode or 420) end
  return ok, werr
end

-- flush(paths) -> true | nil, msg: everything written so far on the
-- root's filesystem on disk (layers and blobs too: an image renamed in
-- after it never names a layer a crash emptied).
function M.flush(paths)
  return ct.fs.syncfs(paths.root)
end

return M
