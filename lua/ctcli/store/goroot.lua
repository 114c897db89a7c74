-- The Go ctcli's release directory (current-release/ of a root it made, or
-- of one of its backups): read as a release, and turned into this ctcli's
-- layout (releases/<id>/ + images/<app>@<digest>/) by moving each rootfs,
-- never copying it. Facts of its format: docs/migrating.md.
local ct = require("ct")
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")
local rootmod = require("ctcli.base.root")
local idmap = require("ctcli.store.idmap")
local clock = require("ctcli.base.clock")

local M = {}

M.FORMAT = "go-ctcli"

-- present(paths) -> true when current-release is the Go tool's directory.
function M.present(paths)
  local st = ct.fs.lstat(paths.current)
  return st ~= nil and st.type == "dir"
end

local function read_json(file)
  local text = ct.fs.read(file)
  if not text then return nil, file .. ": missing or unreadable" end
  local v, err = json.decode(text)
  if type(v) ~= "table" then return nil, file .. ": not a JSON object" .. (err and (" (" .. err .. ")") or "") end
  return v, nil, text
end

-- epoch(text) -> seconds since the epoch of an RFC 3339 time as Go writes
-- it ("2006-01-02T15:04:05.999999999Z07:00"), or nil.
function M.epoch(text)
  local t = clock.epoch(text)
  return t and math.floor(t)
end

local iso = clock.iso

-- The digest an app's image is stored under: version.json's imageSha (the
-- image the Go tool unpacked), else one made from the app's own files, so
-- the same app always lands in the same place.
local DIGEST = "^sha256:" .. string.rep("[0-9a-f]", 64) .. "$"
local function digest_of(version, texts)
  local sha = type(version) == "table" and version.imageSha
  if type(sha) == "string" then
    if sha:match("^" .. string.rep("[0-9a-f]", 64) .. "$") then sha = "sha256:" .. sha end
    if sha:match(DIGEST) then return sha end
  end
  return "sha256:" .. ct.hash.sha256(table.concat(texts, "\n"))
end

