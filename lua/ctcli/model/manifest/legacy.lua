-- Legacy packages (DESIGN §4): meta.json + package/apps/<app>/{package-config.json,
-- version.json, skopeo/} read into a release manifest, each problem pointed
-- back at the legacy file and field it came from. The field mapping is
-- DESIGN §4's table; the schema has no part in it.
local json = require("ctcli.base.json")
local rules = require("ctcli.model.manifest.rules")
local validate = require("ctcli.model.manifest.validate")
local V = require("ctcli.model.manifest.values")

local is_object, is_array, length, join = V.is_object, V.is_array, V.length, V.join
local copy, array_copy = V.copy, V.array_copy

local M = {}

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
      if wait ~= nil and not (V.is_integer(wait) and wait >= 0) then
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
  if sha and sha:match(rules.DIGEST_PATTERN) then app.digest = sha end
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
    manifest_version = rules.MANIFEST_VERSION,
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
  local segs = validate.app_segments(doc.apps)
  for _, p in ipairs(validate.validate(doc)) do
    problems[#problems + 1] = legacy_origin(p, segs, files_of)
  end
  if #problems > 0 then return nil, problems end
  return doc
end

return M
