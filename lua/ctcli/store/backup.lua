-- Backups: one self-contained archive of the current release (with each
-- app's image as its blobs and the app's writable layer), config/ and, unless left out, data/ (or only some apps'
-- configs and data, for an upgrade), plus its metadata, under
-- releases/backups/. A running app is paused only while its own config
-- and data are read, so they are consistent; the journal names it so a
-- killed backup never leaves it frozen.
local ct = require("ct")
local appfs = require("ctcli.runtime.appfs")
local history = require("ctcli.store.history")
local json = require("ctcli.base.json")
local report = require("ctcli.base.report")
local layers = require("ctcli.store.layers")
local apps = require("ctcli.services.apps")
local manifest = require("ctcli.model.manifest")
local statefile = require("ctcli.base.statefile")
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local runtime = require("ctcli.runtime.runc")
local store = require("ctcli.store.images")
local idmap = require("ctcli.store.idmap")
local clock = require("ctcli.base.clock")

local M = {}
local image_entries, upper_entries, check_store

M.FORMAT = "ctcli-backup/1"

local function stamp()
  return os.date("!%Y%m%dT%H%M%SZ")
end

-- resume(ctx, rel, names): resumes paused containers (also used by recovery).
function M.resume(ctx, rel, names)
  local rt = runtime.rt(ctx.paths, runtools.of(rel))
  for _, n in ipairs(names or {}) do runtime.resume(rt, runtime.container_id(ctx.paths, n)) end
end

-- The names under a root's config/ or data/, sorted (none when it is missing).
local function children(dir)
  local names = ct.fs.dir(dir) or {}
  table.sort(names)
  return names
end

-- entries_bytes(entries) -> what the archive will read: the total a
-- backup's bar fills to (an app writing meanwhile moves it a little; the
-- bar is filled when the archive is done).
local function entries_bytes(entries)
  local total = 0
  for _, e in ipairs(entries) do total = total + (ct.fs.du(e.path) or 0) end
  return total
end

