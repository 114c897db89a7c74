-- genschema.lua: writes the Lua module ctcli.model.schema_tables from the
-- release manifest's JSON Schema, so the keys, required keys, enums, numeric
-- ranges and defaults the validator and the normalizer use have one source.
-- Run by the build (CMakeLists.txt) before the Lua modules are embedded:
--   runlua tools/genschema.lua manifests/release.schema.json OUT.lua
-- Pure Lua (no cjson): the schema's key order is kept, since it is the order
-- the validator offers keys in "did you mean" hints.
local src, out = arg[1], arg[2]
if not src or not out then
  io.stderr:write("usage: runlua tools/genschema.lua SCHEMA.json OUT.lua\n")
  os.exit(2)
end

local function fail(msg)
  io.stderr:write("genschema: ", src, ": ", msg, "\n")
  os.exit(1)
end

---------------------------------------------------------------------------
-- A JSON reader that keeps the order of object keys (obj.__keys), for a
-- schema written by people, not for untrusted input.

local text
do
  local f = io.open(src, "rb")
  if not f then fail("cannot open") end
  text = f:read("a")
  f:close()
end

local pos = 1

local function err(what)
  local line = select(2, text:sub(1, pos):gsub("\n", "")) + 1
  fail(string.format("line %d: %s", line, what))
end

local function skip()
  pos = text:find("[^ \t\r\n]", pos) or #text + 1
