-- Validating a release manifest (manifest.json, DESIGN §4): every problem
-- with its JSON path, never a raise, whatever the document is. The keys,
-- enums, ranges and required keys come from the schema (rules); what the
-- schema cannot say (paths, overlapping mounts, app names, dependencies)
-- is checked here.
local graph = require("ctcli.model.manifest.graph")
local rules = require("ctcli.model.manifest.rules")
local suggest = require("ctcli.base.text").suggest
local V = require("ctcli.model.manifest.values")
local F = require("ctcli.model.manifest.fields")

local join, quote, is_object, is_array, length = V.join, V.quote, V.is_object, V.is_array, V.length
local clean_path, is_under, sorted_keys = V.clean_path, V.is_under, V.sorted_keys
local valid_app_name, app_name = rules.valid_app_name, V.app_name
local report, check_string, check_rule = F.report, F.check_string, F.check_rule
local check_relative_path, check_absolute_path = F.check_relative_path, F.check_absolute_path

local M = {}

local KNOWN = {}
for shape, keys in pairs(rules.KNOWN_KEYS) do KNOWN[shape] = rules.set_of(keys) end

-- check_object(ctx, path, v, shape, what) -> true when v is an object to
-- look into; reports unknown keys (with a hint) and missing required keys.
local function check_object(ctx, path, v, shape, what)
  if not is_object(v) then
    report(ctx, path, "expected " .. (what or "an object"))
    return false
  end
  local known = KNOWN[shape]
  for _, k in ipairs(sorted_keys(v)) do
    if not known[k] and not k:match("^x%-") then
      local hint = rules.HINTS[shape] and rules.HINTS[shape][k] or suggest(k, rules.KNOWN_KEYS[shape])
      report(ctx, join(path, k), "unknown key '" .. k .. "'"
        .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
    end
  end
  for _, k in ipairs(rules.REQUIRED[shape] or {}) do
    if v[k] == nil then report(ctx, join(path, k), "missing required key") end
  end
  return true
end

local function check_release(ctx, path, v)
  if not check_object(ctx, path, v, "release") then return end
  if v.name ~= nil then check_string(ctx, join(path, "name"), v.name) end
  if v.version ~= nil then check_string(ctx, join(path, "version"), v.version) end
  if v.commit ~= nil then check_string(ctx, join(path, "commit"), v.commit) end
  if v.time ~= nil then F.check_time(ctx, join(path, "time"), v.time) end
  if v.meta ~= nil and not is_object(v.meta) then
    report(ctx, join(path, "meta"), "expected an object")
  end
end

local function check_runtime(ctx, path, v)
  if not check_object(ctx, path, v, "runtime") then return end
  for _, k in ipairs(rules.KNOWN_KEYS.runtime) do
    if v[k] ~= nil then check_relative_path(ctx, join(path, k), v[k]) end
  end
end

local function check_files(ctx, path, v)
  if not is_object(v) then
    report(ctx, path, 'expected an object of package paths to "sha256:<hex>" digests')
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    local p = join(path, k)
    if check_relative_path(ctx, p, k) then F.check_digest(ctx, p, v[k]) end
  end
end

local function check_image(ctx, path, v)
  if not check_object(ctx, path, v, "image") then return end
  if v.layout ~= nil then check_relative_path(ctx, join(path, "layout"), v.layout) end
  if v.ref ~= nil then check_string(ctx, join(path, "ref"), v.ref) end
  if v.digest ~= nil then F.check_digest(ctx, join(path, "digest"), v.digest) end
  if v.name ~= nil then check_string(ctx, join(path, "name"), v.name) end
end

local function check_healthcheck(ctx, path, v)
  if not check_object(ctx, path, v, "healthcheck") then return end
  if v.command ~= nil then F.check_argv(ctx, join(path, "command"), v.command) end
  for _, k in ipairs({ "interval", "timeout", "retries", "start_period", "legacy_wait_for" }) do
    if v[k] ~= nil then check_rule(ctx, join(path, k), v[k], "healthcheck", k) end
  end
end

local function check_resources(ctx, path, v)
  if not check_object(ctx, path, v, "resources") then return end
  if v.memory ~= nil then
    local ok, msg = V.memory_bytes(v.memory)
    if not ok then report(ctx, join(path, "memory"), msg) end
  end
  for _, k in ipairs({ "cpus", "pids" }) do
    if v[k] ~= nil then check_rule(ctx, join(path, k), v[k], "resources", k) end
  end
end

-- check_depends_on(ctx, path, v, self, names, name_list) -> the valid dependencies.
local function check_depends_on(ctx, path, v, self, names, name_list)
  local deps = {}
  if not is_array(v) then
    report(ctx, path, "expected an array of app names")
    return deps
  end
  local seen = {}
  for i = 1, length(v) do
    local d = v[i]
    if type(d) ~= "string" then
      report(ctx, join(path, i), "expected an app name")
    elseif d == self then
      report(ctx, path, "an app cannot depend on itself")
    elseif not names[d] then
      local others = {}
      for _, n in ipairs(name_list) do
        if n ~= self then others[#others + 1] = n end
      end
      local hint = suggest(d, others)
      report(ctx, path, "unknown app '" .. d .. "'" .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
    elseif seen[d] then
      report(ctx, path, "'" .. d .. "' is listed twice")
    else
      seen[d] = true
      deps[#deps + 1] = d
    end
  end
  return deps
end

-- Paths of configs, data and logs may not be equal or nested: each is a
-- separate bind mount from the root.
local function check_overlaps(ctx, seg, entries)
  for j = 2, #entries do
    local b = entries[j]
    for i = 1, j - 1 do
      local a = entries[i]
      local relation
      if a.clean == b.clean then relation = "is the same path as"
      elseif is_under(b.clean, a.clean) then relation = "is inside"
      elseif is_under(a.clean, b.clean) then relation = "contains" end
      if relation then
        report(ctx, join(seg, b.field), string.format("%s %s %s %s %s (configs, data and logs must not overlap)",
          b.field, quote(b.raw), relation, a.field, quote(a.raw)))
        break
      end
    end
  end
end

-- app_segments(apps) -> segs, first: the path segment of each app (its
-- name when that is valid and first seen, else its index) and the index
-- each name is first seen at.
local function app_segments(apps)
  local segs, first = {}, {}
  for i = 1, length(apps) do
    local name = app_name(apps[i])
    if valid_app_name(name) and not first[name] then
      first[name] = i
      segs[i] = join("apps", name)
    else
      segs[i] = join("apps", i)
    end
  end
  return segs, first
end

local function check_app(ctx, seg, app, names, name_list)
  if not check_object(ctx, seg, app, "app") then return nil end
  local name = app.name
  if name ~= nil then
    if type(name) ~= "string" then
      report(ctx, join(seg, "name"), "expected a string")
    elseif not valid_app_name(name) then
      report(ctx, join(seg, "name"), "invalid app name " .. quote(name)
        .. " (lowercase letters, digits, '.', '_', '-'; starting with a letter or digit; at most 63 characters)")
    end
  end
  if app.version ~= nil then check_string(ctx, join(seg, "version"), app.version) end
  if app.image ~= nil then check_image(ctx, join(seg, "image"), app.image) end
  if app.entrypoint ~= nil then F.check_argv(ctx, join(seg, "entrypoint"), app.entrypoint) end
  if app.env ~= nil then F.check_env(ctx, join(seg, "env"), app.env) end
  if app.workdir ~= nil then check_absolute_path(ctx, join(seg, "workdir"), app.workdir) end
  local mounts = {}
  for _, field in ipairs({ "configs", "data" }) do
    if app[field] ~= nil then
      for _, e in ipairs(F.check_mount_list(ctx, join(seg, field), app[field])) do
        e.field = field
        mounts[#mounts + 1] = e
      end
    end
  end
  if app.logs ~= nil and check_absolute_path(ctx, join(seg, "logs"), app.logs, true) then
    mounts[#mounts + 1] = { field = "logs", raw = app.logs, clean = clean_path(app.logs) }
  end
  check_overlaps(ctx, seg, mounts)
  local deps = {}
  if app.depends_on ~= nil then
    deps = check_depends_on(ctx, join(seg, "depends_on"), app.depends_on, name, names, name_list)
  end
  if app.healthcheck ~= nil then check_healthcheck(ctx, join(seg, "healthcheck"), app.healthcheck) end
  -- The schema's enum also has the names without SIG; the message lists
  -- the full names once.
  if app.stop_signal ~= nil and not rules.signal_name(app.stop_signal) then
    report(ctx, join(seg, "stop_signal"), "expected one of " .. table.concat(rules.SIGNALS, ", ")
      .. " (the SIG prefix may be left out)")
  end
  if app.stop_timeout ~= nil then check_rule(ctx, join(seg, "stop_timeout"), app.stop_timeout, "app", "stop_timeout") end
  if app.hooks ~= nil then check_relative_path(ctx, join(seg, "hooks"), app.hooks) end
  if app.hook_timeout ~= nil then check_rule(ctx, join(seg, "hook_timeout"), app.hook_timeout, "app", "hook_timeout") end
  if app.migrations ~= nil then F.check_migrations(ctx, join(seg, "migrations"), app.migrations) end
  if app.network ~= nil then check_rule(ctx, join(seg, "network"), app.network, "app", "network") end
  if app.resources ~= nil then check_resources(ctx, join(seg, "resources"), app.resources) end
  for _, k in ipairs({ "read_only_rootfs", "restart", "journald", "user_namespace" }) do
    if app[k] ~= nil then check_rule(ctx, join(seg, k), app[k], "app", k) end
  end
  if app.commit ~= nil then check_string(ctx, join(seg, "commit"), app.commit) end
  if app.built_at ~= nil then check_string(ctx, join(seg, "built_at"), app.built_at) end
  return deps
end

local function check_cycles(ctx, deps, order, segs_by_name)
  for _, comp in ipairs(graph.cycles(deps, order)) do
    local start
    for _, n in ipairs(order) do
      if comp[n] then start = n break end
    end
    local path = graph.cycle_path(deps, comp, start)
    report(ctx, join(segs_by_name[start], "depends_on"),
      "dependency cycle: " .. table.concat(path, " -> "))
  end
end

local function check_apps(ctx, apps)
  if not is_array(apps) or length(apps) == 0 then
    report(ctx, "apps", "expected a non-empty array of apps")
    return
  end
  local segs, first = app_segments(apps)
  local names, name_list, segs_by_name = {}, {}, {}
  for i = 1, length(apps) do
    local n = app_name(apps[i])
    if n ~= nil and first[n] == i then
      names[n] = true
      name_list[#name_list + 1] = n
      segs_by_name[n] = segs[i]
    end
  end
  local deps_of = {}
  for i = 1, length(apps) do
    local app = apps[i]
    local name = app_name(app)
    local deps = check_app(ctx, segs[i], app, names, name_list)
    if deps and valid_app_name(name) and first[name] ~= i then
      report(ctx, join(segs[i], "name"), "duplicate app name '" .. name
        .. "' (also " .. segs_by_name[name] .. ")")
    elseif deps and name ~= nil and first[name] == i then
      deps_of[name] = deps
    end
  end
  check_cycles(ctx, deps_of, name_list, segs_by_name)
end

-- validate(doc [, file]) -> list of problems {path=, message=, file=}; empty
-- when doc is a valid manifest. Never raises, whatever doc is.
function M.validate(doc, file)
  local ctx = F.new_ctx(file)
  if not check_object(ctx, "", doc, "manifest", "a JSON object at the top level") then
    return ctx.problems
  end
  -- "$schema" only points an editor at a schema; ctcli reads none.
  if doc["$schema"] ~= nil and type(doc["$schema"]) ~= "string" then
    report(ctx, "$schema", "expected a string (the schema's URL)")
  end
  local mv = doc.manifest_version
  if mv ~= nil then
    if not V.is_integer(mv) then
      report(ctx, "manifest_version", "expected the integer " .. rules.MANIFEST_VERSION)
    elseif mv ~= rules.MANIFEST_VERSION then
      report(ctx, "manifest_version", string.format(
        "unsupported manifest_version %s (this ctcli reads version %d)",
        tostring(math.tointeger(mv) or mv), rules.MANIFEST_VERSION))
    end
  end
  if doc.release ~= nil then check_release(ctx, "release", doc.release) end
  if doc.runtime ~= nil then check_runtime(ctx, "runtime", doc.runtime) end
  if doc.apps ~= nil then check_apps(ctx, doc.apps) end
  if doc.files ~= nil then check_files(ctx, "files", doc.files) end
  return ctx.problems
end

M.app_segments = app_segments

return M