-- read(dir) -> gorel | false (nothing installed: Go's init leaves
-- current-release/ empty) | nil, msg.
-- gorel = {dir=, info=, id=, created=, model= (the release model, as a
-- package's), apps = name -> {dir=, config= (its runc config.json), digest=}}
function M.read(dir)
  local names = {}
  for _, n in ipairs(ct.fs.dir(dir .. "/apps") or {}) do
    if ct.fs.exists(dir .. "/apps/" .. n .. "/config.json") then names[#names + 1] = n end
  end
  table.sort(names)
  local info, ierr, info_text
  if ct.fs.lstat(dir .. "/release-info.json") then
    info, ierr, info_text = read_json(dir .. "/release-info.json")
    if not info then return nil, ierr end
  elseif #names == 0 then
    return false
  else
    -- The Go tool writes it last: an install it did not finish.
    return nil, dir .. "/release-info.json: missing (the Go ctcli did not finish installing this release)"
  end
  if #names == 0 then return nil, dir .. "/apps: no app (each needs its config.json)" end
  local entries, apps = {}, {}
  for _, n in ipairs(names) do
    local adir = dir .. "/apps/" .. n
    local pc, perr, pc_text = read_json(adir .. "/package-config.json")
    if not pc then return nil, perr end
    local version, verr, v_text = read_json(adir .. "/version.json")
    if not version then return nil, verr end
    local config, cerr, c_text = read_json(adir .. "/config.json")
    if not config then return nil, cerr end
    local digest = digest_of(version, { n, pc_text, v_text, c_text })
    local v = {}
    for k, x in pairs(version) do v[k] = x end
    v.imageSha = digest
    entries[#entries + 1] = { name = n, package_config = pc, version = v, layout = "apps/" .. n .. "/rootfs" }
    apps[n] = { dir = adir, config = config, digest = digest, package_config = pc, version = version }
  end
  local doc, problems = manifest.from_legacy({ packageVersion = 1, releaseMeta = info }, entries,
    { ["package/runc.amd64"] = ct.fs.exists(dir .. "/runc.amd64") })
  if not doc then
    return nil, dir .. ": " .. manifest.format_problems(problems, "release-info.json")[1]
  end
  local model, nproblems = manifest.normalize(doc)
  if not model then return nil, dir .. ": " .. manifest.format_problems(nproblems)[1] end
  for _, app in ipairs(model.apps) do app.image.digest = apps[app.name].digest end
  local t = M.epoch(info.createdAt) or (ct.fs.stat(dir .. "/release-info.json") or {}).mtime or 0
  return {
    dir = dir, info = info, model = model, apps = apps, created = iso(t),
    id = os.date("!%Y%m%dT%H%M%SZ", t) .. "-" .. ct.hash.sha256(info_text):sub(1, 8),
  }
end

-- record(gorel, release, opts) -> the release.json document of gorel
-- (release = ctcli.store.release, for its app records); opts.source says where
-- it came from. The Go tool's own files are kept in its metadata.
function M.record(gorel, release, opts)
  local m = gorel.model
  local go = { release_info = gorel.info, apps = {} }
  for name, a in pairs(gorel.apps) do go.apps[name] = { package_config = a.package_config, version = a.version } end
  local rel = {
    id = gorel.id, name = m.name, version = m.version, meta = { go = go }, format = M.FORMAT,
    created = gorel.created, source = opts.source, apps = json.array(), order = m.order, levels = m.levels,
    runtime = { runc = "host", umoci = "host" },
  }
  for _, app in ipairs(m.apps) do rel.apps[#rel.apps + 1] = release.app_record(app) end
  if ct.fs.exists(gorel.dir .. "/runc.amd64") then rel.runtime.runc = "release" end
  return rel
end

-- view(paths, gorel, release) -> a release table over the Go root as it
-- is (its bundles in current-release/apps/), for the reading commands.
function M.view(gorel, release)
  local rel = M.record(gorel, release, { source = "the Go ctcli (not adopted yet)" })
  rel.dir = gorel.dir
  rel.go = true
  rel.by_name = {}
  for _, a in ipairs(rel.apps) do rel.by_name[a.name] = a end
  return rel
end

-- write_release(gorel, out, rel) -> true | nil, msg: the release directory
-- at out (release.json, apps/<app>/, bin/runc when the Go release had one);
-- the bundles are written once the images are in the store.
function M.write_release(gorel, out, rel)
  local ok, err = ct.fs.mkdir(out .. "/apps", 493, true)
  if not ok then return nil, err end
  for _, a in ipairs(rel.apps) do
    ok, err = ct.fs.mkdir(out .. "/apps/" .. a.name, 493, true)
    if not ok then return nil, err end
  end
  if rel.runtime.runc == "release" and not ct.fs.exists(out .. "/bin/runc") then
    ok, err = ct.fs.mkdir(out .. "/bin", 493, true)
    if ok then ok, err = ct.fs.copyfile(gorel.dir .. "/runc.amd64", out .. "/bin/runc", 493) end
    if not ok then return nil, err end
  end
  return ct.fs.write_atomic(out .. "/release.json", json.encode(rel, true) .. "\n")
end

-- What the image says about its process: the Go tool's config.json, where
-- umoci wrote the image's env, cwd and user (and the Go tool the argv).
local function image_doc(name, a)
  local p = type(a.config.process) == "table" and a.config.process or {}
  local user = type(p.user) == "table" and p.user or {}
  return {
    app = name, digest = a.digest, devices_removed = 0, adopted_from = M.FORMAT,
    process = {
      args = p.args or json.array(), env = p.env or json.array(), cwd = p.cwd or "/",
      user = { uid = math.tointeger(user.uid) or 0, gid = math.tointeger(user.gid) or 0 },
    },
  }
end

-- place_image(images, gorel, name) -> key | nil, msg: the app's rootfs
-- moved (one rename) into images/<app>@<digest>/, owned as the Go tool ran
-- it (idmap "go"). Done again after a crash, it finishes the move; an
-- image already in the store (another release brought it) stays.
function M.place_image(images, gorel, name)
  local a = gorel.apps[name]
  local key = name .. "@" .. a.digest
  local final = images .. "/" .. key
  local src = a.dir .. "/rootfs"
  if ct.fs.exists(final .. "/rootfs") and ct.fs.exists(final .. "/image.json") then return key end
  if not ct.fs.lstat(src) then return nil, src .. ": missing (the app's image)" end
  local ok, err = ct.fs.mkdir(final, rootmod.MODES.image_dir, true)
  if ok then ok, err = ct.fs.write_atomic(final .. "/idmap", idmap.image_idmap_text(idmap.GO), 420) end
  if ok then ok, err = ct.fs.write_atomic(final .. "/image.json", json.encode(image_doc(name, a), true), 420) end
  if ok then ok, err = ct.fs.rename(src, final .. "/rootfs") end
  if not ok then return nil, "cannot move the image of " .. name .. ": " .. tostring(err) end
  return key
end

---------------------------------------------------------------------------
-- The Go tool's backups: releases/<UTC 2006-01-02_15-04-05>/backup-info.json
-- ({uid, backupDate, releaseInfo}) beside <uid>.tar.gz (current-release/,
-- data/ unless --ignore-data, config/).

-- record_of(file) -> the backup-info.json beside a Go backup archive, or nil.
function M.record_of(file)
  local dir = file:match("^(.*)/[^/]+$") or "."
  local text = ct.fs.read(dir .. "/backup-info.json")
  local info = text and json.decode(text)
  if type(info) ~= "table" then return nil end
  return info
end

-- has_data(file) -> true | false | nil, msg: whether the archive holds
-- data/. Its members come in the order the Go tool gave tar (current-release,
-- data, config), so the listing stops at the first one after the release.
function M.has_data(file)
  local found = false
  local list, err = ct.archive.list(file, { stop = function(e)
    local top = e.name:gsub("^%./", ""):match("^([^/]+)")
    if top == "data" then found = true end
    return top == "data" or top == "config"
  end })
  if not list then return nil, err end
  return found
end

-- summary(file [, info]) -> what list-releases and rollback show of a Go
-- backup: {format=, release= (the Go release id), created=, apps=}; data
-- is left out (nil) unless opts.data: it takes reading the archive.
function M.summary(file, info, opts)
  info = info or M.record_of(file) or {}
  local ri = type(info.releaseInfo) == "table" and info.releaseInfo or {}
  local t = M.epoch(info.backupDate)
  local apps = {}
  for _, v in ipairs(type(ri.appVersions) == "table" and ri.appVersions or {}) do
    if type(v) == "table" and type(v.appName) == "string" then
      apps[v.appName] = { version = v.imageTag, digest = v.imageSha, image = v.image }
    end
  end
  local data
  if opts and opts.data then data = M.has_data(file) end
  return {
    format = M.FORMAT, path = file, release = type(ri.id) == "string" and ri.id or nil,
    name = type(ri.id) == "string" and ri.id or nil,
    created = t and iso(t) or (file:match("/(%d%d%d%d%-%d%d%-%d%d_%d%d%-%d%d%-%d%d)/") or "?"),
    data = data, apps = apps, uid = info.uid,
  }
end

-- convert_backup(dir, file) -> true | nil, msg: a Go backup extracted into
-- dir becomes what a backup of this ctcli extracts to (backup-info.json,
-- current-release/ as a release, images/ holding each rootfs, moved),
-- so the restore that follows checks and places it like any other.
function M.convert_backup(dir, file)
  local go_dir = dir .. "/go-release"
  local ok, err = ct.fs.rename(dir .. "/current-release", go_dir)
  if not ok then return nil, file .. ": no current-release/ in the archive (" .. tostring(err) .. ")" end
  local gorel, gerr = M.read(go_dir)
  if gorel == false then return nil, file .. ": the backed-up release holds no app" end
  if not gorel then return nil, file .. ": " .. gerr end
  ok, err = ct.fs.mkdir(dir .. "/images", 493)
  if not ok then return nil, err end
  for _, name in ipairs(gorel.model.order) do
    local key, perr = M.place_image(dir .. "/images", gorel, name)
    if not key then return nil, file .. ": " .. perr end
  end
  local release = require("ctcli.store.release")
  local rel = M.record(gorel, release, { source = "restored from the Go ctcli's backup " .. file:match("[^/]+$") })
  ok, err = M.write_release(gorel, dir .. "/current-release", rel)
  if not ok then return nil, err end
  ok, err = ct.fs.rmtree(go_dir)
  if not ok then return nil, err end
  local record = M.record_of(file) or {}
  local t = M.epoch(record.backupDate)
  local info = {
    format = require("ctcli.store.backup").FORMAT, release = gorel.id, name = rel.name, version = rel.version,
    created = t and iso(t) or gorel.created, data = ct.fs.lstat(dir .. "/data") ~= nil,
    reason = "backup", apps = {},
  }
  for _, a in ipairs(rel.apps) do
    info.apps[a.name] = { version = a.version, digest = a.image.digest, idmap = "go" }
  end
  return ct.fs.write_atomic(dir .. "/backup-info.json", json.encode(info, true) .. "\n")
end

return M
