-- ctcli's own state files, read fail-closed. A file ctcli wrote and finds
-- broken (not JSON, or a field of the wrong type) is never guessed around:
-- the reader returns one line naming the file, what is wrong and how to
-- repair it, and no command that changes the root goes past it (check()).
--
-- Shapes are small tables: "string", "integer", "number", "boolean", "any",
-- { object = { field = shape, ... }, required = { "field", ... } },
-- { array = shape }, { map = shape } (an object with any keys), or a
-- function(v, path) -> nil | "path: message". Only the fields the code uses are
-- named; others pass.
local ct = require("ct")
local json = require("ctcli.base.json")

local M = {}

local ARTICLE = {
  string = "a string", integer = "an integer", number = "a number", boolean = "true or false",
}

local function join(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  if path == "" then return key end
  return path .. "." .. key
end

local function is_array(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v and (n > 0 or json.is_array(v) or next(v) == nil)
end

local function where(path)
  return path == "" and "" or (path .. ": ")
end

-- check(v, shape [, path]) -> nil when v has the shape, else "path: what is wrong".
function M.check(v, shape, path)
  path = path or ""
  local t = type(shape)
  if t == "function" then return shape(v, path) end
  if t == "string" then
    if shape == "any" then return nil end
    local ok
    if shape == "integer" then ok = math.type(v) == "integer"
    else ok = type(v) == shape end
    if ok then return nil end
    return where(path) .. "expected " .. ARTICLE[shape]
  end
  if shape.object or shape.map then
    if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then
      return where(path) .. (path == "" and "expected a JSON object" or "expected an object")
    end
    for _, k in ipairs(shape.required or {}) do
      if v[k] == nil then return where(join(path, k)) .. "missing" end
    end
    if shape.object then
      for k, s in pairs(shape.object) do
        if v[k] ~= nil then
          local msg = M.check(v[k], s, join(path, k))
          if msg then return msg end
        end
      end
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local msg = M.check(v[k], shape.map, join(path, k))
        if msg then return msg end
      end
    end
    return nil
  end
  if shape.array then
    if not is_array(v) then return where(path) .. "expected an array" end
    for i, x in ipairs(v) do
      local msg = M.check(x, shape.array, join(path, i))
      if msg then return msg end
    end
    return nil
  end
  error("statefile: bad shape")
end

-- name(paths, file) -> file as seen from the root (releases/X/release.json).
function M.name(paths, file)
  local prefix = paths.root .. "/"
  if file:sub(1, #prefix) == prefix then return file:sub(#prefix + 1) end
  return file
end

-- problem(paths, file, what, hint) -> the one line an operator reads.
function M.problem(paths, file, what, hint)
  return string.format("%s: %s; %s", M.name(paths, file), what, hint)
end

-- read_text(paths, file, hint) -> text | false (no such file) | nil, line
function M.read_text(paths, file, hint)
  local text, err = ct.fs.read(file)
  if text then return text end
  if not ct.fs.lstat(file) then return false end
  return nil, M.problem(paths, file, "cannot read it (" .. tostring(err) .. ")", hint)
end

-- read(paths, file, validate, hint) -> doc | false (no such file) | nil, line.
-- validate(doc) -> nil | what is wrong (a shape is accepted too).
function M.read(paths, file, validate, hint)
  local text, err = M.read_text(paths, file, hint)
  if not text then return text, err end
  local doc, jerr = json.decode(text)
  if doc == nil then
    return nil, M.problem(paths, file, "not valid JSON" .. (jerr and (" (" .. jerr .. ")") or ""), hint)
  end
  local what
  if type(validate) == "function" then what = validate(doc) else what = M.check(doc, validate) end
  if what then return nil, M.problem(paths, file, what, hint) end
  return doc
end

---------------------------------------------------------------------------
-- The shapes of the files that are not a module's own business

local IDMAP = { object = { uid = "integer", gid = "integer", size = "integer" }, required = { "uid", "gid", "size" } }
M.IDMAP = IDMAP

local NAMES = { array = "string" }

M.JOURNAL = {
  object = {
    command = "string", pid = "integer", started = "string",
    steps = { array = { object = { name = "string", done = "boolean" }, required = { "name" } } },
    data = { object = {
      release = "string", from = "string", backup = "string", archive = "string",
      affected = NAMES, stopped = NAMES, restart = NAMES, paused = NAMES, running = NAMES,
    } },
  },
  required = { "command", "steps" },
}

M.WANTED = {
  object = {
    apps = { map = { object = { wanted = "boolean", since = "string", restarts = "number", last_restart = "string" } } },
  },
  required = { "apps" },
}

M.BACKUP_RECORD = {
  object = {
    archive = "string", release = "string", name = "string", version = "string", created = "string",
    data = "boolean", reason = "string", bytes = "integer", format = "any",
    apps = { map = { object = { digest = "string", version = "string" } } },
    -- The blobs of each image it holds ("<app>@<digest>" -> digests): what prune keeps for it.
    images = { map = { array = "string" } },
  },
  required = { "archive", "created" },
}

M.IMAGE = {
  object = {
    app = "string", digest = "string", devices_removed = "integer", config = "string", manifest = "string",
    -- An image of the layer store (ctcli.store.layers); absent: a flat rootfs/.
    layers = { array = { object = { diff_id = "string", blob = "string" }, required = { "diff_id", "blob" } } },
    process = {
      object = {
        args = NAMES, env = NAMES, cwd = "string",
        user = { object = { uid = "integer", gid = "integer" } },
      },
      required = { "args", "env", "cwd", "user" },
    },
  },
  required = { "process" },
}

M.ROOT_IDMAP = IDMAP

M.APP_STATE = {
  object = {
    idmap = function(v, path)
      if v == false or v == "go" then return nil end
      local msg = M.check(v, IDMAP, path)
      return msg and (msg .. " (or false, or \"go\")") or nil
    end,
  },
}

-- The repair hints (the commands an operator runs, or what to put back).
M.HINT = {
  journal = "check the root ('ctcli status', 'ctcli list-releases'), finish by hand what the interrupted command left," ..
    " then drop the journal with 'ctcli recover --discard-journal'",
  wanted = "remove the file (every app then counts as wanted) and run 'ctcli stop APP' for the apps to keep stopped",
  backup = "remove the record (the archive beside it stays and still restores with 'ctcli rollback ARCHIVE')",
  image = "put images/%s back from a backup that holds it (the archive's images/%s), or remove the releases" ..
    " that use it by hand",
  root_idmap = "write the root's range back ({\"uid\": N, \"gid\": N, \"size\": 65536}, as in the subuid file's" ..
    " ctcli entry)",
  app_state = "remove the file if the app is stopped (its next start records it again); if it runs," ..
    " write back {\"idmap\": false} (no user namespace) or the root's range from state/idmap.json",
}

return M
