-- Checks of one value of a manifest each, against the schema's rules where
-- it states them (rules.rule) and in Lua where it cannot (paths, argv,
-- mount lists). A context collects the problems; a check reports and never
-- raises.
local rules = require("ctcli.model.manifest.rules")
local V = require("ctcli.model.manifest.values")

local join, quote, is_array, is_object, length = V.join, V.quote, V.is_array, V.is_object, V.length
local has_dotdot, clean_path, sorted_keys = V.has_dotdot, V.clean_path, V.sorted_keys

local F = {}

local ENUMS = setmetatable({}, { __index = function(t, rule)
  t[rule] = rules.set_of(rule.enum)
  return t[rule]
end })

function F.new_ctx(file)
  return { problems = {}, file = file }
end

local function report(ctx, path, message)
  ctx.problems[#ctx.problems + 1] = { path = path, message = message, file = ctx.file }
end
F.report = report

local function expected_string_message(v, what)
  local msg = "expected " .. (what or "a non-empty string")
  if type(v) == "number" then msg = msg .. " (put the value in quotes)" end
  return msg
end

function F.check_string(ctx, path, v)
  if type(v) ~= "string" or v == "" then
    report(ctx, path, expected_string_message(v))
    return false
  end
  return true
end

function F.check_relative_path(ctx, path, v)
  if type(v) ~= "string" or v == "" then
    report(ctx, path, "expected a relative path inside the package")
  elseif v:sub(1, 1) == "/" then
    report(ctx, path, "expected a relative path inside the package, not an absolute one")
  elseif has_dotdot(v) then
    report(ctx, path, "must not contain a '..' segment")
  else
    return true
  end
  return false
end

-- check_absolute_path(ctx, path, v, mount) -- a mount path may not be "/".
function F.check_absolute_path(ctx, path, v, mount)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then
    report(ctx, path, "expected an absolute path")
  elseif has_dotdot(v) then
    report(ctx, path, "must not contain a '..' segment")
  elseif mount and clean_path(v) == "/" then
    report(ctx, path, "must not be / (it would hide the whole image)")
  else
    return true
  end
  return false
end

-- one_of({"a", "b", "c"}) -> '"a", "b" or "c"'
local function one_of(enum)
  local items = {}
  for i, e in ipairs(enum) do items[i] = quote(e) end
  return table.concat(items, ", ", 1, #items - 1) .. (#items > 1 and " or " or "") .. items[#items]
end

-- in_range(v, rule) -> whether a number meets the rule's type and minimum.
local function in_range(v, rule)
  local min = rule.exclusive_minimum or rule.minimum
  local ok = rule.type == "integer" and V.is_integer(v) or rule.type ~= "integer" and V.is_finite(v)
  return ok and (min == nil or v > min or (v == min and rule.exclusive_minimum == nil))
end

local function range_message(rule)
  local what = rule.type == "integer" and "an integer" or "a number"
  if rule.exclusive_minimum == 0 and rule.type ~= "integer" then return "expected a positive number" end
  if rule.exclusive_minimum then return "expected " .. what .. " > " .. rule.exclusive_minimum end
  if rule.minimum then return "expected " .. what .. " >= " .. rule.minimum end
  return "expected " .. what
end

-- check_rule(ctx, path, v, shape, key) -- a scalar against what the schema
-- says of shape.key: its enum, boolean type or numeric range.
function F.check_rule(ctx, path, v, shape, key)
  local rule = rules.rule(shape, key)
  if rule.enum then
    if not ENUMS[rule][v] then report(ctx, path, "expected " .. one_of(rule.enum)) end
  elseif rule.type == "boolean" then
    if type(v) ~= "boolean" then report(ctx, path, "expected true or false") end
  elseif rule.type == "number" or rule.type == "integer" then
    if not in_range(v, rule) then report(ctx, path, range_message(rule)) end
  else
    error("no check for " .. shape .. "." .. key)
  end
end

function F.check_digest(ctx, path, v)
  if type(v) ~= "string" or not v:match(rules.DIGEST_PATTERN) then
    report(ctx, path, 'expected "sha256:" and 64 lowercase hex digits')
    return false
  end
  return true
end

-- check_argv(ctx, path, v) -- a non-empty array of strings (an argv).
function F.check_argv(ctx, path, v)
  if not is_array(v) then
    report(ctx, path, "expected an array of strings")
    return false
  end
  local n = length(v)
  if n == 0 then
    report(ctx, path, "must not be empty")
    return false
  end
  for i = 1, n do
    if type(v[i]) ~= "string" then
      report(ctx, path, "expected an array of strings")
      return false
    end
  end
  if v[1] == "" then
    report(ctx, path, "the program (first item) must not be empty")
    return false
  end
  return true
end

-- check_mount_list(ctx, path, v) -> the cleaned paths (configs, data).
function F.check_mount_list(ctx, path, v)
  local out = {}
  if not is_array(v) then
    report(ctx, path, "expected an array of absolute paths")
    return out
  end
  for i = 1, length(v) do
    local p = v[i]
    if type(p) ~= "string" or p:sub(1, 1) ~= "/" then
      report(ctx, path, "expected an array of absolute paths")
      return {}
    end
  end
  local seen = {}
  for i = 1, length(v) do
    local p = v[i]
    local clean = clean_path(p)
    if has_dotdot(p) then
      report(ctx, path, quote(p) .. " must not contain a '..' segment")
    elseif clean == "/" then
      report(ctx, path, quote(p) .. " must not be / (it would hide the whole image)")
    elseif seen[clean] then
      report(ctx, path, quote(p) .. " is listed twice")
    else
      seen[clean] = true
      out[#out + 1] = { raw = p, clean = clean }
    end
  end
  return out
end

function F.check_time(ctx, path, v)
  if not V.is_utc_time(v) then
    report(ctx, path, 'expected an RFC 3339 UTC time like "2026-11-01T12:00:00Z"')
  end
end

function F.check_env(ctx, path, v)
  if not is_object(v) then
    report(ctx, path, "expected an object of variable names to string values")
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    local p = join(path, k)
    if not tostring(k):match(rules.ENV_NAME_PATTERN) then
      report(ctx, p, "invalid variable name (letters, digits and _, not starting with a digit)")
    elseif type(v[k]) ~= "string" then
      report(ctx, p, expected_string_message(v[k], "a string"))
    end
  end
end

function F.check_migrations(ctx, path, v)
  if not is_array(v) then
    report(ctx, path, "expected an array of migration ids")
    return
  end
  local seen = {}
  for i = 1, length(v) do
    local id = v[i]
    if type(id) ~= "string" or id == "" then
      report(ctx, join(path, i), "expected a non-empty string")
    elseif seen[id] then
      report(ctx, path, quote(id) .. " is listed twice")
    else
      seen[id] = true
    end
  end
end

return F
