-- Plain table helpers that several parts need.

local M = {}

-- copy(t) -> a new table with t's keys and values (one level).
function M.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- set_of(list) -> {[v] = true} for each value of list.
function M.set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

return M
