-- JSON for ctcli: cjson decodes; our own encoder writes sorted keys (so the
-- same value always gives the same bytes), marks arrays (an empty list prints
-- []), and turns integral floats back into integers.
local cjson = require("cjson")

local json = {}

local array_mt = { __jsontype = "array" }
local object_mt = { __jsontype = "object" }

-- Marks t as a JSON array, so an empty t encodes as [].
function json.array(t)
  return setmetatable(t or {}, array_mt)
end

-- Marks t as a JSON object, so an empty t encodes as {}.
function json.object(t)
  return setmetatable(t or {}, object_mt)
end

function json.is_array(t)
  if type(t) ~= "table" then return false end
  local mt = getmetatable(t)
  if mt == array_mt then return true end
  if mt == object_mt then return false end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local function normalize(v)
  local tv = type(v)
  if tv == "number" then
    return math.tointeger(v) or v
  elseif tv == "table" then
    -- cjson gives arrays and objects the same shape; keep arrays marked.
    local is_arr = json.is_array(v)
    for k, x in pairs(v) do v[k] = normalize(x) end
    if is_arr then setmetatable(v, array_mt) end
    return v
  elseif v == cjson.null then
    return nil
  end
  return v
end

local function line_col(text, pos)
  local line, col = 1, 1
  for i = 1, math.min(pos - 1, #text) do
    if text:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
  end
  return line, col
end

-- decode(text) -> value | nil, "line L, column C: message"
function json.decode(text)
  local ok, v = pcall(cjson.decode, text)
  if not ok then
    local msg = tostring(v):gsub("^.-: ", "", 0)
    local pos = tonumber(msg:match("at character (%d+)"))
    if pos then
      local l, c = line_col(text, pos)
      msg = msg:gsub(" at character %d+", "")
      return nil, string.format("line %d, column %d: %s", l, c, msg)
    end
    return nil, msg
  end
  return normalize(v)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_value(v, indent, depth, out)
  local tv = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json: cannot encode " .. tostring(v))
    end
    local i = math.tointeger(v)
    out[#out + 1] = i and tostring(i) or string.format("%.17g", v)
  elseif tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "table" then
    local nl, pad, pad_in = "", "", ""
    if indent then
      nl = "\n"
      pad = string.rep(indent, depth)
      pad_in = string.rep(indent, depth + 1)
    end
    if json.is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "[" .. nl
      for i = 1, #v do
        out[#out + 1] = pad_in
        encode_value(v[i], indent, depth + 1, out)
        out[#out + 1] = (i < #v and "," or "") .. nl
      end
      out[#out + 1] = pad .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          if math.type(k) == "integer" then k = tostring(k)
          else error("json: object key of type " .. type(k)) end
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}" return end
      out[#out + 1] = "{" .. nl
      for i, k in ipairs(keys) do
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        out[#out + 1] = pad_in .. quote(k) .. (indent and ": " or ":")
        encode_value(x, indent, depth + 1, out)
        out[#out + 1] = (i < #keys and "," or "") .. nl
      end
      out[#out + 1] = pad .. "}"
    end
  else
    error("json: cannot encode a " .. tv)
  end
end

-- encode(value [, pretty]) -> string; keys sorted, 2-space indent when pretty.
function json.encode(v, pretty)
  local out = {}
  encode_value(v, pretty and "  " or nil, 0, out)
  return table.concat(out)
end

json.null = cjson.null

-- The --json output contract (docs/json.md): every document a command
-- prints carries "format": FORMAT at its top, and the number changes only
-- when a field changes its meaning or goes away (new fields do not).
json.FORMAT = 1

-- Pretty (indented) documents on a terminal or with --pretty; one compact
-- line when a program reads stdout. cli sets this once per run.
json.pretty = false

-- document(doc) -> the text of one --json document (doc gains its format).
function json.document(doc)
  doc.format = json.FORMAT
  return json.encode(doc, json.pretty)
end

-- release(r) -> a release as every --json document nests it: id, name and
-- version (null when unknown; id null for one not made yet, as plan's "to").
function json.release(r)
  if r == nil then return json.null end
  return { id = r.id or json.null, name = r.name or json.null, version = r.version or json.null }
end

-- backup(b) -> a backup as list-releases, backup and prune show it (b: a
-- backup's record, ours or the Go tool's); "format" is the output's own, so
-- the archive's is backup_format.
function json.backup(b)
  return {
    path = b.path, release = b.release and json.release({ id = b.release, name = b.name, version = b.version }) or json.null,
    created = b.created or json.null, data = b.data == nil and json.null or b.data, backup_format = b.format or json.null,
    bytes = b.bytes or json.null, reason = b.reason or json.null,
  }
end

-- print(doc): doc as one --json document on stdout.
function json.print(doc)
  io.stdout:write(json.document(doc), "\n")
end

return json
