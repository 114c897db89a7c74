-- Small helpers the commands share.
local release = require("ctcli.store.release")
local report = require("ctcli.base.report")

local M = {}

-- current_or_fail(ctx, command) -> the current release | nil, msg saying what to run first.
function M.current_or_fail(ctx, command)
  local rel, err = release.current(ctx.paths)
  if rel then return rel end
  if err then return nil, err end
  return nil, string.format("no release is installed in %s; run 'ctcli --root %s install PKG' before '%s'",
    ctx.root, ctx.root, command)
end

-- tell_migrations(ctx, list): the migrate step's line, from a list of
-- {app=, ran= ids}: "migrations: 2 ran (web: 0001-a, 0002-b)", or that
-- none was pending.
function M.tell_migrations(ctx, list)
  local n, parts = 0, {}
  for _, m in ipairs(list) do
    if #m.ran > 0 then
      n = n + #m.ran
      parts[#parts + 1] = m.app .. ": " .. table.concat(m.ran, ", ")
    end
  end
  local rep = report.of(ctx.report)
  if n == 0 then rep.step("migrations: none pending") return end
  rep.step("migrations: %d ran (%s)", n, table.concat(parts, "; "))
end

return M
