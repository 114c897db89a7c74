-- Releases: releases/<id>/ (release.json, apps/<app>/config.json, bin/,
-- hooks/), ids, the current-release symlink and its atomic swap.
local ct = require("ct")
local json = require("ctcli.base.json")
-- the validator alone (not the normaliser nor the legacy reader): status
-- reads the current release on every run
local validator = require("ctcli.model.manifest.validate")
local rules = require("ctcli.model.manifest.rules")
local statefile = require("ctcli.base.statefile")

local M = {}

-- new_id(manifest_text) -> "<UTC yyyymmddThhmmssZ>-<8 hex of the manifest's sha256>"
function M.new_id(manifest_text)
  return os.date("!%Y%m%dT%H%M%SZ") .. "-" .. ct.hash.sha256(manifest_text):sub(1, 8)
end

function M.dir(paths, id)
  return paths.releases .. "/" .. id
end

-- The shape of release.json as the code uses it; the app records are
-- checked by the manifest's validator as well (validate below).
local APP_SHAPE = {
  object = {
    name = "string", version = "string", hooks = "string", upper = "string",
    image = { object = { digest = "string", ref = "string", config_digest = "string", name = "string" },
      required = { "digest" } },
  },
  required = { "name", "image" },
}
local SHAPE = {
  object = {
    id = "string", name = "string", version = "string", previous = "string", created = "string",
    source = "string", signer = "any", meta = "any", format = "any",
    apps = { array = APP_SHAPE }, order = { array = "string" }, levels = { array = { array = "string" } },
    runtime = { object = { runc = "string", umoci = "string" } },
  },
  required = { "id", "apps", "order" },
}

-- validate(doc, id) -> nil | what is wrong with a release.json (kept as releases/<id>/).
function M.validate(doc, id)
  local what = statefile.check(doc, SHAPE)
  if what then return what end
  if id and doc.id ~= id then return "id: " .. json.encode(doc.id) .. ", the directory says " .. id end
  -- The app records pass the manifest validator, as a package's do.
  local mdoc = { manifest_version = rules.MANIFEST_VERSION, release = { name = doc.name, version = doc.version },
    apps = json.array() }
  for i, a in ipairs(doc.apps) do
    local copy = {}
    for k, v in pairs(a) do copy[k] = v end
    -- The layer store's name of its writable layer: a release id (a path part).
    if a.upper ~= nil and not M.is_id(a.upper) then return "apps[" .. i .. "].upper: not a release id" end
    copy.upper = nil
    copy.image = { layout = "images", ref = a.image.ref, digest = a.image.digest, name = a.image.name }
    mdoc.apps[i] = copy
  end
  local problems = validator.validate(mdoc, "")
  if #problems > 0 then
    local p = problems[1]
    return (p.path ~= "" and (p.path .. ": ") or "") .. p.message
  end
  local names = {}
  for _, a in ipairs(doc.apps) do names[a.name] = true end
  for i, n in ipairs(doc.order) do
    if not names[n] then return "order[" .. i .. "]: " .. json.encode(n) .. " is not an app of the release" end
  end
  for i, level in ipairs(doc.levels or {}) do
    for k, n in ipairs(level) do
      if not names[n] then
        return string.format("levels[%d][%d]: %s is not an app of the release", i, k, json.encode(n))
      end
    end
  end
  return nil
end

local function is_current(paths, id)
  local t = ct.fs.readlink(paths.current)
  return t ~= nil and t:match("([^/]+)$") == id
end

-- hint(paths, id) -> how to repair a broken releases/<id>/release.json.
function M.hint(paths, id)
  local from = "put release.json back from a backup of " .. id ..
    " (an archive in releases/backups/ holds it as current-release/release.json)"
  if is_current(paths, id) then
    return from .. "; it is the current release, so nothing changes the root until then"
  end
  return from .. ", or remove releases/" .. id .. " by hand; nothing changes the root until then"
end

-- load(paths, id) -> release table (with .dir) | nil, msg (one line naming
-- the file, what is wrong and how to repair it).
function M.load(paths, id)
  local dir = M.dir(paths, id)
  local file = dir .. "/release.json"
  local rel, err = statefile.read(paths, file, function(doc) return M.validate(doc, id) end, M.hint(paths, id))
  if rel == false then
    if not ct.fs.lstat(dir) then return nil, "release " .. id .. " does not exist" end
    return nil, statefile.problem(paths, file, "missing", M.hint(paths, id))
  end
  if not rel then return nil, err end
  rel.dir = dir
  rel.by_name = {}
  for _, app in ipairs(rel.apps) do rel.by_name[app.name] = app end
  return rel
