-- Completing or undoing an interrupted command from its journal, so that a
-- kill at any instant leaves the root on the old release or the new one,
-- with configs and data intact. The rule: before its swap step a command is
-- undone (the old release, its stopped apps started again); after it, it is
-- completed (pending migrations, then the apps it meant to start). An
-- upgrade that had already failed and was rolling back is rolled back.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local backup = require("ctcli.services.backup")
local hooks = require("ctcli.hooks.runner")
local journal = require("ctcli.journal.journal")
local manifest = require("ctcli.model.manifest")
local release = require("ctcli.store.release")
local releases = require("ctcli.services.releases")

local M = {}

local function current_id(paths)
  local t = ct.fs.readlink(paths.current)
  return t and t:match("([^/]+)$")
end

-- A config/ or data/ that a restore moved aside: back in place on undo.
local function put_back_dirs(paths, undo)
  for _, name in ipairs({ "config", "data" }) do
    local dir = paths.root .. "/" .. name
    for _, t in ipairs(ct.fs.dir(paths.tmp) or {}) do
      local old = paths.tmp .. "/" .. t .. "/dir"
      if t:match("^old%-" .. name .. "%-") and ct.fs.exists(old) and (undo or not ct.fs.exists(dir)) then
        if ct.fs.exists(dir) then
          ct.fs.exchange(old, dir)
        else
          ct.fs.rename(old, dir)
        end
      end
    end
    if not ct.fs.exists(dir) then ct.fs.mkdir(dir, 448, true) end
    -- One app's tree set aside by the restore of an upgrade's backup.
    for _, t in ipairs(ct.fs.dir(paths.tmp) or {}) do
      local app = t:match("^old%-" .. name .. "%.(.+)%-%w%w%w%w%w%w$")
      local old = paths.tmp .. "/" .. t .. "/dir"
      local live = app and manifest.valid_app_name(app) and dir .. "/" .. app
      if live and ct.fs.exists(old) and (undo or not ct.fs.exists(live)) then
        if ct.fs.exists(live) then ct.fs.exchange(old, live) else ct.fs.rename(old, live) end
      end
    end
  end
end

local function clean_tmp(paths)
  for _, t in ipairs(ct.fs.dir(paths.tmp) or {}) do ct.fs.rmtree(paths.tmp .. "/" .. t) end
  ct.fs.unlink(release.swap_temp(paths))
  for _, f in ipairs(ct.fs.dir(paths.backups) or {}) do
    if backup.partial(f) then ct.fs.unlink(paths.backups .. "/" .. f) end
  end
end

