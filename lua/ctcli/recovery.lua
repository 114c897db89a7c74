-- Completing or undoing an interrupted command from its journal. The rule:
-- before its swap step, a command is undone (the old release, its apps
-- running again); after it, completed (the new release, its apps started).
local ct = require("ct")
local apps = require("ctcli.apps")
local backup = require("ctcli.backup")
local journal = require("ctcli.journal")
local release = require("ctcli.release")

local M = {}

local function current_id(paths)
  local t = ct.fs.readlink(paths.current)
  return t and t:match("([^/]+)$")
end

-- A config/ or data/ moved aside by a restore that did not finish goes back.
local function put_back_dirs(paths)
  for _, name in ipairs({ "config", "data" }) do
    local dir = paths.root .. "/" .. name
    if not ct.fs.exists(dir) then
      for _, t in ipairs(ct.fs.dir(paths.tmp) or {}) do
        if t:match("^old%-" .. name .. "%-") and ct.fs.exists(paths.tmp .. "/" .. t .. "/dir") then
          ct.fs.rename(paths.tmp .. "/" .. t .. "/dir", dir)
        end
      end
      if not ct.fs.exists(dir) then ct.fs.mkdir(dir, 448, true) end
    end
  end
end

local function clean_tmp(paths)
  for _, t in ipairs(ct.fs.dir(paths.tmp) or {}) do ct.fs.rmtree(paths.tmp .. "/" .. t) end
  ct.fs.unlink(paths.root .. "/.current-release.new")
  for _, f in ipairs(ct.fs.dir(paths.backups) or {}) do
    if f:match("%.tmp%-") then ct.fs.unlink(paths.backups .. "/" .. f) end
  end
end

local function start_names(ctx, rel, names, notes)
  if not rel or not names or #names == 0 then return end
  local list = {}
  for _, n in ipairs(names) do
    if rel.by_name[n] then list[#list + 1] = rel.by_name[n] end
  end
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

-- run(ctx) -> nil when there was nothing to do, else a one-line summary.
function M.run(ctx)
  local j = journal.pending(ctx.paths)
  if not j then return nil end
  local doc = j.doc
  local d = doc.data or {}
  local notes = {}
  local p = ctx.paths
  put_back_dirs(p)
  local cur = current_id(p)
  local swapped = j:reached("swap") and d.release and cur == d.release
  if doc.command == "rollback" then swapped = j:reached("swap") and cur ~= d.from end
  if doc.command == "delete" then swapped = j:reached("unlink") end
  local outcome
  if doc.command == "backup" then
    local rel = release.current(p)
    if rel and d.paused then backup.resume(ctx, rel, d.paused) end
    outcome = "undone (the partial backup was removed)"
  elseif doc.command == "delete" then
    if swapped then
      ct.fs.unlink(p.current)
      for _, r in ipairs(release.list(p)) do ct.fs.rmtree(r.dir) end
      for _, key in ipairs(ct.fs.dir(p.images) or {}) do ct.fs.rmtree(p.images .. "/" .. key) end
      outcome = "completed"
    else
      start_names(ctx, release.current(p), d.running, notes)
      outcome = "undone"
    end
  elseif swapped then
    local rel = release.current(p)
    if d.paused and rel then backup.resume(ctx, rel, d.paused) end
    start_names(ctx, rel, d.restart, notes)
    outcome = "completed"
  else
    local rel = release.current(p)
    if d.paused and rel then backup.resume(ctx, rel, d.paused) end
    if d.release and d.release ~= cur and doc.command ~= "rollback" then
      ct.fs.rmtree(release.dir(p, d.release))
    end
    start_names(ctx, rel, d.stopped, notes)
    outcome = "undone"
  end
  clean_tmp(p)
  j:finish()
  local line = string.format("recovered an interrupted '%s' (pid %s, %s): %s", doc.command,
    tostring(doc.pid), tostring(doc.started), outcome)
  if #notes > 0 then line = line .. "; " .. table.concat(notes, "; ") end
  return line
end

return M