-- app_entries(ctx, rel, entries, kinds, wanted, opts) -> resume: appends
-- each app's own config/data trees (those named in `wanted`, or all) to
-- entries; with data, a running app is paused only while its own trees are
-- read. resume() resumes the one paused when the archive failed midway.
local function app_entries(ctx, rel, entries, kinds, wanted, opts)
  local p = ctx.paths
  local rt = runtime.rt(p, runtools.of(rel), ctx.report)
  local states = (opts.data or opts.uppers) and apps.states(ctx, rel) or {}
  local paused = nil -- the app paused now, if any
  local function resume()
    if not paused then return end
    M.resume(ctx, rel, { paused })
    paused = nil
    if opts.journal then opts.journal:set("paused", json.array()) end
  end
  for _, app in ipairs(rel.apps) do
    if not wanted or wanted[app.name] then
      local own = {}
      for _, kind in ipairs(kinds) do
        local dir = p[kind] .. "/" .. app.name
        if ct.fs.lstat(dir) then own[#own + 1] = { name = kind .. "/" .. app.name, path = dir } end
      end
      -- The app's writable layer is its own too: read while it is paused.
      for _, e in ipairs(opts.uppers and opts.uppers[app.name] or {}) do own[#own + 1] = e end
      local st = states[app.name]
      if #own > 0 and st and st.status == "running" then
        local name = app.name
        own[1].before = function()
          -- Named in the journal first, so a killed backup never leaves it frozen.
          if opts.journal then opts.journal:set("paused", json.array({ name })) end
          paused = name
          local paused_ok, rerr = runtime.pause(rt, runtime.container_id(p, name))
          if paused_ok then return true end
          -- An app that exited meanwhile holds its data still without a pause.
          local now = apps.states(ctx, rel)
          if now and now[name] and now[name].status ~= "running" and now[name].status ~= "paused" then return true end
          return nil, "cannot pause " .. name .. ": " .. tostring(rerr)
        end
        own[#own].after = function() resume() return true end
      end
      for _, e in ipairs(own) do entries[#entries + 1] = e end
    end
  end
  return resume
end

-- image_entries(p, app, key, dir, entries, info, seen) -> true | nil, msg:
-- an image as the store keeps it. A flat image (unpacked before the layer
-- store) is its rootfs; an image of layers is its record, its OCI index and
-- its blobs (manifest, config, layers) as blobs/sha256/<hex>, each blob once
-- in the archive however many images share it; info.images[key] lists them
-- (what prune counts as held by this backup). Never paused for: a blob is
-- never written after it is stored.
function image_entries(p, app, key, dir, entries, info, seen)
  local name = "images/" .. key
  if ct.fs.exists(dir .. "/rootfs") then
    entries[#entries + 1] = { name = name .. "/rootfs", path = dir .. "/rootfs" }
  else
    local list = ct.fs.dir(dir .. "/oci/blobs/sha256")
    if not list then return nil, "the image of " .. app.name .. " has no blobs in " .. dir .. "/oci" end
    table.sort(list)
    local digests = json.array()
    for _, h in ipairs(list) do
      local digest = "sha256:" .. h
      digests[#digests + 1] = digest
      if not seen[h] then
        seen[h] = true
        local from = layers.blob_path(p, digest)
        if not ct.fs.exists(from) then from = dir .. "/oci/blobs/sha256/" .. h end
        entries[#entries + 1] = { name = "blobs/sha256/" .. h, path = from }
      end
    end
    info.images[key] = digests
    for _, f in ipairs({ "index.json", "oci-layout" }) do
      entries[#entries + 1] = { name = name .. "/oci/" .. f, path = dir .. "/oci/" .. f }
    end
  end
  entries[#entries + 1] = { name = name .. "/image.json", path = dir .. "/image.json" }
  if ct.fs.exists(dir .. "/idmap") then entries[#entries + 1] = { name = name .. "/idmap", path = dir .. "/idmap" } end
  return true
end

-- upper_entries(p, app, entries, uppers) -> whether it has one: an app's
-- writable layer: its records now (ctcli writes them, the app cannot), its
-- tree into uppers[app] for app_entries, read while the app is paused.
-- Whiteouts go in as OCI ".wh." entries and opaque dirs as ".wh..wh..opq",
-- so no device node enters the archive (DESIGN "Settled — special files").
-- Without overlayfs the tree is the app's own copy (rootfs/).
function upper_entries(p, app, entries, uppers)
  local udir = layers.upper_dir(p, app.name, app.upper)
  if not ct.fs.exists(udir .. "/upper.json") then return false end -- never made: a restore makes a fresh one
  local name = "uppers/" .. app.name .. "/" .. app.upper
  entries[#entries + 1] = { name = name .. "/upper.json", path = udir .. "/upper.json" }
  if ct.fs.exists(udir .. "/idmap") then entries[#entries + 1] = { name = name .. "/idmap", path = udir .. "/idmap" } end
  local top = layers.top(p, app.name, app.upper)
  uppers[app.name] = { { name = name .. "/" .. top, path = udir .. "/" .. top, whiteouts = "oci" } }
  return true
end

-- create(ctx, rel, opts) -> info (with .archive) | nil, msg
-- opts: data (bool), gzip (bool), journal (for the paused apps), reason,
-- only (app names: the configs and data of these apps alone, as an
-- upgrade's backup holds them; default: all of config/ and data/).
--
-- What costs the apps nothing comes first: the release and the images
-- (their blobs, never written after they are stored; a flat image's rootfs
-- of a root made before the layer store) are archived while every app runs.
-- Then each running app is paused only while its own writable layer (and,
-- with data, its config and data) is read, one app at a time, in release
-- order; an app not named in `only` is never paused, and its writable layer
-- is not in the backup (a restore elsewhere gives it a fresh one).
function M.create(ctx, rel, opts)
  local p = ctx.paths
  local ext = opts.gzip and ".tar.gz" or ".tar.zst"
  -- <backup time>-<reason>-<the release id's hash>: the release id's own
  -- time would repeat a timestamp. Older names (<time>-<release id>) are
  -- still found through their .json record, which names the archive.
  local base = string.format("%s-%s-%s", stamp(), opts.reason or "backup", rel.id:match("%-(%x+)$") or rel.id)
  -- Two backups of one release in one second (an install's zero backup and
  -- a backup right after it) must not share a name: the second would
  -- replace the first.
  local stem, nth = base, 1
  while ct.fs.lstat(p.backups .. "/" .. base .. ext) or ct.fs.lstat(p.backups .. "/" .. base .. ".json") do
    nth = nth + 1
    base = stem .. "-" .. nth
  end
  local archive = p.backups .. "/" .. base .. ext
  local info = {
    format = M.FORMAT, release = rel.id, name = rel.name, version = rel.version,
    created = clock.iso(), data = opts.data and true or false,
    reason = opts.reason or "backup", apps = {},
    archive = base .. ext,
  }
  local wanted
  if opts.only then
    wanted = {}
    info.only = json.array()
    for _, n in ipairs(opts.only) do
      wanted[n] = true
      info.only[#info.only + 1] = n
    end
  end
  local entries = {
    { name = "current-release", path = rel.dir },
  }
  -- Blob digests already archived (an image's blobs are shared), image
  -- keys done, and each app's upper entries (read while it is paused).
  local blobs_seen, images_seen, uppers = {}, {}, {}
  info.images = json.object({})
  info.uppers = json.object({})
  for _, app in ipairs(rel.apps) do
    -- The mapping its config and data are owned in (false: none), so a
    -- restore into another root (another range) can shift them.
    info.apps[app.name] = { version = app.version, digest = app.image.digest,
      idmap = idmap.recorded(p, app.name) }
    local key, dir = store.key(app.name, app.image.digest), store.dir(p, app.name, app.image.digest)
    -- opts.images == false (a staged cutover's backup): the images stay in
    -- the store, which keeps them for the kept release this backup is of.
    if opts.images ~= false and not images_seen[key] then
      images_seen[key] = true
      local ok, ierr = image_entries(p, app, key, dir, entries, info, blobs_seen)
      if not ok then return nil, ierr end
    end
    if app.upper and (not wanted or wanted[app.name]) then
      if upper_entries(p, app, entries, uppers) then info.uppers[app.name] = app.upper end
    end
  end
  if opts.images == false then info.images_in_store = true end
  local info_tmp, terr = ct.fs.mkdtemp(p.tmp .. "/backup-XXXXXX")
  if not info_tmp then return nil, terr end
  ct.fs.write_atomic(info_tmp .. "/backup-info.json", json.encode(info, true) .. "\n")
  table.insert(entries, 1, { name = "backup-info.json", path = info_tmp .. "/backup-info.json" })
  -- The root's history as it stood, for the record: a copy, because a
  -- command refused meanwhile may append to the live file. A restore never
  -- puts it back (the live history goes on, and records the restore).
  if ct.fs.exists(history.path(p)) then
    local copied = ct.fs.copyfile(history.path(p), info_tmp .. "/" .. history.FILE, history.MODE)
    if copied then entries[#entries + 1] = { name = history.FILE, path = info_tmp .. "/" .. history.FILE } end
  end

  -- config/ and data/ themselves (their mode, none of their content), then
  -- each app's own trees as entries of their own.
  local kinds = { "config" }
  if opts.data then kinds[2] = "data" end
  for _, kind in ipairs(kinds) do
    local st = ct.fs.lstat(p[kind])
    ct.fs.mkdir(info_tmp .. "/" .. kind, st and st.type == "dir" and (st.mode & 4095) or 448)
    entries[#entries + 1] = { name = kind, path = info_tmp .. "/" .. kind }
  end
  local in_release = {}
  for _, app in ipairs(rel.apps) do in_release[app.name] = true end
  local resume = app_entries(ctx, rel, entries, kinds, wanted,
    { data = opts.data, journal = opts.journal, uppers = uppers })
  -- What lies in config/ or data/ for no app of the release (an app removed
  -- earlier) runs nowhere: a full backup keeps it, without pausing.
  if not wanted then
    for _, kind in ipairs(kinds) do
      for _, n in ipairs(children(p[kind])) do
        if not in_release[n] then entries[#entries + 1] = { name = kind .. "/" .. n, path = p[kind] .. "/" .. n } end
      end
    end
  end

  if opts.journal then opts.journal:set("archive", archive) end
  local rep = report.of(ctx.report)
  local who = {}
  for _, app in ipairs(rel.apps) do
    if not wanted or wanted[app.name] then who[#who + 1] = app.name end
  end
  local what = (#who > 0 and table.concat(who, ", ") or "no app") .. (opts.data and "" or " (configs only)")
  if (opts.reason or "backup") == "backup" then rep.step("backup %s", what)
  else rep.step("%s: backup %s", opts.reason, what) end
  local bar = rep.bar("backup", entries_bytes(entries))
  local res, err = ct.archive.create(archive, entries, {
    format = opts.gzip and "gzip" or "zstd",
    progress = function(bytes) bar.set(bytes) end,
  })
  if res then bar.done() else bar.stop() end
  -- A failure while an app's trees were read leaves it paused: resume it.
  resume()
  ct.fs.rmtree(info_tmp)
  if not res then return nil, "backup failed: " .. tostring(err) end
  info.bytes = ct.fs.size(archive)
  local ok, werr = ct.fs.write_atomic(p.backups .. "/" .. base .. ".json", json.encode(info, true) .. "\n")
  if not ok then ct.fs.unlink(archive) return nil, werr end
  info.path = archive
  return info
end


-- A version 4 UUID, as the Go tool names its backups; unique is all it
-- must be (the time, the pid and the root make it so).
local function uuid4(seed)
  local h = ct.hash.sha256(table.concat({ tostring(ct.time.now()), tostring(ct.time.monotonic and ct.time.monotonic()),
    tostring(ct.proc.getpid()), seed, tostring({}) }, "|"))
  local v = "89ab"
  local k = (tonumber(h:sub(17, 17), 16) % 4) + 1
  return string.format("%s-%s-4%s-%s%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(14, 16), v:sub(k, k), h:sub(18, 20),
    h:sub(21, 32))
end

-- create_go(ctx, rel, release_info, opts) -> path of the archive | nil, msg:
-- a backup of a Go ctcli root (rel: its view, ctcli.goroot) in the Go tool's
-- own format, which its `rollback` restores: releases/<UTC date>/ holding
-- backup-info.json ({uid, backupDate, releaseInfo}) and <uid>.tar.gz
-- (current-release/, data/, config/). Made in tmp/ and renamed into place
-- whole. Running apps are paused one at a time while their data is read.
function M.create_go(ctx, rel, release_info, opts)
  local p = ctx.paths
  local now = ct.time.now()
  local secs = math.floor(now)
  local name = os.date("!%Y-%m-%d_%H-%M-%S", secs)
  while ct.fs.lstat(p.releases .. "/" .. name) do
    secs = secs + 1
    name = os.date("!%Y-%m-%d_%H-%M-%S", secs)
  end
  local dir, err = ct.fs.mkdtemp(p.tmp .. "/go-backup-XXXXXX")
  if not dir then return nil, err end
  local uid = uuid4(p.root)
  local info = {
    uid = uid,
    backupDate = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(now)) .. string.format(".%09dZ", math.floor((now % 1) * 1e9)),
    releaseInfo = release_info,
  }
  local ok, werr = ct.fs.write_atomic(dir .. "/backup-info.json", json.encode(info, true), 420)
  if not ok then ct.fs.rmtree(dir) return nil, werr end
  local entries = { { name = "current-release", path = rel.dir } }
  local kinds = { "data", "config" }
  for _, kind in ipairs(kinds) do
    if ct.fs.lstat(p[kind]) then
      local st = ct.fs.lstat(p[kind])
      ct.fs.mkdir(dir .. "/" .. kind, st.mode & 4095)
      entries[#entries + 1] = { name = kind, path = dir .. "/" .. kind }
    end
  end
  local resume = app_entries(ctx, rel, entries, kinds, nil, { data = true, journal = opts.journal })
  local archive = dir .. "/" .. uid .. ".tar.gz"
  local rep = report.of(ctx.report)
  rep.step("backup in the Go ctcli's format: current-release, data, config")
  local bar = rep.bar("backup", entries_bytes(entries))
  local res, aerr = ct.archive.create(archive, entries, {
    format = "gzip", progress = function(bytes) bar.set(bytes) end,
  })
  if res then bar.done() else bar.stop() end
  resume()
  for _, kind in ipairs(kinds) do ct.fs.rmdir(dir .. "/" .. kind) end
  if not res then ct.fs.rmtree(dir) return nil, aerr end
  local final = p.releases .. "/" .. name
  ok, werr = ct.fs.rename(dir, final)
  if ok then ok, werr = ct.fs.chmod(final, 493) end
  if not ok then ct.fs.rmtree(dir) return nil, werr end
  ct.fs.fsync(p.releases)
  return final .. "/" .. uid .. ".tar.gz"
end

-- restore_data(ctx, archive, names) -> true | nil, msg: puts the data of
-- the named apps back as the backup has it. Each app's directory is
-- exchanged with the restored copy in one renameat2, so a crash never
-- leaves it missing; a failure part way exchanges the ones done back, so
-- the data is all restored or all as it was (never a mix, never lost).
function M.restore_data(ctx, archive, names)
  local dir, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/restore-XXXXXX")
  if not dir then return nil, err end
  local ok, xerr = ct.archive.extract(archive, dir, { preserve = true, only = { "data" }, special = "skip" })
  if not ok then ct.fs.rmtree(dir) return nil, xerr end
  ct.fs.mkdir(dir .. "/data", 448, true)
  local done = {}
  local function undo(msg)
    for i = #done, 1, -1 do
      local d = done[i]
      local uok, uerr
      if d.had then uok, uerr = ct.fs.exchange(d.live, d.saved) else uok, uerr = ct.fs.rename(d.live, d.saved) end
      if not uok then
        -- What it replaced stays in tmp/ for the operator rather than go.
        return nil, string.format("%s; putting the data of %s back failed (it is in %s): %s",
          msg, d.name, d.saved, tostring(uerr))
      end
    end
    ct.fs.fsync(ctx.paths.data)
    ct.fs.rmtree(dir)
    return nil, msg .. "; the data is as it was"
  end
  for _, name in ipairs(names) do
    local live = appfs.host_paths(ctx.paths, name).data
    local saved = dir .. "/data/" .. name
    if not ct.fs.exists(saved) then ct.fs.mkdir(saved, 448) end
    local rok, rerr
    local had = ct.fs.exists(live)
    if had then
      rok, rerr = ct.fs.exchange(live, saved)
    else
      rok, rerr = ct.fs.rename(saved, live)
    end
    if not rok then return undo("restoring the data of " .. name .. ": " .. tostring(rerr)) end
    done[#done + 1] = { name = name, live = live, saved = saved, had = had }
  end
  ct.fs.fsync(ctx.paths.data)
  ct.fs.rmtree(dir)
  return true
end

-- What a restore trusts. A backup is not signed: it is checked as strictly
-- as its content allows before anything of it leaves tmp/ (check_restore).
M.RELEASE_ID = "^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x%x%x$"
-- name -> the type it must have; nothing else may be at the top.
local TOP = { ["backup-info.json"] = "file", ["current-release"] = "dir", config = "dir", data = "dir", images = "dir",
  [history.FILE] = "file", blobs = "dir", uppers = "dir" }
local RELEASE_TOP = { ["release.json"] = "file", apps = "dir", hooks = "dir", bin = "dir" }
local TYPE_WORD = { file = "a regular file", dir = "a directory" }

local function expect(dir, rel, want)
  local st = ct.fs.lstat(dir .. "/" .. rel)
  if not st then return nil, rel .. ": missing" end
  if st.type ~= want then return nil, rel .. ": expected " .. TYPE_WORD[want] .. ", found a " .. st.type end
  return true
end

-- Only the names of `allowed` (name -> type) under dir/rel, each of its type.
local function only(dir, rel, allowed, what)
  for _, name in ipairs(ct.fs.dir(dir .. "/" .. rel) or {}) do
    local want = allowed(name)
    local path = rel == "" and name or (rel .. "/" .. name)
    if not want then return nil, path .. ": not part of " .. what end
    local ok, err = expect(dir, path, want)
    if not ok then return nil, err end
  end
  return true
end

-- No special file, and no setuid or setgid file outside the image trees
-- (an image needs its own; nothing else may carry one onto the host). An
-- app may have made one in its data: the bit is taken off (in tmp/, which
-- no container sees) rather than the restore refused, so nothing an app
-- plants can block the operator's way back. A setgid directory (group
-- inheritance) is kept.
-- An image's rootfs and an app's writable layer keep their setuid bits; the
-- writable layer of overlayfs holds its whiteouts (character devices 0:0,
-- the only node the extraction of uppers/ makes, from ".wh." entries).
local function image_tree(path)
  return path:match("^images/[^/]+/rootfs$") or path:match("^uppers/[^/]+/[^/]+/rootfs$")
    or path:match("^uppers/[^/]+/[^/]+/upper$")
end

local function walk_special(dir, rel, in_rootfs)
  local in_upper = in_rootfs and (rel .. "/"):match("^uppers/[^/]+/[^/]+/upper/") ~= nil
  for _, name in ipairs(ct.fs.dir(dir .. "/" .. rel) or {}) do
    local path = rel == "" and name or (rel .. "/" .. name)
    local st = ct.fs.lstat(dir .. "/" .. path)
    if not st then return nil, path .. ": cannot be read" end
    if st.type == "char" and in_upper then
      st = { type = "file", mode = 0 }
    elseif st.type ~= "file" and st.type ~= "dir" and st.type ~= "link" then
      return nil, path .. ": a " .. st.type .. " (a backup holds no special files)"
    end
    if not in_rootfs and st.type == "file" and (st.mode & 3072) ~= 0 then
      local ok, err = ct.fs.chmod(dir .. "/" .. path, st.mode & 1023)
      if not ok then return nil, err end
    end
    if st.type == "dir" then
      local ok, err = walk_special(dir, path, in_rootfs or image_tree(path) ~= nil)
      if not ok then return nil, err end
    end
  end
  return true
end

-- check_store(dir, info, by_name) -> true | nil, why: the layer store's
-- part of a backup. blobs/sha256/ holds files named by their digest, each
-- matching it; every image of layers has a blob list (backup-info.json
-- "images") naming blobs the backup holds, which covers its record's
-- manifest, config and layers; uppers/<app>/<id>/ is the writable layer the
-- backed-up release names for that app: upper.json, idmap, and upper/ or
-- (without overlayfs) rootfs/.
function check_store(dir, info, by_name)
  local ok, err = only(dir, "blobs", function(n) return n == "sha256" and "dir" end, "the blobs")
  if not ok then return nil, err end
  local have = {}
  for _, h in ipairs(ct.fs.dir(dir .. "/blobs/sha256") or {}) do
    if not h:match("^%x+$") or #h ~= 64 then return nil, "blobs/sha256/" .. h .. ": not a sha256 digest" end
    ok, err = expect(dir, "blobs/sha256/" .. h, "file")
    if not ok then return nil, err end
    local actual = ct.hash.sha256_file(dir .. "/blobs/sha256/" .. h)
    if actual ~= h then
      return nil, "blobs/sha256/" .. h .. ": does not match its digest (sha256:" .. tostring(actual) .. ")"
    end
    have["sha256:" .. h] = true
  end
  if info.images ~= nil and type(info.images) ~= "table" then
    return nil, "backup-info.json: \"images\" is not an object of blob lists"
  end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    local idir = dir .. "/images/" .. key
    local rec = json.decode(ct.fs.read(idir .. "/image.json") or "")
    if type(rec) ~= "table" then return nil, "images/" .. key .. "/image.json: not a JSON object" end
    if store.layered(rec) and not ct.fs.exists(idir .. "/oci/blobs") then
      local list = info.images and info.images[key]
      if type(list) ~= "table" then return nil, "backup-info.json: no blob list for the image " .. key end
      ok, err = only(dir, "images/" .. key .. "/oci", function(n)
        return (n == "index.json" or n == "oci-layout") and "file"
      end, "an image's index")
      if not ok then return nil, err end
      local listed = {}
      for _, d in ipairs(list) do
        if type(d) ~= "string" or not have[d] then
          return nil, "the backup lacks the blob " .. tostring(d) .. " of the image " .. key
        end
        listed[d] = true
      end
      local needed = { rec.manifest, rec.config }
      for _, l in ipairs(rec.layers) do needed[#needed + 1] = type(l) == "table" and l.blob or nil end
      for _, d in ipairs(needed) do
        if not listed[d] then return nil, "images/" .. key .. ": its blob " .. tostring(d) .. " is not in its list" end
      end
    end
  end
  ok, err = only(dir, "uppers", function(n) return by_name[n] and by_name[n].upper and "dir" end,
    "the writable layers of the backed-up release's apps")
  if not ok then return nil, err end
  for _, app in ipairs(ct.fs.dir(dir .. "/uppers") or {}) do
    local id = by_name[app].upper
    ok, err = only(dir, "uppers/" .. app, function(n) return n == id and "dir" end, "the writable layer of " .. app)
    if not ok then return nil, err end
    local rel = "uppers/" .. app .. "/" .. id
    ok, err = only(dir, rel, function(n)
      return ((n == "upper" or n == "rootfs") and "dir") or ((n == "upper.json" or n == "idmap") and "file") or nil
    end, "a writable layer")
    if ok then ok, err = expect(dir, rel .. "/upper.json", "file") end
    if not ok then return nil, err end
    local u = json.decode(ct.fs.read(dir .. "/" .. rel .. "/upper.json") or "")
    local key = store.key(app, by_name[app].image.digest)
    if type(u) ~= "table" or u.image ~= key then
      return nil, rel .. "/upper.json: not the writable layer of " .. key
    end
    if ct.fs.exists(dir .. "/" .. rel .. "/upper") == ct.fs.exists(dir .. "/" .. rel .. "/rootfs") then
      return nil, rel .. ": expected upper/ or rootfs/"
    end
  end
  return true
end

-- check_restore(dir) -> info, rel | nil, why: a backup extracted into dir
-- holds only what create writes, with ids and names valid as a package's
-- manifest must have them, and metadata that matches its content.
function M.check_restore(dir)
  local ok, err = only(dir, "", function(n) return TOP[n] end, "a ctcli backup")
  if not ok then return nil, err end
  local info = json.decode(ct.fs.read(dir .. "/backup-info.json") or "")
  if type(info) ~= "table" then return nil, "backup-info.json: not a JSON object" end
  if info.format ~= M.FORMAT then
    return nil, "backup-info.json: format " .. tostring(info.format) .. ", expected " .. M.FORMAT
  end
  if type(info.release) ~= "string" or not info.release:match(M.RELEASE_ID) then
    return nil, "backup-info.json: release " .. json.encode(info.release) .. " is not a release id"
  end
  if type(info.data) ~= "boolean" or type(info.apps) ~= "table" then
    return nil, "backup-info.json: expected \"data\" (true or false) and \"apps\""
  end
  -- "only": the backup holds the configs and data of these apps alone (an
  -- upgrade's backup); a restore puts back theirs and leaves the others'.
  local only_set
  if info.only ~= nil then
    if type(info.only) ~= "table" then return nil, "backup-info.json: \"only\" is not a list of app names" end
    only_set = {}
    for i, n in ipairs(info.only) do
      if not manifest.valid_app_name(n) then
        return nil, "backup-info.json: \"only\" item " .. i .. " is not an app name"
      end
      only_set[n] = true
    end
  end
  ok, err = only(dir, "current-release", function(n) return RELEASE_TOP[n] end, "a release")
  if ok then ok, err = expect(dir, "current-release/release.json", "file") end
  if not ok then return nil, err end
  local rel = json.decode(ct.fs.read(dir .. "/current-release/release.json") or "")
  if type(rel) ~= "table" or type(rel.apps) ~= "table" then
    return nil, "current-release/release.json: not a release"
  end
  if rel.id ~= info.release then
    return nil, string.format("current-release/release.json: release %s, backup-info.json says %s",
      json.encode(rel.id), info.release)
  end
  -- The release's apps must pass the manifest validator, as a package's do
  -- (names, mount paths, hooks paths): a restore regenerates their bundles.
  local doc = { manifest_version = manifest.MANIFEST_VERSION, release = { name = rel.name, version = rel.version },
    apps = json.array() }
  for i, a in ipairs(rel.apps) do
    local copy = {}
    for k, v in pairs(type(a) == "table" and a or {}) do copy[k] = v end
    local img = type(copy.image) == "table" and copy.image or {}
    copy.image = { layout = "images", ref = img.ref, digest = img.digest }
    -- Its writable layer's name (the layer store's): a release id, a path part.
    if copy.upper ~= nil and not (type(copy.upper) == "string" and release.is_id(copy.upper)) then
      return nil, string.format("current-release/release.json: apps[%d].upper: not a release id", i)
    end
    copy.upper = nil
    doc.apps[i] = copy
  end
  local problems = manifest.validate(doc, "current-release/release.json")
  if #problems > 0 then return nil, manifest.format_problems(problems)[1] end
  local by_name = {}
  for _, a in ipairs(rel.apps) do
    if type(a.image) ~= "table" or type(a.image.digest) ~= "string" then
      return nil, "current-release/release.json: app " .. a.name .. " has no image digest"
    end
    if a.hooks ~= nil and a.hooks ~= "hooks/" .. a.name .. ".lua" then
      return nil, "current-release/release.json: app " .. a.name .. ": hooks " .. json.encode(a.hooks)
        .. ", expected hooks/" .. a.name .. ".lua"
    end
    by_name[a.name] = a
    local said = info.apps[a.name]
    if type(said) ~= "table" or said.digest ~= a.image.digest then
      return nil, "backup-info.json: app " .. a.name .. " does not match the backed-up release"
    end
  end
  for name in pairs(info.apps) do
    if not by_name[name] then return nil, "backup-info.json: app " .. tostring(name) .. " is not in the backed-up release" end
  end
  for name in pairs(only_set or {}) do
    if not by_name[name] then return nil, "backup-info.json: \"only\" names " .. name .. ", not in the backed-up release" end
  end
  local function app_dir(n) return manifest.valid_app_name(n) and (not only_set or only_set[n]) and "dir" end
  local checks = {
    { "current-release/apps", function(n) return by_name[n] and "dir" end, "the release's apps" },
    { "current-release/hooks", function(n)
      local app = n:match("^(.*)%.lua$")
      return app and by_name[app] and "file"
    end, "the release's hook files" },
    { "current-release/bin", function(n) return (n == "runc" or n == "umoci") and "file" end, "the release's tools" },
    { "images", function(n)
      local name, digest = n:match("^([^@]+)@(sha256:%x+)$")
      return name and by_name[name] and by_name[name].image.digest == digest and "dir"
    end, "the release's images" },
    { "config", app_dir, only_set and "the configs of the apps it names in \"only\"" or "the apps' configs" },
    { "data", app_dir, only_set and "the data of the apps it names in \"only\"" or "the apps' data" },
  }
  for _, c in ipairs(checks) do
    ok, err = only(dir, c[1], c[2], c[3])
    if not ok then return nil, err end
  end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    ok, err = only(dir, "images/" .. key, function(n)
      return ((n == "rootfs" or n == "oci") and "dir") or ((n == "image.json" or n == "idmap") and "file") or nil
    end, "an image")
    if not ok then return nil, err end
  end
  ok, err = check_store(dir, info, by_name)
  if not ok then return nil, err end
  if info.data ~= (ct.fs.lstat(dir .. "/data") ~= nil) then
    return nil, info.data and "backup-info.json says the backup holds data, and it has none"
      or "data: backup-info.json says the backup holds no data"
  end
  ok, err = walk_special(dir, "", false)
  if not ok then return nil, err end
  return info, rel
end

-- extract(file, dir, progress) -> stats | nil, msg: a backup into dir. The
-- writable layers (uppers/) are read again on their own with their ".wh."
-- entries made overlay whiteouts again; nothing else is (a file an app
-- named ".wh.x" in its data stays a file). A FIFO, socket or device an app
-- made in its data, or an older backup holds, is skipped with a warning
-- (stats.warnings): it never blocks the way back.
function M.extract(file, dir, progress)
  local stats, err = ct.archive.extract(file, dir, {
    preserve = true, check_space = true, special = "skip", progress = progress,
  })
  if not stats then return nil, err end
  if ct.fs.lstat(dir .. "/uppers") then
    local ok, rerr = ct.fs.rmtree(dir .. "/uppers")
    if not ok then return nil, rerr end
    local more, xerr = ct.archive.extract(file, dir, {
      preserve = true, check_space = true, special = "skip", only = { "uppers" }, whiteouts = "overlay",
    })
    if not more then return nil, xerr end
    stats.warnings = stats.warnings or {}
    for _, w in ipairs(more.warnings or {}) do stats.warnings[#stats.warnings + 1] = w end
  end
  return stats
end

-- Where a restored app's flattened rootfs goes when this root's store
-- holds its image as layers: the app's own copy (an upper without
-- overlayfs) named by the restored release, its writes kept.
local function flat_to_copy(dir, rel_doc, key, id)
  local name = key:match("^([^@]+)@")
  local udir = dir .. "/uppers/" .. name .. "/" .. id
  local ok, err = ct.fs.mkdir(udir, 456, true)
  if ok then ok, err = ct.fs.rename(dir .. "/images/" .. key .. "/rootfs", udir .. "/rootfs") end
  if ok then
    ok, err = ct.fs.write_atomic(udir .. "/upper.json", json.encode({
      app = name, image = key, kind = "copy", created = clock.iso(),
      restored = "the flattened rootfs of a backup made before the layer store",
    }, true) .. "\n", 420)
  end
  if ok then
    ok, err = ct.fs.write_atomic(udir .. "/idmap", ct.fs.read(dir .. "/images/" .. key .. "/idmap") or "none\n", 420)
  end
  if not ok then return nil, err end
  for _, a in ipairs(rel_doc.apps) do
    if a.name == name then a.upper = id end
  end
  return true
end

-- place(paths, dir, info, id [, rep]) -> true | nil, msg: the store's part of a
-- checked backup (dir, extracted in tmp/) into this root: the blobs into
-- blobs/sha256/ (checked against their digests by check_restore), each
-- image the root lacks (its OCI index linked to its blobs again), each
-- writable layer the root lacks, in this root's range. What the root
-- already holds stays as it is. A backup made before the layer store holds
-- flattened rootfs: one the root lacks is placed as a flat image, as it was;
-- where the root holds that image as layers, it becomes the app's own copy.
-- Layers missing from layers/ are extracted when each app is prepared
-- (store.complete, before it starts). rep: the reporter (ctcli.base.report).
function M.place(paths, dir, info, id, rep)
  local digests = {}
  for _, h in ipairs(ct.fs.dir(dir .. "/blobs/sha256") or {}) do digests[#digests + 1] = "sha256:" .. h end
  local ok, err = layers.store_blobs(paths, dir, digests)
  if not ok then return nil, "restoring the blobs: " .. tostring(err) end
  local placed_release = ct.fs.exists(release.dir(paths, id))
  local rel_file = dir .. "/current-release/release.json"
  local rel_doc = json.decode(ct.fs.read(rel_file) or "")
  local rewrite = false
  ct.fs.mkdir(paths.images, 493, true)
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    local idir = dir .. "/images/" .. key
    local live = paths.images .. "/" .. key
    if ct.fs.exists(idir .. "/rootfs") and ct.fs.exists(live .. "/image.json") and not ct.fs.exists(live .. "/rootfs")
        and not placed_release then
      ok, err = flat_to_copy(dir, rel_doc, key, id)
      if not ok then return nil, "restoring the rootfs of " .. key .. ": " .. tostring(err) end
      rewrite = true
    elseif not ct.fs.exists(live) then
      for _, d in ipairs(type(info.images) == "table" and info.images[key] or {}) do
        ok, err = ct.fs.mkdir(idir .. "/oci/blobs/sha256", 493, true)
        if ok and not ct.fs.exists(idir .. "/oci/blobs/sha256/" .. layers.hex(d)) then
          ok, err = ct.fs.link(layers.blob_path(paths, d), idir .. "/oci/blobs/sha256/" .. layers.hex(d))
          if not ok then ok, err = ct.fs.copyfile(layers.blob_path(paths, d), idir .. "/oci/blobs/sha256/" .. layers.hex(d), 420) end
        end
        if not ok then return nil, "restoring the image " .. key .. ": " .. tostring(err) end
      end
      ok, err = ct.fs.rename(idir, live)
      if not ok then return nil, err end
    end
  end
  if rewrite then
    ok, err = ct.fs.write_atomic(rel_file, json.encode(rel_doc, true) .. "\n", 420)
    if not ok then return nil, err end
  end
  local range, rerr = idmap.range(paths)
  if rerr then return nil, rerr end
  local kind = layers.storage(paths, true)
  for _, app in ipairs(ct.fs.dir(dir .. "/uppers") or {}) do
    for _, uid in ipairs(ct.fs.dir(dir .. "/uppers/" .. app) or {}) do
      local udir = dir .. "/uppers/" .. app .. "/" .. uid
      local live = layers.upper_dir(paths, app, uid)
      if not ct.fs.exists(live) then
        if kind == "copy" and ct.fs.exists(udir .. "/upper") then
          -- An overlay's writable layer cannot serve without overlayfs: the
          -- app starts from its image (a fresh own copy), its changes left out.
          report.of(rep).warn("the writable layer of %s is not restored: this root has no overlayfs (%s); " ..
            "the app starts from its image", app, select(2, layers.storage(paths)))
        else
          ok, err = M.adopt_upper(udir, range)
          if ok and ct.fs.exists(udir .. "/upper") then
            ok, err = ct.fs.mkdir(udir .. "/work", 448)
            if ok then ok, err = ct.fs.mkdir(udir .. "/merged", 493) end
          end
          if ok then ok, err = ct.fs.mkdir(layers.uppers_root(paths) .. "/" .. app, 456, true) end
          if ok then ok, err = ct.fs.rename(udir, live) end
          if not ok then return nil, "restoring the writable layer of " .. app .. ": " .. tostring(err) end
        end
      end
    end
  end
  return true
end

-- adopt_upper(udir, range) -> true | nil, msg: a restored writable layer
-- made in a root with another range shifted to this root's (none: to host
-- ids), as adopt_restored does for data and images; the next start moves
-- it to the mapping its app runs with.
function M.adopt_upper(udir, range)
  local m = idmap.image_idmap(udir)
  if type(m) ~= "table" or idmap.is_go(m) or idmap.equal(m, range) then return true end
  local target = range or { uid = 0, gid = 0, size = idmap.SIZE }
  for _, top in ipairs({ "upper", "rootfs" }) do
    local ok, err = idmap.shift(udir, top, m, target)
    if not ok then return nil, err end
  end
  return ct.fs.write_atomic(udir .. "/idmap", idmap.image_idmap_text(range), 420)
end

-- list(paths) -> backups newest first: ours (<stamp>-<id>.json beside the
-- archive) and the Go tool's (releases/<date>/backup-info.json + <uuid>.tar.gz)
-- | nil, msg when one of our records is broken.
function M.list(paths)
  local out = {}
  for _, f in ipairs(ct.fs.dir(paths.backups) or {}) do
    if f:match("%.json$") then
      local info, err = statefile.read(paths, paths.backups .. "/" .. f, statefile.BACKUP_RECORD, statefile.HINT.backup)
      if info == nil then return nil, err end
      if info and ct.fs.exists(paths.backups .. "/" .. info.archive) then
        info.path = paths.backups .. "/" .. info.archive
        out[#out + 1] = info
      end
    end
  end
  for _, d in ipairs(ct.fs.dir(paths.releases) or {}) do
    local dir = paths.releases .. "/" .. d
    if d ~= "backups" and ct.fs.exists(dir .. "/backup-info.json") then
      local goroot = require("ctcli.store.goroot")
      local info = goroot.record_of(dir .. "/x") or {}
      for _, f in ipairs(ct.fs.dir(dir) or {}) do
        -- Whether it holds data is read from the archive by who shows it
        -- (goroot.has_data), not on every list.
        if f:match("%.tar%.gz$") then out[#out + 1] = goroot.summary(dir .. "/" .. f, info) end
      end
    end
  end
  table.sort(out, function(a, b) return tostring(a.created) > tostring(b.created) end)
  return out
end

-- held(paths) -> {images = set of "<app>@<digest>", blobs = set of digests}
-- | nil, msg: what this root's backups hold of the store (their records'
-- "images"), which prune leaves; a backup made before the layer store
-- holds its images whole and names none.
function M.held(paths)
  local list, err = M.list(paths)
  if not list then return nil, err end
  local out = { images = {}, blobs = {} }
  for _, b in ipairs(list) do
    for key, digests in pairs(type(b.images) == "table" and b.images or {}) do
      out.images[key] = true
      for _, d in ipairs(digests) do out.blobs[d] = true end
    end
  end
  return out
end

-- The retention class of a backup's reason: an install's backup counts
-- with the upgrades', a backup recorded before reasons were (or by the
-- backup command) with the manual ones.
function M.class(reason)
  if reason == "upgrade" or reason == "install" then return "upgrade" end
  if reason == "safety" then return "safety" end
  return "manual"
end

-- protected(paths, list) -> set of paths: the newest backup of each kept
-- release (the current one included), which its rollback from an archive
-- needs; retention never removes one.
function M.protected(paths, list)
  local out, seen = {}, {}
  local kept = {}
  for _, r in ipairs(release.list(paths)) do kept[r.id] = true end
  for _, b in ipairs(list) do
    if b.format == M.FORMAT and kept[b.release] and not seen[b.release] then
      seen[b.release] = true
      out[b.path] = true
    end
  end
  return out
end

-- remove(b) -> true | nil, msg: one listed backup, its record first
-- (a backup with no record is not listed), then its archive. The Go tool's
-- dir goes when its last archive does.
function M.remove(b)
  if b.format == M.FORMAT then
    local ok, err = ct.fs.unlink((b.path:gsub("%.tar%.%a+$", ".json")))
    if not ok then return nil, err end
    return ct.fs.unlink(b.path)
  end
  local ok, err = ct.fs.unlink(b.path)
  if not ok then return nil, err end
  local dir = b.path:match("^(.*)/[^/]+$")
  for _, f in ipairs(ct.fs.dir(dir) or {}) do
    if f:match("%.tar%.gz$") then return true end
  end
  ct.fs.unlink(dir .. "/backup-info.json")
  ct.fs.rmdir(dir)
  return true
end

-- retain(paths, keep) -> removed backups | nil, msg: keeps the newest
-- keep[class] backups of each class and every protected one; the Go
-- tool's backups are never touched here (only when named).
function M.retain(paths, keep)
  local list = M.list(paths)
  local protected = M.protected(paths, list)
  local count, removed = {}, {}
  for _, b in ipairs(list) do
    if b.format == M.FORMAT then
      local class = M.class(b.reason)
      count[class] = (count[class] or 0) + 1
      if count[class] > (keep[class] or math.huge) and not protected[b.path] then
        local ok, err = M.remove(b)
        if not ok then return nil, "cannot remove the backup " .. b.path .. ": " .. tostring(err) end
        removed[#removed + 1] = b
      end
    end
  end
  return removed
end

return M
