-- Waiting for a lock file and naming its holder: ct.lock.acquire tries
-- once, and the holder's info is the text it wrote into the file.
local ct = require("ct")

local M = {}

-- Retry step while waiting for a busy lock (seconds).
local STEP = 0.05

-- acquire(path, info [, wait]) -> lock | nil, msg, errno
-- | nil, "locked", nil, the holder's info. A busy lock is retried every STEP
-- for up to `wait` seconds (none: one try).
function M.acquire(path, info, wait)
  local deadline = ct.time.monotonic() + (wait or 0)
  while true do
    local lock, err, code = ct.lock.acquire(path, info)
    if lock ~= false then return lock, err, code end -- taken, or an OS error
    local left = deadline - ct.time.monotonic()
    if left <= 0 then return nil, "locked", nil, ct.fs.read(path) or "" end
    ct.time.sleep(math.min(left, STEP))
  end
end

return M
