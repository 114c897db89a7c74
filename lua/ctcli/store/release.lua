-- Releases: releases/<id>/ (release.json, apps/<app>/config.json, bin/,
-- hooks/), ids, the current-release symlink and its atomic swap.
local ct = require("ct")
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")
local statefile = require("ctcli.base.statefile")
local clock = require("ctcli.base.clock")

-- The image store, bundles and runc are required by the functions that
-- write releases: reading the current one (status) loads none of them.
local function store() return require("ctcli.store.images") end

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
  local mdoc = { manifest_version = manifest.MANIFEST_VERSION, release = { name = doc.name, version = doc.version },
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
  local problems = manifest.validate(mdoc, "")
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
    -- changing commands adopt it first, see ctcli.adopt).
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

-- list(paths) -> kept releases, newest first (ids sort by time) | nil, msg
-- when one of them cannot be read: nothing may decide over the releases
-- without seeing them all.
function M.list(paths)
  local out = {}
  for _, id in ipairs(ct.fs.dir(paths.releases) or {}) do
    if id ~= "backups" and M.is_id(id) then
      local rel, err = M.load(paths, id)
      if not rel then return nil, err end
      out[#out + 1] = rel
    end
  end
  table.sort(out, function(a, b) return a.id > b.id end)
  return out
end

-- swap(paths, id): points current-release at releases/<id> with one rename.
function M.swap(paths, id)
  local tmp = paths.root .. "/.current-release.new"
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

-- The machine's architecture (uname -m), read once: it picks the seccomp
-- architectures of every bundle.
local machine_name
local function machine()
  if not machine_name then
    local text = ct.fs.read("/proc/sys/kernel/arch")
    if not text then
      local r = ct.proc.run({ "uname", "-m" })
      text = r and r.code == 0 and r.stdout or ""
    end
    machine_name = text:match("^%s*(%S+)") or "x86_64"
  end
  return machine_name
end

-- app_config(paths, app [, idmap]) -> config.json text for app (a
-- release.json app record); idmap defaults to the mapping the app is to run
-- with (the root's range unless it opts out; none before one is allocated).
function M.app_config(paths, app, idmap)
  local info, err = store().image_info(paths, app.name, app.image.digest)
  if not info then return nil, err end
  if idmap == nil then
    local userns = require("ctcli.runtime.userns")
    local conf, cerr = require("ctcli.store.rootconf").load(paths)
    if not conf then return nil, cerr end
    idmap = userns.desired(app, conf, userns.range(paths))
  end
  -- Host paths in the bundle are real paths: runc refuses a rootfs reached
  -- through a symlink, and a root used through a symlink to it must give
  -- the same config.json (an app is unchanged when its config.json is).
  local real = ct.fs.realpath(paths.root)
  local bpaths = paths
  if real and real ~= paths.root then
    bpaths = require("ctcli.store.root").paths(real)
    bpaths.id_base = paths.id_base
  end
  local rootfs = store().rootfs(bpaths, app)
  return require("ctcli.runtime.bundle").config({
    paths = bpaths, app = app, image = info.process,
    rootfs = ct.fs.realpath(rootfs) or rootfs,
    id = require("ctcli.runtime.runc").container_id(paths, app.name),
    resolv_conf = ct.fs.exists("/etc/resolv.conf"),
    machine = machine(),
    idmap = idmap,
  })
end

-- stage(paths, pkg, opts) -> {id=, dir=, release=} built in tmp/ (images must
-- be in the store already). opts: previous (id), source (file name).
function M.stage(paths, pkg, opts)
  local model = pkg.release
  local id = M.new_id(pkg.manifest_text)
  local dir, err = ct.fs.mkdtemp(paths.tmp .. "/release-XXXXXX")
  if not dir then return nil, err end
  local function fail(e) ct.fs.rmtree(dir) return nil, e end
  local rel = {
    id = id, name = model.name, version = model.version, commit = model.commit, time = model.time,
    meta = model.meta, format = pkg.format, created = clock.iso(),
    previous = opts.previous, source = opts.source, signer = opts.signer,
    apps = json.array(), order = model.order, levels = model.levels,
    runtime = { runc = "host", umoci = "host" },
  }
  ct.fs.mkdir(dir .. "/bin", 493)
  for _, tool in ipairs({ "runc", "umoci" }) do
    local src = model.runtime and model.runtime[tool]
    if src then
      local ok, cerr = ct.fs.copyfile(pkg.dir .. "/" .. src, dir .. "/bin/" .. tool, 493)
      if not ok then return fail(cerr) end
      rel.runtime[tool] = "release"
    end
  end
  ct.fs.mkdir(dir .. "/apps", 493)
  ct.fs.mkdir(dir .. "/hooks", 493)
  -- A stage builds in a releases/ of its own (paths.releases is its work
  -- dir): the release it is staged against is in the root's (paths.base_releases).
  local prev = opts.previous and (M.load(paths, opts.previous) or
    (paths.base_releases and M.load(require("ctcli.store.root").paths_in(paths, paths.base_releases), opts.previous)))
  local uc
  for _, app in ipairs(model.apps) do
    local rec = M.app_record(app)
    if app.hooks then
      local ok, cerr = ct.fs.copyfile(pkg.dir .. "/" .. app.hooks, dir .. "/hooks/" .. app.name .. ".lua", 420)
      if not ok then return fail(cerr) end
      rec.hooks = "hooks/" .. app.name .. ".lua"
    end
    local cfg, cerr
    local old = prev and prev.by_name[app.name]
    local list = store().layers_of(paths, app.name, app.image.digest)
    if list then
      -- An unchanged app (same image, same config.json) keeps its upper;
      -- any other gets a fresh one, named by this release.
      if old and old.upper and old.image.digest == app.image.digest then
        rec.upper = old.upper
        cfg = M.app_config(paths, rec)
        if not cfg or cfg ~= ct.fs.read(M.bundle_dir(prev, app.name) .. "/config.json") then cfg = nil end
      end
      if not cfg then
        if not uc then
          local uerr
          uc, uerr = require("ctcli.runtime.userns").context(paths)
          if not uc then return fail(uerr) end
        end
        rec.upper = id
        local ok, uerr = store().ensure_upper(paths, rec, id, require("ctcli.runtime.userns").desired(rec, uc.conf, uc.range))
        if not ok then return fail(uerr) end
      end
    end
    if not cfg then cfg, cerr = M.app_config(paths, rec) end
    if not cfg then return fail(cerr) end
    ct.fs.mkdir(dir .. "/apps/" .. app.name, 493)
    local ok, werr = ct.fs.write_atomic(dir .. "/apps/" .. app.name .. "/config.json", cfg)
    if not ok then return fail(werr) end
    rel.apps[#rel.apps + 1] = rec
  end
  local ok, werr = ct.fs.write_atomic(dir .. "/release.json", json.encode(rel, true) .. "\n")
  if not ok then return fail(werr) end
  return { id = id, dir = dir, release = rel }
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

-- prune_uppers(paths, list, removed): the uppers no kept (nor staged)
-- release names go: those of the releases pruned, of a release a failed
-- command removed, the spare of a killed reset. A mounted one stays.
local function prune_uppers(paths, list, removed)
  local gone = {}
  for _, id in ipairs(removed) do gone[id] = true end
  local used = {}
  for _, rel in ipairs(list) do
    if not gone[rel.id] then
      for _, app in ipairs(rel.apps) do if app.upper then used[app.name .. "/" .. app.upper] = true end end
    end
  end
  local layers = require("ctcli.store.layers")
  for _, name in ipairs(ct.fs.dir(layers.uppers_root(paths)) or {}) do
    for _, id in ipairs(layers.uppers(paths, name)) do
      local dir = layers.upper_dir(paths, name, id)
      if not used[name .. "/" .. id] and not ct.fs.exists(paths.releases .. "/staged/" .. id)
          and not ct.fs.mounted(dir .. "/merged") then
        ct.fs.rmtree(dir)
      end
    end
    ct.fs.rmdir(layers.uppers_root(paths) .. "/" .. name)
  end
end

-- prune(paths, keep) -> removed release ids, freed images, store | nil, msg:
-- keeps the newest `keep` releases (and always the current one), then the
-- store's images, layers and blobs nothing refers to go (store: storegc's
-- freed, or {error=} when it could not tell and removed nothing).
function M.prune(paths, keep)
  -- Every release and the current pointer must read: an unreadable one
  -- could be the one running, and its images would look unused.
  local list, lerr = M.list(paths)
  if not list then return nil, lerr end
  local cur, cerr = M.current(paths)
  if cerr then return nil, cerr end
  local cur_id = cur and cur.id
  local removed = {}
  local users = {}
  local kept = 0
  for _, rel in ipairs(list) do
    if rel.id == cur_id or kept < keep then
      kept = kept + 1
      for _, app in ipairs(rel.apps) do users[store().key(app.name, app.image.digest)] = true end
    elseif ct.fs.rmtree(rel.dir) then
      removed[#removed + 1] = rel.id
    else
      -- Still there (in part): its images stay.
      for _, app in ipairs(rel.apps) do users[store().key(app.name, app.image.digest)] = true end
    end
  end
  -- A staged release (or a stage under way) keeps its images.
  for key in pairs(require("ctcli.services.staged").image_keys(paths)) do users[key] = true end
  prune_uppers(paths, list, removed)
  -- The store keeps what a staged release or a backup record names too
  -- (ctcli.storegc); what it cannot tell (a record that does not read) stays.
  local gc, gerr = require("ctcli.store.gc").collect(paths, users)
  if not gc then return removed, {}, { error = gerr, images = {}, layers = {}, blobs = {}, bytes = 0 } end
  return removed, gc.images, gc
end

-- bundle_dir(rel, app_name)
function M.bundle_dir(rel, name)
  return rel.dir .. "/apps/" .. name
end

-- tools(rel) -> the runc/umoci a release uses.
function M.tools(rel)
  return require("ctcli.runtime.tools").for_release(rel and rel.dir)
end

return M
