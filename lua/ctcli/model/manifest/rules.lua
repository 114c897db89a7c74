-- The manifest's rules as data: what manifests/release.schema.json states
-- (keys and required keys of each object, enums, numeric ranges, defaults),
-- read from ctcli.model.schema_tables, which the build generates from the
-- schema (tools/genschema.lua); and what the schema cannot state (patterns
-- in Lua's syntax, hints for names carried over from the legacy format).
local schema = require("ctcli.model.schema_tables")

local R = {}

R.MANIFEST_VERSION = schema.manifest_version

-- The schema's $id: a URL, so an editor pointed at it by a manifest's
-- "$schema" key can find it. pack and convert write it into the manifests
-- they make.
R.SCHEMA_URL = schema.id

local set_of = require("ctcli.base.tables").set_of
R.set_of = set_of

-- Keys each fixed-shape object may hold, in the schema's order (the order
-- "did you mean" hints prefer among equally close keys). Keys starting with
-- "x-" are the authors' own and allowed in all of them.
R.KNOWN_KEYS, R.REQUIRED = {}, {}
for name, shape in pairs(schema.shapes) do
  R.KNOWN_KEYS[name] = shape.keys
  if #shape.required > 0 then R.REQUIRED[name] = shape.required end
end

-- rule(shape, key) -> the schema's constraints on one property: type, enum,
-- minimum or exclusive_minimum, default, ...
function R.rule(shape, key)
  return schema.shapes[shape].properties[key]
end

-- The stop signals by their full names; the schema's enum also lists each
-- without its SIG prefix.
R.SIGNALS = {}
for _, s in ipairs(R.rule("app", "stop_signal").enum) do
  if s:match("^SIG") then R.SIGNALS[#R.SIGNALS + 1] = s end
end
R.NETWORKS = R.rule("app", "network").enum

-- The defaults the normalizer fills in. Of the app's other defaults, the
-- model keeps only a departure from them (user_namespace false, journald
-- true, read_only_rootfs as a boolean) or leaves them to the package's
-- format (restart).
R.DEFAULTS = { healthcheck = {} }
for _, k in ipairs({ "stop_signal", "stop_timeout", "network" }) do
  R.DEFAULTS[k] = R.rule("app", k).default
end
for k, rule in pairs(schema.shapes.healthcheck.properties) do
  R.DEFAULTS.healthcheck[k] = rule.default
end

-- Names of the legacy format (or of other tools) an author may carry over.
R.HINTS = {
  app = {
    logsFolder = "logs", imageTag = "version", imageSha = "image.digest",
    builtAt = "built_at", dependsOn = "depends_on", depends = "depends_on",
    stopSignal = "stop_signal", stopTimeout = "stop_timeout", environment = "env",
    working_dir = "workdir",
  },
  healthcheck = { waitFor = "start_period", test = "command" },
  manifest = { releaseMeta = "release.meta" },
}

-- The schema's patterns in Lua's syntax (its ECMA expressions use
-- look-aheads Lua patterns lack).
R.APP_NAME_PATTERN = "^[a-z0-9][a-z0-9_.%-]*$"
R.APP_NAME_MAX = 63
R.ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
R.DIGEST_PATTERN = "^sha256:" .. string.rep("[0-9a-f]", 64) .. "$"

local SIGNAL_SET = set_of(R.SIGNALS)

-- signal_name(v) -> the full name of a stop signal ("TERM" -> "SIGTERM"), or nil.
function R.signal_name(v)
  if type(v) ~= "string" then return nil end
  local s = v:match("^SIG") and v or ("SIG" .. v)
  return SIGNAL_SET[s] and s or nil
end

-- valid_app_name(v): whether v may name an app (and its directories).
function R.valid_app_name(v)
  return type(v) == "string" and #v <= R.APP_NAME_MAX and v:match(R.APP_NAME_PATTERN) ~= nil
end

return R
