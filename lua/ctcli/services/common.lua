-- Small helpers the commands share.
local release = require("ctcli.store.release")

local M = {}

-- current_or_fail(ctx, command) -> the current release | nil, msg saying what to run first.
function M.current_or_fail(ctx, command)
  local rel, err = release.current(ctx.paths)
  if rel then return rel end
  if err then return nil, err end
  return nil, string.format("no release is installed in %s; run 'ctcli --root %s install PKG' before '%s'",
    ctx.root, ctx.root, command)
end

return M
