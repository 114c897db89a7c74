-- The root's configuration file, <root>/ctcli.json: the operator's settings
-- for this root (per-app overrides, backup retention). A missing
-- file means the defaults; a broken one is refused with its JSON path, as a
-- manifest is, so a typo never silently switches a protection off.
local ct = require("ct")
local json = require("ctcli.base.json")

local M = {}

M.FILE = "ctcli.json"

-- Keys each object may hold; "x-" keys are the operator's own notes.
local KNOWN = {
  top = { apps = "object", backups = "object", supervision = "object", storage = "object" },
  app = { user_namespace = "boolean", restart = "policy", journald = "boolean" },
  -- The numbers of every app's restart policy and log rotation (ctcli.runtime.runc, its monitor part).
  supervision = { backoff_initial = "seconds", backoff_max = "seconds", crash_limit = "count",
    quick_run = "seconds", log_max = "count", log_keep = "count", journal_socket = "socket" },
  backups = { keep = "object" },
  -- The layer store (ctcli.store.layers): "overlay": false gives every app its own copy.
  storage = { overlay = "boolean" },
  keep = { upgrade = "count", manual = "count", safety = "count" },
}

-- How many backups of each reason retention keeps when ctcli.json says
-- nothing (backups.keep.<reason>).
M.DEFAULT_KEEP = { upgrade = 3, manual = 3, safety = 3 }

local function check_object(problems, where, t, known, nested)
  if type(t) ~= "table" or json.is_array(t) and next(t) ~= nil then
    problems[#problems + 1] = where .. ": expected an object"
    return
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    local path = where == "" and k or where .. "." .. k
    if nested then
      nested(problems, path, v)
    elseif not known[k] and not k:match("^x%-") then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      problems[#problems + 1] = string.format("%s: unknown key (known: %s)", path, table.concat(names, ", "))
    elseif not known[k] then
      goto continue -- the operator's own key
    elseif known[k] == "boolean" and type(v) ~= "boolean" then
      problems[#problems + 1] = path .. ": expected true or false"
    elseif known[k] == "policy" and v ~= "no" and v ~= "on-failure" and v ~= "always" then
      problems[#problems + 1] = path .. ": expected \"no\", \"on-failure\" or \"always\""
    elseif known[k] == "socket" and not (type(v) == "string" and v:match("^/") and #v < 108) then
      problems[#problems + 1] = path .. ": expected an absolute socket path (below 108 bytes)"
    elseif known[k] == "seconds" and not (type(v) == "number" and v > 0 and v <= 86400) then
      problems[#problems + 1] = path .. ": expected a number of seconds above 0"
    elseif known[k] == "count" and (math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v))
      or v < 0 or v > (k == "log_max" and 2 ^ 40 or 100000)) then
      problems[#problems + 1] = path .. ": expected a whole number from 0"
    elseif known[k] == "object" then
      if k == "apps" then
        check_object(problems, path, v, nil, function(p, ap, av)
          check_object(p, ap, av, KNOWN.app)
        end)
      else
        check_object(problems, path, v, KNOWN[k])
      end
    end
    ::continue::
  end
end

-- validate(doc) -> true | nil, "problem; problem"
function M.validate(doc)
  local problems = {}
  check_object(problems, "", doc, KNOWN.top)
  if #problems > 0 then return nil, table.concat(problems, "; ") end
  return true
end

-- load(paths) -> conf | nil, msg. conf.apps[name] is a table (maybe empty).
function M.load(paths)
  local file = paths.root .. "/" .. M.FILE
  local text, err, errno = ct.fs.read(file)
  if not text then
    if errno == 2 or not ct.fs.exists(file) then return { apps = {} } end
    return nil, "cannot read " .. file .. ": " .. tostring(err)
  end
  local doc, jerr = json.decode(text)
  if doc == nil then return nil, file .. ": not valid JSON: " .. tostring(jerr) end
  local ok, verr = M.validate(doc)
  if not ok then return nil, file .. ": " .. verr end
  doc.apps = doc.apps or {}
  return doc
end

-- keep(conf) -> reason -> how many backups of it retention keeps.
function M.keep(conf)
  local set = conf and conf.backups and conf.backups.keep or {}
  local out = {}
  for reason, n in pairs(M.DEFAULT_KEEP) do out[reason] = math.floor(set[reason] or n) end
  return out
end

-- app(conf, name) -> the operator's overrides of one app ({} when none).
function M.app(conf, name)
  return conf and conf.apps and conf.apps[name] or {}
end

return M
