-- The gate every changing command passes before it (or recovery) acts:
-- every state file ctcli reads must read. A broken one stops the command
-- with the one line its reader gives (the file, what is wrong, the repair),
-- so no command decides anything on state it cannot see. The journal is
-- read by recovery itself (journal.pending).
local ct = require("ct")
local backup = require("ctcli.store.backup")
local release = require("ctcli.store.release")
local store = require("ctcli.store.images")
local userns = require("ctcli.runtime.userns")
local wanted = require("ctcli.store.wanted")

local M = {}

-- run(paths) -> true | nil, msg (the first broken file)
function M.run(paths)
  -- A Go tool's root (current-release a directory) is read only by rollback.
  local st = ct.fs.lstat(paths.current)
  if not (st and st.type == "dir") then
    local _, cerr = release.current(paths)
    if cerr then return nil, cerr end
  end
  local ok, err = release.list(paths)
  if ok then ok, err = wanted.read(paths) end
  if ok then ok, err = userns.check_records(paths) end
  if ok then ok, err = store.check_records(paths) end
  if ok then ok, err = backup.list(paths) end
  if not ok then return nil, err end
  return true
end

return M
