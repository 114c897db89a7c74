-- Building and pruning releases: a release dir built in tmp/ from a
-- package whose images are in the store (each app's config.json, its
-- writable layer kept or made fresh), and the releases, writable layers
-- and store entries nothing keeps any more.
local ct = require("ct")
local json = require("ctcli.base.json")
local clock = require("ctcli.base.clock")
local bundle = require("ctcli.runtime.bundle")
local release = require("ctcli.store.release")
local scratch = require("ctcli.store.scratch")
local store = require("ctcli.store.images")

local M = {}

-- stage(paths, pkg, opts) -> {id=, dir=, release=} built in tmp/ (images must
-- be in the store already). opts: previous (id), source (file name).
function M.stage(paths, pkg, opts)
  local model = pkg.release
  local id = release.new_id(pkg.manifest_text)
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
  local prev = opts.previous and (release.load(paths, opts.previous) or
    (paths.base_releases and release.load(require("ctcli.base.root").paths_in(paths, paths.base_releases), opts.previous)))
  local uc
  for _, app in ipairs(model.apps) do
    local rec = release.app_record(app)
    if app.hooks then
      local ok, cerr = ct.fs.copyfile(pkg.dir .. "/" .. app.hooks, dir .. "/hooks/" .. app.name .. ".lua", 420)
      if not ok then return fail(cerr) end
      rec.hooks = "hooks/" .. app.name .. ".lua"
    end
    local cfg, cerr
    local old = prev and prev.by_name[app.name]
    local list = store.layers_of(paths, app.name, app.image.digest)
    if list then
      -- An unchanged app (same image, same config.json) keeps its upper;
      -- any other gets a fresh one, named by this release.
      if old and old.upper and old.image.digest == app.image.digest then
        rec.upper = old.upper
        cfg = bundle.app_config(paths, rec)
        if not cfg or cfg ~= ct.fs.read(release.bundle_dir(prev, app.name) .. "/config.json") then cfg = nil end
      end
      if not cfg then
        if not uc then
          local uerr
          uc, uerr = require("ctcli.runtime.userns").context(paths)
          if not uc then return fail(uerr) end
        end
        rec.upper = id
        local ok, uerr = store.ensure_upper(paths, rec, id, require("ctcli.runtime.userns").desired(rec, uc.conf, uc.range))
        if not ok then return fail(uerr) end
      end
    end
    if not cfg then cfg, cerr = bundle.app_config(paths, rec) end
    if not cfg then return fail(cerr) end
    ct.fs.mkdir(dir .. "/apps/" .. app.name, 493)
    local ok, werr = scratch.write(dir .. "/apps/" .. app.name .. "/config.json", cfg)
    if not ok then return fail(werr) end
    rel.apps[#rel.apps + 1] = rec
  end
  -- Written unsynced, flushed once: place renames the whole directory in.
  local ok, werr = scratch.write(dir .. "/release.json", json.encode(rel, true) .. "\n")
  if ok then ok, werr = scratch.flush(paths) end
  if not ok then return fail(werr) end
  return { id = id, dir = dir, release = rel }
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
  local list, lerr = release.list(paths)
  if not list then return nil, lerr end
  local cur, cerr = release.current(paths)
  if cerr then return nil, cerr end
  local cur_id = cur and cur.id
  local removed = {}
  local users = {}
  local kept = 0
  for _, rel in ipairs(list) do
    if rel.id == cur_id or kept < keep then
      kept = kept + 1
      for _, app in ipairs(rel.apps) do users[store.key(app.name, app.image.digest)] = true end
    elseif ct.fs.rmtree(rel.dir) then
      removed[#removed + 1] = rel.id
    else
      -- Still there (in part): its images stay.
      for _, app in ipairs(rel.apps) do users[store.key(app.name, app.image.digest)] = true end
    end
  end
  -- A staged release (or a stage under way) keeps its images.
  for key in pairs(require("ctcli.services.staged").image_keys(paths)) do users[key] = true end
  prune_uppers(paths, list, removed)
  -- The store keeps what a staged release or a backup record names too
  -- (ctcli.store.gc); what it cannot tell (a record that does not read) stays.
  local gc, gerr = require("ctcli.store.gc").collect(paths, users)
  if not gc then return removed, {}, { error = gerr, images = {}, layers = {}, blobs = {}, bytes = 0 } end
  return removed, gc.images, gc
end

return M
