-- The release manifest (manifest.json, DESIGN §4), the one module its users
-- require: parsing and validating it with every problem's JSON path,
-- normalizing it into the release model, and reading a legacy package
-- (meta.json + package/apps/*) into one. The parts live beside it:
--   manifest/validate.lua   the validator (manifest/fields.lua: one value's checks)
--   manifest/normalize.lua  the release model
--   manifest/legacy.lua     the legacy package reader
--   manifest/rules.lua      the rules as data: keys, enums, ranges and defaults
--                           from manifests/release.schema.json (generated into
--                           ctcli.model.schema_tables at build time), the rest in Lua
--
-- Nothing here raises on bad input: validate() returns a list of problems
-- {path=, message= [, file=]}, the other functions return nil, problems.
local json = require("ctcli.base.json")
local legacy = require("ctcli.model.manifest.legacy")
local normalize = require("ctcli.model.manifest.normalize")
local rules = require("ctcli.model.manifest.rules")
local validate = require("ctcli.model.manifest.validate")

local M = {}

M.MANIFEST_VERSION = rules.MANIFEST_VERSION
M.SCHEMA_URL = rules.SCHEMA_URL
M.KNOWN_KEYS = rules.KNOWN_KEYS
M.SIGNALS = rules.SIGNALS
M.NETWORKS = rules.NETWORKS
M.DEFAULTS = rules.DEFAULTS
M.LEGACY_FORMATS = legacy.LEGACY_FORMATS

-- suggest(word, candidates) -> the closest candidate, or nil (ctcli.base.text).
M.suggest = require("ctcli.base.text").suggest

-- valid_app_name(v): whether v may name an app (and its directories).
M.valid_app_name = rules.valid_app_name

-- validate(doc [, file]) -> list of problems {path=, message=, file=}; empty
-- when doc is a valid manifest. Never raises, whatever doc is.
M.validate = validate.validate

-- normalize(doc) -> the release model, or nil, problems when doc is not valid.
M.normalize = normalize.normalize

-- from_legacy(meta, apps [, present [, fallback_name]]) -> doc | nil, problems
-- (see manifest/legacy.lua); validate_package_config and validate_version
-- read one app's two legacy files.
M.from_legacy = legacy.from_legacy
M.validate_package_config = legacy.validate_package_config
M.validate_version = legacy.validate_version

-- format_problems(problems [, file]) -> { "manifest.json: apps.web.logs: expected an absolute path", ... }
function M.format_problems(problems, file)
  local out = {}
  for _, p in ipairs(problems or {}) do
    local parts = { p.file or file or "manifest.json" }
    if p.path and p.path ~= "" then parts[#parts + 1] = p.path end
    parts[#parts + 1] = p.message
    out[#out + 1] = table.concat(parts, ": ")
  end
  return out
end

-- parse(text [, file]) -> doc | nil, problems. A JSON syntax error is one
-- problem with path "" and "line L, column C: ...".
function M.parse(text, file)
  if type(text) ~= "string" then
    return nil, { { path = "", message = "expected the text of a JSON document", file = file } }
  end
  local doc, err = json.decode(text)
  if doc == nil and err then
    return nil, { { path = "", message = err, file = file } }
  end
  local problems = M.validate(doc, file)
  if #problems > 0 then return nil, problems end
  return doc
end

return M
