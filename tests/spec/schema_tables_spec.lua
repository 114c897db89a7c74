-- ctest: unit
-- The manifest's rule tables (ctcli.model.schema_tables) are generated from
-- manifests/release.schema.json at build time (tools/genschema.lua): they
-- say what the schema says, the validator and the normalizer follow them,
-- and the generator keeps the schema's key order and numbers.
local ct = require("ct")
local H = require("support.helpers")
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")
local tables = require("ctcli.model.schema_tables")

local SRC = H.src
local BUILD = os.getenv("CTCLI_BUILD_DIR") or (SRC .. "/build/debug")
local schema = assert(json.decode(assert(ct.fs.read(SRC .. "/manifests/release.schema.json"))))

-- The objects with fixed keys, by the names the validator gives them.
local OBJECTS = {
  manifest = schema,
  release = schema.properties.release,
  runtime = schema.properties.runtime,
  app = schema["$defs"].app,
  image = schema["$defs"].image,
  healthcheck = schema["$defs"].healthcheck,
  resources = schema["$defs"].resources,
}

local function resolve(node)
  local name = node["$ref"] and node["$ref"]:match("^#/%$defs/(.+)$")
  return name and resolve(schema["$defs"][name]) or node
end

local function sorted(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  table.sort(out)
  return out
end

local function keys(t)
  local out = {}
  for k in pairs(t or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- A valid manifest with one app whose shape.key is v (a healthcheck and
-- resources are given when the key is theirs).
local function doc_with(shape, key, v)
  local app = { name = "web", version = "1", image = { layout = "images/web", ref = "web" } }
  local doc = { manifest_version = 1, release = { name = "r", version = "1" }, apps = json.array({ app }) }
  if shape == "app" then
    app[key] = v
  elseif shape == "healthcheck" then
    app.healthcheck = { command = { "/bin/true" }, [key] = v }
  elseif shape == "resources" then
    app.resources = { [key] = v }
  end
  return doc, (shape == "app" and "apps.web." or ("apps.web." .. shape .. ".")) .. key
end

local function problems_at(doc, path)
  local out = {}
  for _, p in ipairs(manifest.validate(doc)) do
    if p.path == path then out[#out + 1] = p.message end
  end
  return out
end

-- genschema(text) -> the module it writes for a schema, or nil, its stderr
local function genschema(text)
  local dir = H.tmpdir()
  assert(ct.fs.write_atomic(dir .. "/s.json", text, 420))
  local r = assert(ct.proc.run({ BUILD .. "/runlua", SRC .. "/tools/genschema.lua", dir .. "/s.json", dir .. "/out.lua" },
    { timeout = 30 }))
  if r.code ~= 0 then return nil, r.stderr end
  return assert(loadfile(dir .. "/out.lua", "t", {}))(), assert(ct.fs.read(dir .. "/out.lua"))
end

-- A small schema: keys out of alphabetical order, an escape, a non-integer
-- number, a $ref and a keyword of the property's own over its definition's.
local SAMPLE = [[{
      "$id": "urn:x\"y\u00e9", "properties": { "manifest_version": { "const": 1 } },
      "additionalProperties": false,
      "$defs": {
        "n": { "type": "number", "minimum": 0.5, "default": 10 },
        "thing": { "type": "object", "additionalProperties": false, "required": ["zeta"],
          "properties": { "zeta": { "$ref": "#/$defs/n" }, "alpha": { "enum": ["b", "a"], "default": "b" },
            "mid": { "$ref": "#/$defs/n", "default": 3, "description": "own keywords win" } } }
      }
    }]]

describe("the manifest's rule tables", function()
  after_each(H.cleanup)

  it("are the schema's: its $id, manifest version, objects, keys and required keys", function()
    assert.equal(schema["$id"], tables.id)
    assert.equal(schema.properties.manifest_version.const, tables.manifest_version)
    assert.same(keys(OBJECTS), keys(tables.shapes))
    for name, node in pairs(OBJECTS) do
      assert.same(keys(node.properties), sorted(tables.shapes[name].keys), name)
      assert.same(node.required or {}, tables.shapes[name].required, name)
      assert.same(keys(node.properties), sorted(manifest.KNOWN_KEYS[name]), name)
      assert.is_false(node.additionalProperties, name)
      assert.is_table(node.patternProperties and node.patternProperties["^x-"], name)
    end
    assert.same(keys(OBJECTS), keys(manifest.KNOWN_KEYS))
  end)

  it("state each property's type, enum, range and default as the schema does", function()
    local KW = { type = "type", enum = "enum", minimum = "minimum", exclusiveMinimum = "exclusive_minimum",
      default = "default", const = "const" }
    local checked = 0
    for name, node in pairs(OBJECTS) do
      for key, prop in pairs(node.properties) do
        local rule = tables.shapes[name].properties[key]
        for kw, field in pairs(KW) do
          local want = prop[kw]
          if want == nil then want = resolve(prop)[kw] end
          if type(want) == "number" then want = math.tointeger(want) or want end
          assert.same(want, rule[field], name .. "." .. key .. " " .. kw)
          if want ~= nil then checked = checked + 1 end
        end
      end
    end
    assert.is_true(checked > 40, "only " .. checked .. " keywords compared")
  end)

  it("are what the validator enforces: every range, enum and boolean of an app, its healthcheck and resources",
    function()
      local seen = 0
      for _, shape in ipairs({ "app", "healthcheck", "resources" }) do
        for key, rule in pairs(tables.shapes[shape].properties) do
          local min = rule.exclusive_minimum or rule.minimum
          if (rule.type == "number" or rule.type == "integer") and min then
            seen = seen + 1
            local doc, path = doc_with(shape, key, min - 1)
            assert.equal(1, #problems_at(doc, path), path .. " below its minimum")
            doc = doc_with(shape, key, min)
            assert.equal(rule.exclusive_minimum and 1 or 0, #problems_at(doc, path), path .. " at its minimum")
            doc = doc_with(shape, key, min + 1)
            assert.same({}, problems_at(doc, path), path .. " above its minimum")
            if rule.type == "integer" then
              doc = doc_with(shape, key, min + 1.5)
              assert.equal(1, #problems_at(doc, path), path .. " not an integer")
            end
          elseif rule.enum then
            seen = seen + 1
            for _, v in ipairs(rule.enum) do
              local doc, path = doc_with(shape, key, v)
              assert.same({}, problems_at(doc, path), path .. " = " .. v)
            end
            local doc, path = doc_with(shape, key, "bogus")
            assert.equal(1, #problems_at(doc, path), path .. " = bogus")
          elseif rule.type == "boolean" then
            seen = seen + 1
            for _, v in ipairs({ true, false }) do
              local doc, path = doc_with(shape, key, v)
              assert.same({}, problems_at(doc, path), path)
            end
            local doc, path = doc_with(shape, key, "yes")
            assert.same({ "expected true or false" }, problems_at(doc, path), path)
          end
        end
      end
      assert.is_true(seen >= 14, "only " .. seen .. " rules exercised")
      local doc, path = doc_with("app", "restart", "sometimes")
      assert.same({ 'expected "no", "on-failure" or "always"' }, problems_at(doc, path))
      doc, path = doc_with("healthcheck", "interval", 0)
      assert.same({ "expected a positive number" }, problems_at(doc, path))
      doc, path = doc_with("healthcheck", "retries", 0)
      assert.same({ "expected an integer >= 1" }, problems_at(doc, path))
      doc, path = doc_with("app", "stop_timeout", -1)
      assert.same({ "expected a number >= 0" }, problems_at(doc, path))
    end)

  it("give the release model the defaults the schema states", function()
    local doc = doc_with("healthcheck", "retries", nil)
    local app = assert(manifest.normalize(doc)).apps[1]
    local props = schema["$defs"].app.properties
    assert.equal(props.stop_signal.default, app.stop_signal)
    assert.equal(props.stop_timeout.default, app.stop_timeout)
    assert.equal(math.type(10), math.type(app.stop_timeout))
    assert.equal(props.network.default, app.network)
    for key, prop in pairs(schema["$defs"].healthcheck.properties) do
      if prop.default ~= nil then assert.equal(prop.default, app.healthcheck[key], key) end
    end
    -- The other defaults are not written into the model: absent means them.
    assert.is_nil(app.user_namespace)
    assert.is_nil(app.restart)
    assert.is_nil(app.journald)
  end)

  it("embedded in the binary are what the schema in the tree generates now", function()
    local fresh = assert(genschema(assert(ct.fs.read(SRC .. "/manifests/release.schema.json"))))
    assert.same(fresh, tables)
  end)

  it("keep the schema's key order, integers, escapes and $refs; a broken schema fails the build", function()
    local t, text = genschema(SAMPLE)
    assert.is_table(t, text)
    assert.equal('urn:x"y\u{e9}', t.id)
    assert.same({ "zeta", "alpha", "mid" }, t.shapes.thing.keys)
    assert.same({ "zeta" }, t.shapes.thing.required)
    assert.same({ type = "number", minimum = 0.5, default = 10 }, t.shapes.thing.properties.zeta)
    assert.equal("integer", math.type(t.shapes.thing.properties.zeta.default))
    assert.equal(3, t.shapes.thing.properties.mid.default)
    assert.same({ "b", "a" }, t.shapes.thing.properties.alpha.enum)
    assert.same({ "manifest_version" }, t.shapes.manifest.keys)
    -- The same schema gives the same bytes.
    local _, again = genschema(SAMPLE)
    assert.equal(text, again)

    local none, err = genschema([[{ "properties": { "manifest_version": { "const": 1 },
      "x": { "$ref": "#/$defs/missing" } }, "additionalProperties": false, "$defs": {} }]])
    assert.is_nil(none)
    assert.matches("unresolved $ref #/$defs/missing", err, 1, true)
    none, err = genschema('{ "properties": { "a": 1, }, "$defs": {} }')
    assert.is_nil(none)
    assert.matches("s.json: line 1:", err, 1, true)
  end)
end)
