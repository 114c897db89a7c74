-- Small text helpers shared by the front end and the validators.
local M = {}

-- distance(a, b) -> the Levenshtein distance between two strings (bytes),
-- for "did you mean" hints.
function M.distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- suggest(word, candidates) -> the closest candidate, or nil: the one rule
-- behind every "did you mean" (commands, options, manifest keys, hooks).
-- A candidate the word begins (two letters or more) counts as distance 1;
-- the distance allowed grows with the word (2, or a third of it) and stays
-- below the candidate's length, so a short word is not "corrected" into
-- an unrelated one.
function M.suggest(word, candidates)
  if type(word) ~= "string" or #word > 64 then return nil end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = M.distance(word, c)
    if #word >= 2 and c:sub(1, #word) == word then d = math.min(d, 1) end
    if d <= math.max(2, #word // 3) and d < #c and (not best_d or d < best_d) then
      best, best_d = c, d
    end
  end
  return best
end

-- bytes(n) -> "1.5 MiB": powers of 1024, named so (the UI's and the
-- reporter's one format for a size).
function M.bytes(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  if i == 1 then return string.format("%d B", n) end
  return string.format("%.1f %s", n, units[i])
end

return M
