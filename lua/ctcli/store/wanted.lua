-- The wanted state (state/wanted.json): which apps the operator started
-- (wanted) or stopped (not wanted), so that boot restores exactly those and
-- `start --restart-exited` knows an app that exited by itself from one that
-- was stopped on purpose. An app with no record counts as wanted: install
-- starts every app, and a root made before this file existed ran them all.
--
--   { "apps": { "<app>": { "wanted": true, "since": "<UTC>",
--                          "restarts": N, "last_restart": "<UTC>" } } }
local ct = require("ct")
local json = require("ctcli.base.json")
local rootmod = require("ctcli.base.root")
local statefile = require("ctcli.base.statefile")
local clock = require("ctcli.base.clock")

local M = {}

local function now_utc()
  return clock.iso()
end

-- read(paths) -> the document (an empty one when the file is missing) | nil,
-- msg when it is broken: which apps the operator stopped is then unknown.
function M.read(paths)
  local doc, err = statefile.read(paths, paths.wanted, statefile.WANTED, statefile.HINT.wanted)
  if doc == nil then return nil, err end
  return doc or { apps = {} }
end

local function save(paths, doc)
  local ok, err = ct.fs.write_atomic(paths.wanted, json.encode(doc, true) .. "\n")
  if not ok then return nil, "cannot write " .. paths.wanted .. ": " .. tostring(err) end
  return true
end

-- is_wanted(doc, name) -> boolean
function M.is_wanted(doc, name)
  local rec = doc.apps[name]
  if rec == nil then return true end
  return rec.wanted ~= false
end

-- record(doc, name) -> the app's record, or nil
function M.record(doc, name)
  return doc.apps[name]
end

-- mark(paths, names, wanted) -> true | nil, msg: records the apps named as
-- wanted (true) or not (false); the restart count starts again on a change.
function M.mark(paths, names, wanted)
  local doc, err = M.read(paths)
  if not doc then return nil, err end
  local changed = false
  for _, n in ipairs(names) do
    local rec = doc.apps[n]
    if not rec or rec.wanted ~= wanted then
      doc.apps[n] = { wanted = wanted, since = now_utc(), restarts = 0 }
      changed = true
    end
  end
  if not changed then return true end
  return save(paths, doc)
end

-- count_restart(paths, name) -> the app's restart count after this one.
function M.count_restart(paths, name)
  local doc, derr = M.read(paths)
  if not doc then return nil, derr end
  local rec = doc.apps[name] or { wanted = true, since = now_utc(), restarts = 0 }
  rec.restarts = (tonumber(rec.restarts) or 0) + 1
  rec.last_restart = now_utc()
  doc.apps[name] = rec
  local ok, err = save(paths, doc)
  if not ok then return nil, err end
  return rec.restarts
end

-- log(paths, fmt, ...): one timestamped line in logs/ctcli.log.
function M.log(paths, fmt, ...)
  local line = string.format("%s %s\n", now_utc(), string.format(fmt, ...))
  ct.fs.mkdir(paths.logs, rootmod.MODES.logs, true)
  local f, err = ct.fs.open(paths.ctcli_log, { write = true, create = true, append = true, mode = 420 })
  if not f then return nil, err end
  local ok, werr = f:write(line)
  f:close()
  return ok, werr
end

return M
