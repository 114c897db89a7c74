-- The release manifest (manifest.json, DESIGN §4): validating it, reporting
-- every problem with its JSON path, normalizing it into the release model,
-- and converting a legacy package (meta.json + package/apps/*) into one.
--
-- Nothing here raises on bad input: validate() returns a list of problems
-- {path=, message= [, file=]}, the other functions return nil, problems.
-- manifests/release.schema.json describes the same rules; the spec checks
-- that its key sets and M.KNOWN_KEYS agree.
local json = require("ctcli.base.json")

local M = {}

M.MANIFEST_VERSION = 1

-- The schema's $id (manifests/release.schema.json): a URL, so an editor
-- pointed at it by a manifest's "$schema" key can find it. pack and convert
-- write it into the manifests they make.
M.SCHEMA_URL = "https://ctcli.dev/schemas/release.schema.json"

-- Keys each fixed-shape object may hold, in the order problems are reported.
-- Keys starting with "x-" are the authors' own and allowed in all of them.
M.KNOWN_KEYS = {
  manifest = { "$schema", "manifest_version", "release", "runtime", "apps", "files" },
  release = { "name", "version", "commit", "time", "meta" },
  runtime = { "runc", "umoci" },
  app = {
    "name", "version", "image", "entrypoint", "env", "workdir", "configs",
    "data", "logs", "depends_on", "healthcheck", "stop_signal", "stop_timeout",
    "hooks", "hook_timeout", "migrations", "network", "resources", "read_only_rootfs",
    "commit", "built_at", "user_namespace", "restart", "journald",
  },
  image = { "layout", "ref", "digest", "name" },
  healthcheck = { "command", "interval", "timeout", "retries", "start_period", "legacy_wait_for" },
  resources = { "memory", "cpus", "pids" },
}

local REQUIRED = {
  manifest = { "manifest_version", "release", "apps" },
  release = { "name", "version" },
  app = { "name", "version", "image" },
  image = { "layout", "ref" },
  healthcheck = { "command" },
}

-- Names of the legacy format (or of other tools) an author may carry over.
local HINTS = {
  app = {
    logsFolder = "logs", imageTag = "version", imageSha = "image.digest",
    builtAt = "built_at", dependsOn = "depends_on", depends = "depends_on",
    stopSignal = "stop_signal", stopTimeout = "stop_timeout", environment = "env",
    working_dir = "workdir",
  },
  healthcheck = { waitFor = "start_period", test = "command" },
  manifest = { releaseMeta = "release.meta" },
}

M.SIGNALS = { "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL" }
M.NETWORKS = { "host", "isolated" }
M.DEFAULTS = {
  stop_signal = "SIGTERM", stop_timeout = 10, network = "host",
  healthcheck = { interval = 2, timeout = 10, retries = 3, start_period = 0 },
}

local APP_NAME_PATTERN = "^[a-z0-9][a-z0-9_.%-]*$"
local APP_NAME_MAX = 63
local ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
local DIGEST_PATTERN = "^sha256:" .. string.rep("[0-9a-f]", 64) .. "$"
local MEMORY_UNITS = { [""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }
local MAX_EXACT = 2 ^ 53

---------------------------------------------------------------------------
-- Small helpers

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local SIGNAL_SET = set_of(M.SIGNALS)
local NETWORK_SET = set_of(M.NETWORKS)

-- suggest(word, candidates) -> the closest candidate, or nil (ctcli.text).
local suggest = require("ctcli.base.text").suggest
M.suggest = suggest

local function quote(s)
  return json.encode(tostring(s))
end

-- join(path, key) -> "a.b", "a[0]" (integer keys are Lua indexes; shown 0-based
-- as in jq) or 'a["odd key"]'.
local function join(path, key)
  if math.type(key) == "integer" then
    return path .. "[" .. (key - 1) .. "]"
  end
  key = tostring(key)
  if key:match("^[A-Za-z0-9_-]+$") then
    return path == "" and key or (path .. "." .. key)
  end
  return path .. "[" .. quote(key) .. "]"
end

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

local function is_integer(v)
  return is_finite(v) and math.floor(v) == v
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

local function is_object(v)
  local k = kind(v)
  return k == "object" or k == "empty"
end

local function is_array(v)
  local k = kind(v)
  return k == "array" or k == "empty"
end

-- length(a) -> the largest index of an array (a JSON null leaves a hole).
local function length(a)
  local n = 0
  for k in pairs(a) do
    if math.type(k) == "integer" and k > n then n = k end
  end
  return n
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function has_dotdot(s)
  for seg in s:gmatch("[^/]+") do
    if seg == ".." then return true end
  end
  return false
end

-- clean_path("/a//b/./c/") -> "/a/b/c"
local function clean_path(s)
  local parts = {}
  for seg in s:gmatch("[^/]+") do
    if seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

local function is_under(child, parent)
  if parent == "/" then return child ~= "/" end
  return child:sub(1, #parent + 1) == parent .. "/"
end

local function app_name(app)
  return type(app) == "table" and rawget(app, "name") or nil
end

local function valid_app_name(v)
  return type(v) == "string" and #v <= APP_NAME_MAX and v:match(APP_NAME_PATTERN) ~= nil
end

-- valid_app_name(v): whether v may name an app (and its directories).
M.valid_app_name = valid_app_name

local function days_in_month(y, m)
  if m == 2 then
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    return leap and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

local function is_utc_time(s)
  if type(s) ~= "string" then return false end
  local y, mo, d, h, mi, se, frac =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.-)Z$")
  if not y or not (frac == "" or frac:match("^%.%d+$")) then return false end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  return mo >= 1 and mo <= 12 and d >= 1 and d <= days_in_month(y, mo)
    and h <= 23 and mi <= 59 and se <= 60
end

-- memory_bytes("256M") -> 268435456, or nil, message
local function memory_bytes(v)
  if type(v) == "string" then
    local digits, unit = v:match("^([1-9]%d*)([KMGT]?)$")
    if not digits then
      return nil, 'expected a size like "512K", "256M", "1G" or a number of bytes'
    end
    local n = tonumber(digits) * MEMORY_UNITS[unit]
    if n > MAX_EXACT then return nil, "is too large" end
    return math.tointeger(n) or math.floor(n)
  elseif is_integer(v) and v >= 1 then
    if v > MAX_EXACT then return nil, "is too large" end
    return math.tointeger(v)
  end
  return nil, 'expected a size like "512K", "256M", "1G" or a number of bytes'
end

local function signal_name(v)
  if type(v) ~= "string" then return nil end
  local s = v:match("^SIG") and v or ("SIG" .. v)
  return SIGNAL_SET[s] and s or nil
end

---------------------------------------------------------------------------
-- Validation: a context collects problems; each check_* reports and never raises.

local function new_ctx(file)
  return { problems = {}, file = file }
end

local function report(ctx, path, message)
  ctx.problems[#ctx.problems + 1] = { path = path, message = message, file = ctx.file }
end

local function expected_string_message(v, what)
  local msg = "expected " .. (what or "a non-empty string")
  if type(v) == "number" then msg = msg .. " (put the value in quotes)" end
  return msg
end

-- check_object(ctx, path, v, shape, what) -> true when v is an object to
-- look into; reports unknown keys (with a hint) and missing required keys.
local function check_object(ctx, path, v, shape, what)
  if not is_object(v) then
    report(ctx, path, "expected " .. (what or "an object"))
    return false
  end
  local known = set_of(M.KNOWN_KEYS[shape])
  for _, k in ipairs(sorted_keys(v)) do
    if not known[k] and not k:match("^x%-") then
      local hint = HINTS[shape] and HINTS[shape][k] or suggest(k, M.KNOWN_KEYS[shape])
      report(ctx, join(path, k), "unknown key '" .. k .. "'"
        .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
    end
  end
  for _, k in ipairs(REQUIRED[shape] or {}) do
    if v[k] == nil then report(ctx, join(path, k), "missing required key") end
  end
  return true
end

local function check_string(ctx, path, v)
  if type(v) ~= "string" or v == "" then
    report(ctx, path, expected_string_message(v))
    return false
  end
  return true
end

local function check_relative_path(ctx, path, v)
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
local function check_absolute_path(ctx, path, v, mount)
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

local function check_number(ctx, path, v, min, strict)
  if not is_finite(v) or v < min or (strict and v == min) then
    report(ctx, path, strict and "expected a positive number"
      or ("expected a number >= " .. min))
    return false
  end
  return true
end

local function check_count(ctx, path, v)
  if not is_integer(v) or v < 1 then
    report(ctx, path, "expected an integer >= 1")
    return false
  end
  return true
end

local function check_digest(ctx, path, v)
  if type(v) ~= "string" or not v:match(DIGEST_PATTERN) then
    report(ctx, path, 'expected "sha256:" and 64 lowercase hex digits')
    return false
  end
  return true
end

-- check_argv(ctx, path, v) -- a non-empty array of strings (an argv).
local function check_argv(ctx, path, v)
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
local function check_mount_list(ctx, path, v)
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

local function check_time(ctx, path, v)
  if not is_utc_time(v) then
    report(ctx, path, 'expected an RFC 3339 UTC time like "2026-11-01T12:00:00Z"')
  end
end

local function check_release(ctx, path, v)
  if not check_object(ctx, path, v, "release") then return end
  if v.name ~= nil then check_string(ctx, join(path, "name"), v.name) end
  if v.version ~= nil then check_string(ctx, join(path, "version"), v.version) end
  if v.commit ~= nil then check_string(ctx, join(path, "commit"), v.commit) end
  if v.time ~= nil then check_time(ctx, join(path, "time"), v.time) end
  if v.meta ~= nil and not is_object(v.meta) then
    report(ctx, join(path, "meta"), "expected an object")
  end
end

local function check_runtime(ctx, path, v)
  if not check_object(ctx, path, v, "runtime") then return end
  for _, k in ipairs(M.KNOWN_KEYS.runtime) do
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
    if check_relative_path(ctx, p, k) then check_digest(ctx, p, v[k]) end
  end
end

local function check_image(ctx, path, v)
  if not check_object(ctx, path, v, "image") then return end
  if v.layout ~= nil then check_relative_path(ctx, join(path, "layout"), v.layout) end
  if v.ref ~= nil then check_string(ctx, join(path, "ref"), v.ref) end
  if v.digest ~= nil then check_digest(ctx, join(path, "digest"), v.digest) end
  if v.name ~= nil then check_string(ctx, join(path, "name"), v.name) end
end

local function check_env(ctx, path, v)
  if not is_object(v) then
    report(ctx, path, "expected an object of variable names to string values")
    return
  end
  for _, k in ipairs(sorted_keys(v)) do
    local p = join(path, k)
    if not tostring(k):match(ENV_NAME_PATTERN) then
      report(ctx, p, "invalid variable name (letters, digits and _, not starting with a digit)")
    elseif type(v[k]) ~= "string" then
      report(ctx, p, expected_string_message(v[k], "a string"))
    end
  end
end

local function check_healthcheck(ctx, path, v)
  if not check_object(ctx, path, v, "healthcheck") then return end
  if v.command ~= nil then check_argv(ctx, join(path, "command"), v.command) end
  if v.interval ~= nil then check_number(ctx, join(path, "interval"), v.interval, 0, true) end
  if v.timeout ~= nil then check_number(ctx, join(path, "timeout"), v.timeout, 0, true) end
  if v.retries ~= nil then check_count(ctx, join(path, "retries"), v.retries) end
  if v.start_period ~= nil then check_number(ctx, join(path, "start_period"), v.start_period, 0) end
  if v.legacy_wait_for ~= nil then
    check_number(ctx, join(path, "legacy_wait_for"), v.legacy_wait_for, 0)
  end
end

local function check_resources(ctx, path, v)
  if not check_object(ctx, path, v, "resources") then return end
  if v.memory ~= nil then
    local ok, msg = memory_bytes(v.memory)
    if not ok then report(ctx, join(path, "memory"), msg) end
  end
  if v.cpus ~= nil then check_number(ctx, join(path, "cpus"), v.cpus, 0, true) end
  if v.pids ~= nil then check_count(ctx, join(path, "pids"), v.pids) end
end

local function check_migrations(ctx, path, v)
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

-- The path segment of each app: its name when that is valid and first seen,
-- else its index.
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
  if app.entrypoint ~= nil then check_argv(ctx, join(seg, "entrypoint"), app.entrypoint) end
  if app.env ~= nil then check_env(ctx, join(seg, "env"), app.env) end
  if app.workdir ~= nil then check_absolute_path(ctx, join(seg, "workdir"), app.workdir) end
  local mounts = {}
  for _, field in ipairs({ "configs", "data" }) do
    if app[field] ~= nil then
      for _, e in ipairs(check_mount_list(ctx, join(seg, field), app[field])) do
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
  if app.stop_signal ~= nil and not signal_name(app.stop_signal) then
    report(ctx, join(seg, "stop_signal"), "expected one of " .. table.concat(M.SIGNALS, ", ")
      .. " (the SIG prefix may be left out)")
  end
  if app.stop_timeout ~= nil then check_number(ctx, join(seg, "stop_timeout"), app.stop_timeout, 0) end
  if app.hooks ~= nil then check_relative_path(ctx, join(seg, "hooks"), app.hooks) end
  if app.hook_timeout ~= nil then check_number(ctx, join(seg, "hook_timeout"), app.hook_timeout, 0, true) end
  if app.migrations ~= nil then check_migrations(ctx, join(seg, "migrations"), app.migrations) end
  if app.network ~= nil and not NETWORK_SET[app.network] then
    report(ctx, join(seg, "network"), 'expected "host" or "isolated"')
  end
  if app.resources ~= nil then check_resources(ctx, join(seg, "resources"), app.resources) end
  if app.read_only_rootfs ~= nil and type(app.read_only_rootfs) ~= "boolean" then
    report(ctx, join(seg, "read_only_rootfs"), "expected true or false")
  end
  if app.restart ~= nil and app.restart ~= "no" and app.restart ~= "on-failure" and app.restart ~= "always" then
    report(ctx, join(seg, "restart"), 'expected "no", "on-failure" or "always"')
  end
  if app.journald ~= nil and type(app.journald) ~= "boolean" then
    report(ctx, join(seg, "journald"), "expected true or false")
  end
  if app.user_namespace ~= nil and type(app.user_namespace) ~= "boolean" then
    report(ctx, join(seg, "user_namespace"), "expected true or false")
  end
  if app.commit ~= nil then check_string(ctx, join(seg, "commit"), app.commit) end
  if app.built_at ~= nil then check_string(ctx, join(seg, "built_at"), app.built_at) end
  return deps
end

-- Strongly connected components (Tarjan) of graph[name] = {dep, ...}, over
-- names in declared order; returns the components of more than one app.
local function cycles_of(graph, names_in_order)
  local index, low, on_stack, stack, found = {}, {}, {}, {}, {}
  local counter = 0
  local function visit(v)
    counter = counter + 1
    index[v], low[v] = counter, counter
    stack[#stack + 1] = v
    on_stack[v] = true
    for _, w in ipairs(graph[v] or {}) do
      if not index[w] then
        visit(w)
        low[v] = math.min(low[v], low[w])
      elseif on_stack[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(stack)
        on_stack[w] = nil
        comp[w] = true
      until w == v
      if next(comp, next(comp)) ~= nil then found[#found + 1] = comp end
    end
  end
  for _, v in ipairs(names_in_order) do
    if not index[v] then visit(v) end
  end
  return found
end

-- One cycle through start inside a component, by breadth-first search.
local function cycle_path(graph, comp, start)
  local prev, queue, head = { [start] = false }, { start }, 1
  while head <= #queue do
    local v = queue[head]
    head = head + 1
    for _, w in ipairs(graph[v] or {}) do
      if w == start then
        local path = { start }
        local x = v
        while x ~= start do
          table.insert(path, 2, x)
          x = prev[x]
        end
        path[#path + 1] = start
        return path
      end
      if comp[w] and prev[w] == nil then
        prev[w] = v
        queue[#queue + 1] = w
      end
    end
  end
end

local function check_cycles(ctx, graph, order, segs_by_name)
  for _, comp in ipairs(cycles_of(graph, order)) do
    local start
    for _, n in ipairs(order) do
      if comp[n] then start = n break end
    end
    local path = cycle_path(graph, comp, start)
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
  local graph = {}
  for i = 1, length(apps) do
    local app = apps[i]
    local name = app_name(app)
    local deps = check_app(ctx, segs[i], app, names, name_list)
    if deps and valid_app_name(name) and first[name] ~= i then
      report(ctx, join(segs[i], "name"), "duplicate app name '" .. name
        .. "' (also " .. segs_by_name[name] .. ")")
    elseif deps and name ~= nil and first[name] == i then
      graph[name] = deps
    end
  end
  check_cycles(ctx, graph, name_list, segs_by_name)
end

-- validate(doc [, file]) -> list of problems {path=, message=, file=}; empty
-- when doc is a valid manifest. Never raises, whatever doc is.
function M.validate(doc, file)
  local ctx = new_ctx(file)
  if not check_object(ctx, "", doc, "manifest", "a JSON object at the top level") then
    return ctx.problems
  end
  -- "$schema" only points an editor at a schema; ctcli reads none.
  if doc["$schema"] ~= nil and type(doc["$schema"]) ~= "string" then
    report(ctx, "$schema", "expected a string (the schema's URL)")
  end
  local mv = doc.manifest_version
  if mv ~= nil then
    if not is_integer(mv) then
      report(ctx, "manifest_version", "expected the integer " .. M.MANIFEST_VERSION)
    elseif mv ~= M.MANIFEST_VERSION then
      report(ctx, "manifest_version", string.format(
        "unsupported manifest_version %s (this ctcli reads version %d)",
        tostring(math.tointeger(mv) or mv), M.MANIFEST_VERSION))
    end
  end
  if doc.release ~= nil then check_release(ctx, "release", doc.release) end
  if doc.runtime ~= nil then check_runtime(ctx, "runtime", doc.runtime) end
  if doc.apps ~= nil then check_apps(ctx, doc.apps) end
  if doc.files ~= nil then check_files(ctx, "files", doc.files) end
  return ctx.problems
end

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

---------------------------------------------------------------------------
-- The release model

local function copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[k] = copy(x, seen) end
  if json.is_array(v) then json.array(out) elseif next(out) == nil then json.object(out) end
  return out
end

local function array_copy(a)
  local out = json.array({})
  for i = 1, length(a or {}) do out[i] = a[i] end
  return out
end

local function strip_extensions(t)
  local out = json.object({})
  for k, v in pairs(t) do
    if not tostring(k):match("^x%-") then out[k] = copy(v) end
  end
  return out
end

local function normalize_app(a)
  local d = M.DEFAULTS
  local app = {
    name = a.name, version = a.version,
    image = json.object({ layout = a.image.layout, ref = a.image.ref, digest = a.image.digest, name = a.image.name }),
    entrypoint = a.entrypoint and array_copy(a.entrypoint) or nil,
    env = json.object(copy(a.env) or {}),
    workdir = a.workdir and clean_path(a.workdir) or nil,
    configs = json.array({}), data = json.array({}),
    logs = a.logs and clean_path(a.logs) or nil,
    depends_on = array_copy(a.depends_on),
    stop_signal = a.stop_signal and signal_name(a.stop_signal) or d.stop_signal,
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
    if r.memory ~= nil then r.memory = memory_bytes(r.memory) end
    app.resources = r
  end
  return app
end

-- dependency_order(apps) -> order, levels: a stable topological order (among
-- apps free to start, the one declared first) and the dependency levels.
local function dependency_order(apps)
  local index, remaining, dependents = {}, {}, {}
  for i, a in ipairs(apps) do
    index[a.name] = i
    remaining[a.name] = #a.depends_on
    dependents[a.name] = {}
  end
  for _, a in ipairs(apps) do
    for _, dep in ipairs(a.depends_on) do
      table.insert(dependents[dep], a.name)
    end
  end
  local ready, order, level = {}, json.array({}), {}
  for _, a in ipairs(apps) do
    if remaining[a.name] == 0 then ready[#ready + 1] = a.name end
  end
  while #ready > 0 do
    table.sort(ready, function(x, y) return index[x] < index[y] end)
    local n = table.remove(ready, 1)
    order[#order + 1] = n
    for _, m in ipairs(dependents[n]) do
      remaining[m] = remaining[m] - 1
      if remaining[m] == 0 then ready[#ready + 1] = m end
    end
  end
  local levels = json.array({})
  for _, n in ipairs(order) do
    local lv = 1
    for _, dep in ipairs(apps[index[n]].depends_on) do
      lv = math.max(lv, level[dep] + 1)
    end
    level[n] = lv
  end
  for _, a in ipairs(apps) do
    local lv = level[a.name]
    for l = #levels + 1, lv do levels[l] = json.array({}) end
    table.insert(levels[lv], a.name)
  end
  return order, levels
end

-- normalize(doc) -> the release model, or nil, problems when doc is not valid.
function M.normalize(doc)
  local problems = M.validate(doc)
  if #problems > 0 then return nil, problems end
  local r = doc.release
  local model = {
    manifest_version = M.MANIFEST_VERSION,
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
  local order, levels = dependency_order(declared)
  local by_name = {}
  for _, a in ipairs(declared) do by_name[a.name] = a end
  model.apps = json.array({})
  for i, n in ipairs(order) do model.apps[i] = by_name[n] end
  model.order, model.levels = order, levels
  return model
end

---------------------------------------------------------------------------
-- Legacy packages (DESIGN §4): meta.json + package/apps/<app>/{package-config.json, version.json, skopeo/}

local LEGACY_RUNC, LEGACY_UMOCI = "package/runc.amd64", "package/umoci.amd64"
local GO_ZERO_TIME = "0001-01-01T00:00:00Z"

local function legacy_files(name)
  local dir = "package/apps/" .. name
  return { dir = dir, pc = dir .. "/package-config.json", version = dir .. "/version.json" }
end

local function legacy_report(problems, file, path, message)
  problems[#problems + 1] = { file = file, path = path, message = message }
end

local function optional_strings(problems, file, path, v)
  if v == nil then return nil end
  if not is_array(v) then
    legacy_report(problems, file, path, "expected an array of strings")
    return nil
  end
  for i = 1, length(v) do
    if type(v[i]) ~= "string" then
      legacy_report(problems, file, path, "expected an array of strings")
      return nil
    end
  end
  if length(v) == 0 then return nil end
  return array_copy(v)
end

local function optional_string(problems, file, path, v)
  if v == nil or v == "" then return nil end
  if type(v) ~= "string" then
    legacy_report(problems, file, path, "expected a string")
    return nil
  end
  return v
end

-- validate_package_config(pc, file) -> the app fields it gives, problems
function M.validate_package_config(pc, file)
  local problems, app = {}, {}
  if pc == nil then
    legacy_report(problems, file, "", "missing (every app needs a package-config.json)")
    return app, problems
  end
  if not is_object(pc) then
    legacy_report(problems, file, "", "expected a JSON object")
    return app, problems
  end
  app.entrypoint = optional_strings(problems, file, "entrypoint", pc.entrypoint)
  app.configs = optional_strings(problems, file, "configs", pc.configs)
  app.data = optional_strings(problems, file, "data", pc.data)
  app.logs = optional_string(problems, file, "logsFolder", pc.logsFolder)
  local hc = pc.healthcheck
  if hc ~= nil then
    if not is_object(hc) then
      legacy_report(problems, file, "healthcheck", "expected an object")
    else
      local command = optional_strings(problems, file, "healthcheck.command", hc.command)
      local wait = hc.waitFor
      if wait ~= nil and not (is_integer(wait) and wait >= 0) then
        legacy_report(problems, file, "healthcheck.waitFor", "expected a whole number of seconds >= 0")
        wait = nil
      end
      if command then
        app.healthcheck = {
          command = command, start_period = wait or 0, legacy_wait_for = wait or 0,
          retries = 1, interval = 1, timeout = 30,
        }
      end
    end
  end
  return app, problems
end

-- validate_version(v, file) -> the app fields version.json gives, problems
function M.validate_version(v, file)
  local problems, app = {}, {}
  if v == nil then
    legacy_report(problems, file, "", "missing (every app needs a version.json)")
    return app, problems
  end
  if not is_object(v) then
    legacy_report(problems, file, "", "expected a JSON object")
    return app, problems
  end
  app.version = optional_string(problems, file, "imageTag", v.imageTag)
  local sha = optional_string(problems, file, "imageSha", v.imageSha)
  if sha and sha:match("^" .. string.rep("[0-9a-f]", 64) .. "$") then sha = "sha256:" .. sha end
  if sha and sha:match(DIGEST_PATTERN) then app.digest = sha end
  -- The reference the image was built as ("registry/app:tag"): what the Go
  -- tool showed as the app's image. The image itself is the one in skopeo/.
  app.image_name = optional_string(problems, file, "image", v.image)
  app.commit = optional_string(problems, file, "commit", v.commit)
  local built = optional_string(problems, file, "builtAt", v.builtAt)
  if built ~= GO_ZERO_TIME then app.built_at = built end
  optional_string(problems, file, "appName", v.appName)
  return app, problems
end

-- Where a manifest field of a converted app came from.
local LEGACY_SOURCES = {
  entrypoint = { "pc", "entrypoint" }, configs = { "pc", "configs" }, data = { "pc", "data" },
  logs = { "pc", "logsFolder" }, healthcheck = { "pc", "healthcheck" },
  ["healthcheck.command"] = { "pc", "healthcheck.command" },
  ["healthcheck.start_period"] = { "pc", "healthcheck.waitFor" },
  ["healthcheck.legacy_wait_for"] = { "pc", "healthcheck.waitFor" },
  version = { "version", "imageTag" }, commit = { "version", "commit" },
  built_at = { "version", "builtAt" }, ["image.digest"] = { "version", "imageSha" },
  ["image.name"] = { "version", "image" },
  name = { "dir", "" }, image = { "dir", "skopeo" }, ["image.layout"] = { "dir", "skopeo" },
  ["image.ref"] = { "dir", "skopeo" },
}
local RELEASE_SOURCES = {
  ["release.version"] = "releaseMeta.id", ["release.name"] = "releaseMeta.id",
  ["release.meta"] = "releaseMeta", release = "",
}

-- Points a problem of the converted manifest back at the legacy file it came from.
local function legacy_origin(p, segs, files_of)
  if RELEASE_SOURCES[p.path] then
    return { file = "meta.json", path = RELEASE_SOURCES[p.path], message = p.message }
  end
  for i, seg in pairs(segs) do
    if p.path == seg or p.path:sub(1, #seg + 1) == seg .. "." then
      local rest = p.path:sub(#seg + 2)
      local files = files_of[i]
      local field, tail = rest, ""
      local src = LEGACY_SOURCES[field]
      if not src then
        field, tail = rest:match("^([%w_]+)(.*)$")
        src = field and LEGACY_SOURCES[field]
      end
      if files and src then
        local path = src[2] .. (src[2] ~= "" and tail or "")
        return { file = files[src[1]], path = path, message = p.message }
      end
      return { file = files and files.dir, path = rest, message = p.message }
    end
  end
  return p
end

-- The package format versions this reader knows; the Go tool wrote 1 (and
-- never read the field back).
M.LEGACY_FORMATS = { [1] = true }

-- legacy_format(meta, problems) -> meta.json's packageVersion: the integer
-- version of the package format (absent = 1), not a version of the release.
local function legacy_format(meta, problems)
  local v = meta.packageVersion
  if v == nil then return 1 end
  local n = type(v) == "number" and math.tointeger(v)
  if not n or n < 1 then
    legacy_report(problems, "meta.json", "packageVersion", "expected an integer >= 1 (the version of the package "
      .. "format, absent = 1; the release is named by releaseMeta.id), got "
      .. (type(v) == "string" and string.format("%q", v) or type(v) == "table" and "a " .. (is_array(v) and "list" or "object")
        or tostring(v)))
    return nil
  end
  if not M.LEGACY_FORMATS[n] then
    legacy_report(problems, "meta.json", "packageVersion", string.format(
      "package format %d is not one this ctcli reads (it reads format 1, the Go ctcli's)", n))
    return nil
  end
  return n
end

-- runtime_of(meta, present) -> the legacy runtime binaries the package holds.
local function runtime_of(meta, present)
  local runtime = {}
  local function has(path, flag)
    if type(present) == "table" then return present[path] == true end
    if flag ~= nil then return flag == true end
    return true -- the legacy layout always ships both
  end
  if has(LEGACY_RUNC, meta.has_runc) then runtime.runc = LEGACY_RUNC end
  if has(LEGACY_UMOCI, meta.has_umoci) then runtime.umoci = LEGACY_UMOCI end
  return runtime
end

-- from_legacy(meta, apps [, present [, fallback_name]]) -> doc | nil, problems
--   meta: decoded meta.json (+ optional has_runc / has_umoci booleans), or
--   nil when the package has none (the Go tool never read it);
--   apps: array of { name=, package_config=, version=, layout=, hooks= };
--   present: optional set of package paths that exist (decides runtime);
--   fallback_name: the release's name when meta.json gives no
--   releaseMeta.id (the package's file name), default "legacy".
-- A legacy release has no version apart from its id: release.name and
-- release.version are both releaseMeta.id (human output prints it once);
-- its apps are versioned by their imageTag. The other releaseMeta fields
-- are kept as release.meta. Problems carry the legacy file they are about.
function M.from_legacy(meta, apps, present, fallback_name)
  local problems = {}
  if meta == nil then meta = json.object({}) end
  if not is_object(meta) then
    legacy_report(problems, "meta.json", "", "expected a JSON object")
    return nil, problems
  end
  legacy_format(meta, problems)
  local release_meta = meta.releaseMeta
  if release_meta ~= nil and not is_object(release_meta) then
    legacy_report(problems, "meta.json", "releaseMeta", "expected an object")
    release_meta = nil
  end
  local id = release_meta and release_meta.id
  if id == "" then id = nil end
  if id ~= nil and type(id) ~= "string" then
    legacy_report(problems, "meta.json", "releaseMeta.id", "expected a string (the release's name)")
    id = nil
  end
  local name = id or fallback_name or "legacy"
  local doc = {
    manifest_version = M.MANIFEST_VERSION,
    release = { name = name, version = name, meta = release_meta and copy(release_meta) },
    runtime = runtime_of(meta, present),
    apps = json.array({}),
  }
  if not is_array(apps) or length(apps) == 0 then
    legacy_report(problems, "package/apps", "", "no apps in the package")
    return nil, problems
  end
  local files_of = {}
  for i = 1, length(apps) do
    local entry = apps[i]
    if not is_object(entry) or type(entry.name) ~= "string" or entry.name == "" then
      legacy_report(problems, "package/apps", join("", i), "an app entry without a directory name")
    else
      local files = legacy_files(entry.name)
      local from_pc, pc_problems = M.validate_package_config(entry.package_config, files.pc)
      local from_v, v_problems = M.validate_version(entry.version, files.version)
      for _, p in ipairs(pc_problems) do problems[#problems + 1] = p end
      for _, p in ipairs(v_problems) do problems[#problems + 1] = p end
      local layout = type(entry.layout) == "string" and entry.layout or (files.dir .. "/skopeo")
      local app = {
        name = entry.name,
        version = from_v.version or name,
        image = { layout = layout, ref = entry.name, digest = from_v.digest, name = from_v.image_name },
        entrypoint = from_pc.entrypoint, configs = from_pc.configs, data = from_pc.data,
        logs = from_pc.logs, healthcheck = from_pc.healthcheck,
        hooks = type(entry.hooks) == "string" and entry.hooks or nil,
        commit = from_v.commit, built_at = from_v.built_at,
      }
      doc.apps[#doc.apps + 1] = app
      files_of[#doc.apps] = files
    end
  end
  local segs = app_segments(doc.apps)
  for _, p in ipairs(M.validate(doc)) do
    problems[#problems + 1] = legacy_origin(p, segs, files_of)
  end
  if #problems > 0 then return nil, problems end
  return doc
end

return M
