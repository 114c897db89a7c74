-- Backups: one self-contained archive of the current release (with each
-- app's rootfs), config/ and, unless left out, data/, plus its metadata,
-- under releases/backups/. Running apps are paused while it is written, so
-- their data is consistent; the journal names them so a killed backup never
-- leaves them frozen.
local ct = require("ct")
local appfs = require("ctcli.appfs")
local json = require("ctcli.json")
local apps = require("ctcli.apps")
local release = require("ctcli.release")
local runtime = require("ctcli.runtime")
local store = require("ctcli.store")
local ui = require("ctcli.ui")
local userns = require("ctcli.userns")

local M = {}

M.FORMAT = "ctcli-backup/1"

local function stamp()
  return os.date("!%Y%m%dT%H%M%SZ")
end

-- resume(ctx, rel, names): resumes paused containers (also used by recovery).
function M.resume(ctx, rel, names)
  local rt = runtime.rt(ctx.paths, release.tools(rel))
  for _, n in ipairs(names or {}) do
    ct.oci.runc(rt, { "resume", runtime.container_id(ctx.paths.root, n) }, { timeout = 30 })
  end
end

-- create(ctx, rel, opts) -> info (with .archive) | nil, msg
-- opts: data (bool), gzip (bool), journal (for the paused apps), label
function M.create(ctx, rel, opts)
  local p = ctx.paths
  local ext = opts.gzip and ".tar.gz" or ".tar.zst"
  local base = string.format("%s-%s", stamp(), rel.id)
  local archive = p.backups .. "/" .. base .. ext
  local info = {
    format = M.FORMAT, release = rel.id, name = rel.name, version = rel.version,
    created = os.date("!%Y-%m-%dT%H:%M:%SZ"), data = opts.data and true or false,
    reason = opts.reason or "backup", apps = {},
    archive = base .. ext,
  }
  local entries = {
    { name = "current-release", path = rel.dir },
    { name = "config", path = p.config },
  }
  for _, app in ipairs(rel.apps) do
    -- The mapping its config and data are owned in (false: none), so a
    -- restore into another root (another range) can shift them.
    info.apps[app.name] = { version = app.version, digest = app.image.digest,
      idmap = userns.recorded(p, app.name) }
    -- The rootfs and what the image says of its process; not the kept OCI
    -- layout, which would double the archive (a restore gets it back by
    -- reinstalling the package, should `reset` need it).
    local key, dir = store.key(app.name, app.image.digest), store.dir(p, app.name, app.image.digest)
    entries[#entries + 1] = { name = "images/" .. key .. "/rootfs", path = dir .. "/rootfs" }
    entries[#entries + 1] = { name = "images/" .. key .. "/image.json", path = dir .. "/image.json" }
    if ct.fs.exists(dir .. "/idmap") then
      entries[#entries + 1] = { name = "images/" .. key .. "/idmap", path = dir .. "/idmap" }
    end
  end
  if opts.data then entries[#entries + 1] = { name = "data", path = p.data } end
  local info_tmp, terr = ct.fs.mkdtemp(p.tmp .. "/backup-XXXXXX")
  if not info_tmp then return nil, terr end
  ct.fs.write_atomic(info_tmp .. "/backup-info.json", json.encode(info, true) .. "\n")
  table.insert(entries, 1, { name = "backup-info.json", path = info_tmp .. "/backup-info.json" })

  local paused = json.array()
  if opts.data then
    local states = apps.states(ctx, rel) or {}
    for _, app in ipairs(rel.apps) do
      local st = states[app.name]
      if st and st.status == "running" then paused[#paused + 1] = app.name end
    end
    if opts.journal then opts.journal:set("paused", paused) end
    local rt = runtime.rt(p, release.tools(rel))
    for _, n in ipairs(paused) do
      ct.oci.runc(rt, { "pause", runtime.container_id(p.root, n) }, { timeout = 30 })
    end
  end
  if opts.journal then opts.journal:set("archive", archive) end
  local bar = ui.progress("backup")
  local res, err = ct.archive.create(archive, entries, {
    format = opts.gzip and "gzip" or "zstd",
    progress = function(bytes) bar:update(bytes, 0) end,
  })
  bar:finish()
  M.resume(ctx, rel, paused)
  ct.fs.rmtree(info_tmp)
  if not res then return nil, "backup failed: " .. tostring(err) end
  info.bytes = ct.fs.size(archive)
  local ok, werr = ct.fs.write_atomic(p.backups .. "/" .. base .. ".json", json.encode(info, true) .. "\n")
  if not ok then ct.fs.unlink(archive) return nil, werr end
  info.path = archive
  return info
end

-- restore_data(ctx, archive, names) -> true | nil, msg: puts the data of
-- the named apps back as the backup has it. Each app's directory is
-- exchanged with the restored copy in one renameat2, so a crash never
-- leaves it missing.
function M.restore_data(ctx, archive, names)
  local dir, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/restore-XXXXXX")
  if not dir then return nil, err end
  local ok, xerr = ct.archive.extract(archive, dir, { preserve = true, only = { "data" }, skip_special = true })
  if not ok then ct.fs.rmtree(dir) return nil, xerr end
  ct.fs.mkdir(dir .. "/data", 448, true)
  for _, name in ipairs(names) do
    local live = appfs.host_paths(ctx.paths, name).data
    local saved = dir .. "/data/" .. name
    if not ct.fs.exists(saved) then ct.fs.mkdir(saved, 448) end
    local rok, rerr
    if ct.fs.exists(live) then
      rok, rerr = ct.fs.exchange(live, saved)
    else
      rok, rerr = ct.fs.rename(saved, live)
    end
    if not rok then ct.fs.rmtree(dir) return nil, rerr end
  end
  ct.fs.fsync(ctx.paths.data)
  ct.fs.rmtree(dir)
  return true
end

-- list(paths) -> backups newest first: ours (<stamp>-<id>.json beside the
-- archive) and the Go tool's (releases/<date>/backup-info.json + <uuid>.tar.gz).
function M.list(paths)
  local out = {}
  for _, f in ipairs(ct.fs.dir(paths.backups) or {}) do
    if f:match("%.json$") then
      local text = ct.fs.read(paths.backups .. "/" .. f)
      local info = text and json.decode(text)
      if info and info.archive and ct.fs.exists(paths.backups .. "/" .. info.archive) then
        info.path = paths.backups .. "/" .. info.archive
        out[#out + 1] = info
      end
    end
  end
  for _, d in ipairs(ct.fs.dir(paths.releases) or {}) do
    local dir = paths.releases .. "/" .. d
    if d ~= "backups" and ct.fs.exists(dir .. "/backup-info.json") then
      local text = ct.fs.read(dir .. "/backup-info.json")
      local info = text and json.decode(text) or {}
      for _, f in ipairs(ct.fs.dir(dir) or {}) do
        if f:match("%.tar%.gz$") then
          out[#out + 1] = { format = "go-ctcli", created = info.date or info.created or d, path = dir .. "/" .. f,
            version = info.packageVersion or info.version, data = info.withData ~= false, legacy = info }
        end
      end
    end
  end
  table.sort(out, function(a, b) return tostring(a.created) > tostring(b.created) end)
  return out
end

return M