local function by_names(rel, names)
  local out = {}
  for _, n in ipairs(names or {}) do
    if rel.by_name[n] then out[#out + 1] = rel.by_name[n] end
  end
  return out
end

local function start_names(ctx, rel, names, notes)
  if not rel then return end
  local list = by_names(rel, names)
  local states = apps.states(ctx, rel) or {}
  local todo = {}
  for _, app in ipairs(list) do
    local st = states[app.name]
    if not (st and st.status == "running") then todo[#todo + 1] = app end
  end
  if #todo == 0 then return end
  local started, err = apps.start(ctx, rel, todo)
  if started then
    notes[#notes + 1] = "started " .. table.concat(started, ", ")
  else
    notes[#notes + 1] = "could not start the apps again: " .. tostring(err)
  end
end

local function migrate(ctx, rel, names, notes)
  local hc = apps.hooks_for(ctx, rel)
  for _, app in ipairs(by_names(rel, names)) do
    local ran, err = hooks.migrate(hc, app)
    if not ran then
      notes[#notes + 1] = "a migration failed: " .. err
      return false
    end
    if #ran > 0 then notes[#notes + 1] = app.name .. " ran migrations " .. table.concat(ran, ", ") end
  end
  return true
end

-- Finishes the automatic rollback of an upgrade that had failed.
local function finish_rollback(ctx, d, notes)
  local p = ctx.paths
  local new = d.release and release.load(p, d.release)
  local old = release.load(p, d.from)
  if new then apps.stop(ctx, new, by_names(new, d.affected)) end
  if current_id(p) ~= d.from then release.swap(p, d.from) end
  if d.backup then
    local ok, err = backup.restore_data(ctx, d.backup, d.affected or {})
    if not ok then notes[#notes + 1] = "restoring data failed: " .. err end
  end
  start_names(ctx, old, d.stopped, notes)
  if new then ct.fs.rmtree(new.dir) end
end

-- run(ctx) -> nil when there was nothing to do, else a one-line summary |
-- nil, msg when the journal cannot be read (nothing is touched then).
function M.run(ctx)
  local j, jerr = journal.pending(ctx.paths)
  if not j then return nil, jerr end
  local doc = j.doc
  local d = doc.data or {}
  local notes = {}
  local p = ctx.paths
  local cur = current_id(p)
  local swapped
  if doc.command == "delete" then
    swapped = j:reached("unlink")
  else
    swapped = j:reached("swap") and d.release ~= nil and cur == d.release
  end
  local outcome
  if doc.command == "adopt" then
    -- Every step of an adoption is idempotent: finish it (what it was
    -- making in tmp/, a backup or a release, is made again).
    clean_tmp(p)
    local res, aerr = require("ctcli.services.adopt").resume(ctx, j)
    if not res then return nil, "cannot finish the interrupted adoption of the Go ctcli's root: " .. tostring(aerr) end
    j:finish()
    return string.format("recovered an interrupted 'adopt' (pid %s, %s): completed", tostring(doc.pid),
      tostring(doc.started))
  elseif doc.command == "backup" then
    local rel = release.current(p)
    if rel and d.paused then backup.resume(ctx, rel, d.paused) end
    if d.archive and not ct.fs.exists((d.archive:gsub("%.tar%.%a+$", ".json"))) then ct.fs.unlink(d.archive) end
    outcome = "undone (the partial backup was removed)"
  elseif doc.command == "delete" then
    if swapped then
      ct.fs.unlink(p.current)
      for _, r in ipairs(release.list(p) or {}) do ct.fs.rmtree(r.dir) end
      require("ctcli.services.staged").drop(p)
      for _, key in ipairs(ct.fs.dir(p.images) or {}) do ct.fs.rmtree(p.images .. "/" .. key) end
      outcome = "completed"
    else
      start_names(ctx, release.current(p), d.running, notes)
      outcome = "undone"
    end
  elseif doc.command == "upgrade" and j:reached("rollback") then
    finish_rollback(ctx, d, notes)
    outcome = "rolled back to " .. tostring(d.from) .. " (the upgrade had failed)"
  elseif swapped then
    put_back_dirs(p, false)
    local rel = release.current(p)
    if d.paused and rel then backup.resume(ctx, rel, d.paused) end
    if rel and doc.command ~= "rollback" then
      local names = d.affected
      if doc.command == "install" then names = rel.order end
      migrate(ctx, rel, names, notes)
    end
    start_names(ctx, rel, d.restart or (doc.command == "install" and rel and rel.order), notes)
    outcome = "completed"
  else
    put_back_dirs(p, true)
    local rel = release.current(p)
    if d.paused and rel then backup.resume(ctx, rel, d.paused) end
    if d.release and d.release ~= cur and doc.command ~= "rollback" then
      -- A staged release goes back to releases/staged/: still staged against this one.
      if d.staged then require("ctcli.services.staged").unplace(p, d.release) else ct.fs.rmtree(release.dir(p, d.release)) end
    end
    start_names(ctx, rel, d.stopped, notes)
    outcome = "undone"
    -- start and stop record the wanted state first and change no release;
    -- prune and rotate-logs only remove what is not needed: nothing to undo,
    -- running the command again finishes it.
    local idempotent = { start = true, stop = true, prune = true, ["rotate-logs"] = true }
    if idempotent[doc.command] then outcome = "nothing to undo" end
  end
  -- A backup a command was writing (an upgrade's, a rollback's safety
  -- backup) is whole only once its record is written.
  if doc.command ~= "backup" and type(d.archive) == "string"
    and not ct.fs.exists((d.archive:gsub("%.tar%.%a+$", ".json"))) then
    ct.fs.unlink(d.archive)
  end
  clean_tmp(p)
  -- Images only an undone release used go too (never one a kept release
  -- uses; nothing when a release cannot be read).
  releases.prune(p, math.huge)
  j:finish()
  local line = string.format("recovered an interrupted '%s' (pid %s, %s): %s", doc.command,
    tostring(doc.pid), tostring(doc.started), outcome)
  if #notes > 0 then line = line .. "; " .. table.concat(notes, "; ") end
  return line
end

return M