end

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function read_string()
  local parts = {}
  pos = pos + 1
  while true do
    local s, e, chunk, stop = text:find('^([^"\\]*)(["\\])', pos)
    if not s then err("unterminated string") end
    parts[#parts + 1] = chunk
    pos = e + 1
    if stop == '"' then return table.concat(parts) end
    local c = text:sub(pos, pos)
    if c == "u" then
      local hex = text:match("^%x%x%x%x", pos + 1)
      if not hex then err("bad \\u escape") end
      parts[#parts + 1] = utf8.char(tonumber(hex, 16))
      pos = pos + 5
    elseif ESCAPES[c] then
      parts[#parts + 1] = ESCAPES[c]
      pos = pos + 1
    else
      err("bad escape \\" .. c)
    end
  end
end

local read_value

local function read_object()
  local obj, keys = {}, {}
  pos = pos + 1
  skip()
  if text:sub(pos, pos) == "}" then
    pos = pos + 1
    return setmetatable(obj, { __index = { __keys = keys } })
  end
  while true do
    skip()
    if text:sub(pos, pos) ~= '"' then err("expected a key") end
    local k = read_string()
    skip()
    if text:sub(pos, pos) ~= ":" then err("expected ':'") end
    pos = pos + 1
    if obj[k] ~= nil then err("duplicate key " .. k) end
    obj[k] = read_value()
    keys[#keys + 1] = k
    skip()
    local c = text:sub(pos, pos)
    pos = pos + 1
    if c == "}" then return setmetatable(obj, { __index = { __keys = keys } }) end
    if c ~= "," then err("expected ',' or '}'") end
  end
end

local function read_array()
  local arr = {}
  pos = pos + 1
  skip()
  if text:sub(pos, pos) == "]" then
    pos = pos + 1
    return arr
  end
  while true do
    arr[#arr + 1] = read_value()
    skip()
    local c = text:sub(pos, pos)
    pos = pos + 1
    if c == "]" then return arr end
    if c ~= "," then err("expected ',' or ']'") end
  end
end

local LITERALS = { ["true"] = true, ["false"] = false }

function read_value()
  skip()
  local c = text:sub(pos, pos)
  if c == "{" then return read_object() end
  if c == "[" then return read_array() end
  if c == '"' then return read_string() end
  local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if num and num ~= "" then
    pos = pos + #num
    -- An integer literal stays an integer (a default of 10 is 10, not 10.0).
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  for word, v in pairs(LITERALS) do
    if text:sub(pos, pos + #word - 1) == word then
      pos = pos + #word
      return v
    end
  end
  err("unexpected " .. (c == "" and "end of file" or ("'" .. c .. "'")))
end

local schema = read_value()
skip()
if pos <= #text then err("text after the document") end
if type(schema) ~= "table" or type(schema.properties) ~= "table" or type(schema["$defs"]) ~= "table" then
  fail("expected an object with properties and $defs")
end

---------------------------------------------------------------------------
-- What the validator takes from the schema

-- resolve(node) -> the node a "$ref" names (local "#/$defs/<name>" only).
local function resolve(node)
  local ref = node["$ref"]
  if not ref then return node end
  local name = ref:match("^#/%$defs/([%w_]+)$")
  local def = name and schema["$defs"] and schema["$defs"][name]
  if not def then fail("unresolved $ref " .. ref) end
  return resolve(def)
end

-- The keywords the generated tables carry, by their Lua names. Patterns are
-- left out: ECMA regular expressions are not Lua patterns, so the validator
-- keeps its own (the spec checks them against the schema's examples).
local KEYWORDS = {
  { "type", "type" }, { "enum", "enum" }, { "const", "const" },
  { "minimum", "minimum" }, { "exclusiveMinimum", "exclusive_minimum" },
  { "minLength", "min_length" }, { "minItems", "min_items" },
  { "uniqueItems", "unique_items" }, { "default", "default" },
}

local function rule_of(prop)
  local rule, target = {}, resolve(prop)
  for _, kw in ipairs(KEYWORDS) do
    -- The property's own keyword wins over the definition it refers to.
    local v = prop[kw[1]]
    if v == nil then v = target[kw[1]] end
    if v ~= nil then rule[#rule + 1] = { kw[2], v } end
  end
  return rule
end

-- Every object with a fixed set of keys ("additionalProperties": false) is a
-- shape, named by its key in the schema (the document itself: "manifest").
local shapes = {}
local function add_shape(name, node)
  if type(node) ~= "table" or node.additionalProperties ~= false then return end
  if shapes[name] then fail("two objects named " .. name) end
  if type(node.properties) ~= "table" then fail(name .. " has no properties") end
  local shape = { name = name, keys = {}, required = node.required or {}, rules = {} }
  for _, k in ipairs(node.properties.__keys) do
    shape.keys[#shape.keys + 1] = k
    shape.rules[#shape.rules + 1] = { k, rule_of(node.properties[k]) }
  end
  shapes[name] = shape
  shapes[#shapes + 1] = shape
end
add_shape("manifest", schema)
for _, where in ipairs({ schema.properties, schema["$defs"] }) do
  for _, k in ipairs(where.__keys) do add_shape(k, where[k]) end
end

---------------------------------------------------------------------------
-- Writing the module: sorted where the schema gives no order, so the same
-- schema always gives the same bytes.

local function literal(v)
  if type(v) == "string" then return string.format("%q", v) end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if type(v) == "number" then return string.format("%.17g", v) end
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "table" and getmetatable(v) == nil then
    local items = {}
    for i, x in ipairs(v) do items[i] = literal(x) end
    return #items == 0 and "{}" or ("{ " .. table.concat(items, ", ") .. " }")
  end
  fail("cannot write a value of type " .. type(v) .. " into the tables")
end

local lines = {
  "-- Generated by tools/genschema.lua from manifests/release.schema.json at",
  "-- build time: do not edit; change the schema. The validator and the",
  "-- normalizer (ctcli.model.manifest.*) take their keys, required keys, enums,",
  "-- numeric ranges and defaults from here.",
  "return {",
  "  id = " .. literal(schema["$id"]) .. ",",
  "  manifest_version = " .. literal(schema.properties.manifest_version.const) .. ",",
  "  shapes = {",
}
local names = {}
for _, s in ipairs(shapes) do names[#names + 1] = s.name end
table.sort(names)
for _, name in ipairs(names) do
  local s = shapes[name]
  lines[#lines + 1] = "    " .. name .. " = {"
  lines[#lines + 1] = "      keys = " .. literal(s.keys) .. ","
  lines[#lines + 1] = "      required = " .. literal(s.required) .. ","
  lines[#lines + 1] = "      properties = {"
  for _, r in ipairs(s.rules) do
    local fields = {}
    for _, kv in ipairs(r[2]) do fields[#fields + 1] = kv[1] .. " = " .. literal(kv[2]) end
    lines[#lines + 1] = string.format("        [%q] = { %s },", r[1], table.concat(fields, ", "))
  end
  lines[#lines + 1] = "      },"
  lines[#lines + 1] = "    },"
end
lines[#lines + 1] = "  },"
lines[#lines + 1] = "}"

local tmp = out .. ".tmp"
local f = io.open(tmp, "wb")
if not f then fail("cannot write " .. tmp) end
f:write(table.concat(lines, "\n"), "\n")
if not f:close() or not os.rename(tmp, out) then fail("cannot write " .. out) end
