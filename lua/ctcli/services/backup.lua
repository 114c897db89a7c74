-- Making backups: one self-contained archive of the current release (with each
-- app's image as its blobs and the app's writable layer), config/ and, unless left out, data/ (or only some apps'
-- configs and data, for an upgrade), plus its metadata, under
-- releases/backups/. A running app is paused only while its own config
-- and data are read, so they are consistent; the journal names it so a
-- killed backup never leaves it frozen.
local ct = require("ct")
local appfs = require("ctcli.runtime.appfs")
local apps = require("ctcli.services.apps")
local backups = require("ctcli.store.backup")
local clock = require("ctcli.base.clock")
local history = require("ctcli.store.history")
local idmap = require("ctcli.store.idmap")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local report = require("ctcli.base.report")
local runtime = require("ctcli.runtime.runc")
local runtools = require("ctcli.runtime.tools")
local store = require("ctcli.store.images")

-- The kept backups' side (list, check_restore, place, retain, FORMAT...)
-- is ctcli.store.backup's; commands reach both through this module.
local M = setmetatable({}, { __index = backups })
local image_entries, upper_entries

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
    -- Layers gzip or zstd already go in as they are (stored: no CPU spent
    -- compressing them again for no byte saved).
    local rec = store.image_info(p, app.name, app.image.digest)
    local packed = {}
    for _, l in ipairs(rec and store.layered(rec) and rec.layers or {}) do
      if type(l) == "table" and layers.compressed(l.media_type) then packed[l.blob] = true end
    end
    local digests = json.array()
    for _, h in ipairs(list) do
      local digest = "sha256:" .. h
      digests[#digests + 1] = digest
      if not seen[h] then
        seen[h] = true
        local from = layers.blob_path(p, digest)
        if not ct.fs.exists(from) then from = dir .. "/oci/blobs/sha256/" .. h end
        entries[#entries + 1] = { name = "blobs/sha256/" .. h, path = from, stored = packed[digest] }
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
  info.bytes = (ct.fs.stat(archive) or {}).size
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
-- a backup of a Go ctcli root (rel: its view, ctcli.store.goroot) in the Go tool's
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
  local ok, xerr = ct.archive.extract(archive, dir, { preserve = true, only = { data = true }, special = "skip" })
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


return M