end

local POINTER_HINT = "point it at a kept release: 'ln -sfn releases/ID current-release' in the root" ..
  " (ids as in releases/)"

-- current(paths) -> release | nil (no release) | nil, msg
function M.current(paths)
  local st = ct.fs.lstat(paths.current)
  if not st then return nil end
  if st.type == "dir" then
    -- A root the Go ctcli made, not adopted yet: read as it is (the
    -- changing commands adopt it first, see ctcli.services.adopt).
    local goroot = require("ctcli.store.goroot")
    local gorel, gerr = goroot.read(paths.current)
    if not gorel then return nil, gerr end
    return goroot.view(gorel, M)
  end
  local target = ct.fs.readlink(paths.current)
  if not target then
    return nil, statefile.problem(paths, paths.current, "not a symlink to a release", POINTER_HINT)
  end
  local id = target:match("^releases/([^/]+)$")
  if not id or not M.is_id(id) then
    return nil, statefile.problem(paths, paths.current, "points at " .. target .. ", not at releases/<id>", POINTER_HINT)
  end
  if not ct.fs.lstat(M.dir(paths, id)) then
    return nil, statefile.problem(paths, paths.current, "points at " .. target .. ", which does not exist", POINTER_HINT)
  end
  return M.load(paths, id)
end

function M.is_id(s)
  return s:match("^%d+T%d+Z%-%x+$") ~= nil
end

-- list(paths) -> kept releases, newest first | nil, msg when one of them
-- cannot be read: nothing may decide over the releases without seeing them
-- all. Ids sort by their second; within one second (an install and an
-- upgrade can share it) a release made from another (its `previous`) is
-- the newer, so prune never keeps the older for the newer.
function M.list(paths)
  local out, by_id = {}, {}
  for _, id in ipairs(ct.fs.dir(paths.releases) or {}) do
    if id ~= "backups" and M.is_id(id) then
      local rel, err = M.load(paths, id)
      if not rel then return nil, err end
      out[#out + 1] = rel
      by_id[id] = rel
    end
  end
  local depth = {}
  for _, rel in ipairs(out) do
    local n, r, seen = 0, rel, {}
    while r.previous and by_id[r.previous] and not seen[r.previous] do
      seen[r.previous] = true
      n, r = n + 1, by_id[r.previous]
    end
    depth[rel.id] = n
  end
  table.sort(out, function(a, b)
    local sa, sb = a.id:match("^%d+T%d+Z"), b.id:match("^%d+T%d+Z")
    if sa ~= sb then return sa > sb end
    if depth[a.id] ~= depth[b.id] then return depth[a.id] > depth[b.id] end
    return a.id > b.id
  end)
  return out
end

-- swap_temp(paths) -> the link a swap makes before its rename (recovery
-- removes one a killed swap left).
function M.swap_temp(paths)
  return paths.root .. "/.current-release.new"
end

-- swap(paths, id): points current-release at releases/<id> with one rename.
function M.swap(paths, id)
  local tmp = M.swap_temp(paths)
  ct.fs.unlink(tmp)
  local ok, err = ct.fs.symlink("releases/" .. id, tmp)
  if not ok then return nil, err end
  ok, err = ct.fs.rename(tmp, paths.current)
  if not ok then ct.fs.unlink(tmp) return nil, err end
  return ct.fs.fsync(paths.root)
end

-- The fields of an app kept in release.json.
local APP_FIELDS = {
  "name", "version", "entrypoint", "env", "workdir", "configs", "data", "logs", "depends_on",
  "healthcheck", "stop_signal", "stop_timeout", "hooks", "hook_timeout", "migrations",
  "network", "resources", "read_only_rootfs", "commit", "built_at", "user_namespace", "restart",
  "journald",
}

function M.app_record(app)
  local r = {}
  for _, k in ipairs(APP_FIELDS) do r[k] = app[k] end
  r.image = { ref = app.image.ref, digest = app.image.digest, config_digest = app.image.config_digest,
    name = app.image.name }
  return r
end

-- place(paths, staged) -> moves a staged release into releases/<id>.
function M.place(paths, staged)
  local final = M.dir(paths, staged.id)
  if ct.fs.exists(final) then
    return nil, "release " .. staged.id .. " already exists"
  end
  local ok, err = ct.fs.rename(staged.dir, final)
  if not ok then return nil, err end
  staged.dir = final
  return ct.fs.fsync(paths.releases)
end

-- bundle_dir(rel, app_name)
function M.bundle_dir(rel, name)
  return rel.dir .. "/apps/" .. name
end

return M
