-- The release model: a valid manifest normalized (defaults the schema states
-- filled in, paths cleaned, "x-" keys dropped, apps in dependency order).
local graph = require("ctcli.model.manifest.graph")
local json = require("ctcli.base.json")
local rules = require("ctcli.model.manifest.rules")
local validate = require("ctcli.model.manifest.validate")
local V = require("ctcli.model.manifest.values")

local copy, array_copy, clean_path, length = V.copy, V.array_copy, V.clean_path, V.length

local M = {}

local function strip_extensions(t)
  local out = json.object({})
  for k, v in pairs(t) do
    if not tostring(k):match("^x%-") then out[k] = copy(v) end
  end
  return out
end

local function normalize_app(a)
  local d = rules.DEFAULTS
  local app = {
    name = a.name, version = a.version,
    image = json.object({ layout = a.image.layout, ref = a.image.ref, digest = a.image.digest, name = a.image.name }),
    entrypoint = a.entrypoint and array_copy(a.entrypoint) or nil,
    env = json.object(copy(a.env) or {}),
    workdir = a.workdir and clean_path(a.workdir) or nil,
    configs = json.array({}), data = json.array({}),
    logs = a.logs and clean_path(a.logs) or nil,
    depends_on = array_copy(a.depends_on),
    stop_signal = a.stop_signal and rules.signal_name(a.stop_signal) or d.stop_signal,
    stop_timeout = a.stop_timeout or d.stop_timeout,
    hooks = a.hooks, hook_timeout = a.hook_timeout,
    migrations = a.migrations and array_copy(a.migrations) or nil,
    network = a.network or d.network,
    read_only_rootfs = a.read_only_rootfs == true,
    commit = a.commit, built_at = a.built_at,
    -- Absent: the default of the package's format (runtime.monitor.policy).
    restart = a.restart,
    -- Only an opt-in is kept: absent means no forwarding.
    journald = a.journald == true or nil,
  }
  -- Only an opt-out is kept: absent means the default, a user namespace.
  if a.user_namespace == false then app.user_namespace = false end
  for _, field in ipairs({ "configs", "data" }) do
    for i = 1, length(a[field] or {}) do app[field][i] = clean_path(a[field][i]) end
  end
  if a.healthcheck then
    local h = strip_extensions(a.healthcheck)
    h.command = array_copy(a.healthcheck.command)
    for k, v in pairs(d.healthcheck) do
      if h[k] == nil then h[k] = v end
    end
    app.healthcheck = h
  end
  if a.resources then
    local r = strip_extensions(a.resources)
    if r.memory ~= nil then r.memory = V.memory_bytes(r.memory) end
    app.resources = r
  end
  return app
end

-- normalize(doc) -> the release model, or nil, problems when doc is not valid.
function M.normalize(doc)
  local problems = validate.validate(doc)
  if #problems > 0 then return nil, problems end
  local r = doc.release
  local model = {
    manifest_version = rules.MANIFEST_VERSION,
    name = r.name, version = r.version, commit = r.commit, time = r.time,
    meta = r.meta and copy(r.meta) or nil,
    runtime = json.object({}),
    files = doc.files and json.object(copy(doc.files)) or nil,
  }
  if doc.runtime then
    model.runtime.runc, model.runtime.umoci = doc.runtime.runc, doc.runtime.umoci
  end
  local declared = {}
  for i = 1, length(doc.apps) do declared[i] = normalize_app(doc.apps[i]) end
  local order, levels = graph.dependency_order(declared)
  local by_name = {}
  for _, a in ipairs(declared) do by_name[a.name] = a end
  model.apps = json.array({})
  for i, n in ipairs(order) do model.apps[i] = by_name[n] end
  model.order, model.levels = order, levels
  return model
end

return M
