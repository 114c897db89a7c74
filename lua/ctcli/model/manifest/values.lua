-- Tests on decoded JSON values shared by the validator, the normalizer and
-- the legacy reader: what kind of table a value is, JSON paths for
-- problems, container paths, times and sizes. None raises on bad input.
local json = require("ctcli.base.json")

local V = {}

function V.quote(s)
  return json.encode(tostring(s))
end

-- join(path, key) -> "a.b", "a[0]" (integer keys are Lua indexes; shown 0-based
-- as in jq) or 'a["odd key"]'.
function V.join(path, key)
  if math.type(key) == "integer" then
    return path .. "[" .. (key - 1) .. "]"
  end
  key = tostring(key)
  if key:match("^[A-Za-z0-9_-]+$") then
    return path == "" and key or (path .. "." .. key)
  end
  return path .. "[" .. V.quote(key) .. "]"
end

function V.is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

function V.is_integer(v)
  return V.is_finite(v) and math.floor(v) == v
end

-- kind(v) -> "array" (positive integer keys only, or marked), "object" (string
-- keys only), "empty" (either), "mixed", or the Lua type.
local function kind(v)
  if type(v) ~= "table" then return type(v) end
  if next(v) == nil then
    return json.is_array(v) and "array" or "empty"
  end
  local ints, strs = 0, 0
  for k in pairs(v) do
    if math.type(k) == "integer" and k >= 1 then ints = ints + 1
    elseif type(k) == "string" then strs = strs + 1
    else return "mixed" end
  end
  if strs == 0 then return "array" end
  if ints == 0 then return "object" end
  return "mixed"
end

function V.is_object(v)
  local k = kind(v)
  return k == "object" or k == "empty"
end

function V.is_array(v)
  local k = kind(v)
  return k == "array" or k == "empty"
end

-- length(a) -> the largest index of an array (a JSON null leaves a hole).
function V.length(a)
  local n = 0
  for k in pairs(a) do
    if math.type(k) == "integer" and k > n then n = k end
  end
  return n
end

function V.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

function V.has_dotdot(s)
  for seg in s:gmatch("[^/]+") do
    if seg == ".." then return true end
  end
  return false
end

-- clean_path("/a//b/./c/") -> "/a/b/c"
function V.clean_path(s)
  local parts = {}
  for seg in s:gmatch("[^/]+") do
    if seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

function V.is_under(child, parent)
  if parent == "/" then return child ~= "/" end
  return child:sub(1, #parent + 1) == parent .. "/"
end

function V.app_name(app)
  return type(app) == "table" and rawget(app, "name") or nil
end

local function days_in_month(y, m)
  if m == 2 then
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    return leap and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

function V.is_utc_time(s)
  if type(s) ~= "string" then return false end
  local y, mo, d, h, mi, se, frac =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.-)Z$")
  if not y or not (frac == "" or frac:match("^%.%d+$")) then return false end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  return mo >= 1 and mo <= 12 and d >= 1 and d <= days_in_month(y, mo)
    and h <= 23 and mi <= 59 and se <= 60
end

local MEMORY_UNITS = { [""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }
local MAX_EXACT = 2 ^ 53

-- memory_bytes("256M") -> 268435456, or nil, message
function V.memory_bytes(v)
  if type(v) == "string" then
    local digits, unit = v:match("^([1-9]%d*)([KMGT]?)$")
    if not digits then
      return nil, 'expected a size like "512K", "256M", "1G" or a number of bytes'
    end
    local n = tonumber(digits) * MEMORY_UNITS[unit]
    if n > MAX_EXACT then return nil, "is too large" end
    return math.tointeger(n) or math.floor(n)
  elseif V.is_integer(v) and v >= 1 then
    if v > MAX_EXACT then return nil, "is too large" end
    return math.tointeger(v)
  end
  return nil, 'expected a size like "512K", "256M", "1G" or a number of bytes'
end

-- copy(v) -> a deep copy that keeps json's array/object marks.
function V.copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[k] = V.copy(x, seen) end
  if json.is_array(v) then json.array(out) elseif next(out) == nil then json.object(out) end
  return out
end

function V.array_copy(a)
  local out = json.array({})
  for i = 1, V.length(a or {}) do out[i] = a[i] end
  return out
end

return V
