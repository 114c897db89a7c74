-- Every problem of a package's content at once (ctcli validate, pack): the
-- manifest's schema and cross-field rules (manifest.lua), then what needs
-- the files: image layouts (every blob against its digest, ocicheck.lua), refs
-- and digests, hook files (compiled as text,
-- never run; only known hook points), migration ids, runtime binaries and,
-- for a packed package, the "files" digests. A problem is {file=, path=, message=}.
local ct = require("ct")
local hooks = require("ctcli.hooks.runner")
local json = require("ctcli.base.json")
local manifest = require("ctcli.model.manifest")
local ocicheck = require("ctcli.model.ocicheck")
local package = require("ctcli.model.package")

local M = {}

local function add(problems, file, path, message)
  problems[#problems + 1] = { file = file, path = path or "", message = message }
end

local set_of = require("ctcli.base.tables").set_of

local POINT_SET = set_of(hooks.POINTS)

-- Comments out of the way, so a commented-out key does not count.
local function strip_comments(text)
  text = text:gsub("%-%-%[(=*)%[.-%]%1%]", "")
  text = text:gsub("%-%-[^\n]*", "")
  return text
end

-- scan_hooks(text) -> {points = set, unknown = {{name=, hint=}}, migrations = {ids...}}
-- A static reading of a hook file: the functions it names as table keys.
-- Nothing is executed.
function M.scan_hooks(text)
  local src = strip_comments(text)
  local out = { points = {}, unknown = {}, migrations = {} }
  local seen = {}
  local function consider(name)
    if seen[name] then return end
    seen[name] = true
    if POINT_SET[name] then
      out.points[name] = true
    elseif name:match("^pre_") or name:match("^post_") or manifest.suggest(name, hooks.POINTS) then
      out.unknown[#out.unknown + 1] = { name = name, hint = manifest.suggest(name, hooks.POINTS) }
    end
  end
  for name in src:gmatch("([%a_][%w_]*)%s*=%s*function[%s(]") do consider(name) end
  for name in src:gmatch("function%s+[%a_][%w_]*[.:]([%a_][%w_]*)%s*%(") do consider(name) end
  for _, id in src:gmatch("%[%s*([\"'])(.-)%1%s*%]%s*=%s*function[%s(]") do
    out.migrations[#out.migrations + 1] = id
  end
  return out
end

-- misordered(ids) -> {a, b} | nil: sorted as text (how migrations run
-- without a listed order), a pair whose leading numbers say the opposite
-- ("10-b" before "9-a").
function M.misordered(ids)
  local sorted = {}
  for i, id in ipairs(ids) do sorted[i] = id end
  table.sort(sorted)
  for i = 1, #sorted - 1 do
    for j = i + 1, #sorted do
      local a, b = tonumber(sorted[i]:match("^%d+")), tonumber(sorted[j]:match("^%d+"))
      if a and b and a > b then return { sorted[i], sorted[j] } end
    end
  end
  return nil
end

local function app_path(app, i)
  local name = type(app) == "table" and app.name
  if type(name) == "string" and name:match("^[a-z0-9][a-z0-9_.%-]*$") then return "apps." .. name end
  return "apps[" .. (i - 1) .. "]"
end

local function is_rel(v)
  return type(v) == "string" and v ~= "" and v:sub(1, 1) ~= "/" and not ("/" .. v .. "/"):find("/%.%./")
end

-- Hook file checks of one app: compiles as text, known points, migrations.
local function check_hooks(problems, dir, file, app, path)
  local listed = type(app.migrations) == "table" and app.migrations or nil
  if not is_rel(app.hooks) then
    if listed and #listed > 0 then
      add(problems, file, path .. ".migrations", "migrations are listed but the app has no hook file to define them")
    end
    return
  end
  local text = ct.fs.read(dir .. "/" .. app.hooks)
  if not text then
    add(problems, file, path .. ".hooks", "no such file in the package: " .. app.hooks)
    return
  end
  local ok, err = hooks.check({ { label = app.hooks, text = text } })
  if not ok then
    local rest = err:sub(1, #app.hooks + 1) == app.hooks .. ":" and err:sub(#app.hooks + 2) or err
    local line, msg = rest:match("^(%d+): (.*)$")
    if line then
      add(problems, app.hooks, "line " .. line, msg)
    else
      add(problems, app.hooks, "", (rest:gsub("^%s+", "")))
    end
    return
  end
  -- What the file's table holds (its top level runs in the sandbox; no hook
  -- is called): hook points and migrations that are functions, ids that sort.
  local shape, serr = hooks.shape(text, app.hooks)
  if not shape then
    add(problems, app.hooks, "", "cannot build its table: " .. serr)
    return
  end
  for _, p in ipairs(shape.problems) do add(problems, app.hooks, p.key, p.message) end
  if not listed then
    local misorder = M.misordered(shape.migrations)
    if misorder then
      add(problems, app.hooks, "migrations", string.format("ids run in text order, so '%s' runs before '%s'; " ..
        "pad the numbers to one width (0009, 0010) or list the order in the manifest's migrations",
        misorder[1], misorder[2]))
    end
  end
  local scan = M.scan_hooks(text)
  for _, u in ipairs(scan.unknown) do
    add(problems, app.hooks, u.name, "unknown hook point '" .. u.name .. "'"
      .. (u.hint and (" (did you mean '" .. u.hint .. "'?)") or (" (known: " .. table.concat(hooks.POINTS, ", ") .. ")")))
  end
  local defined, dup = {}, {}
  for _, id in ipairs(scan.migrations) do
    if defined[id] and not dup[id] then
      dup[id] = true
      add(problems, app.hooks, "migrations", "migration id '" .. id .. "' is defined twice")
    end
    defined[id] = true
  end
  for i, id in ipairs(listed or {}) do
    if type(id) == "string" and not defined[id] and not text:find(id, 1, true) then
      add(problems, file, path .. ".migrations[" .. (i - 1) .. "]",
        "migration '" .. id .. "' is not defined in " .. app.hooks)
    end
  end
end

local function check_images(problems, dir, file, doc, format, sha256, named)
  local delta = package.delta_of(doc)
  -- Each layout's blobs once (apps may share one); a layout whose files do
  -- not match their digests is reported file by file, and nothing more is
  -- read from it.
  local broken = {}
  local function layout_ok(layout)
    if broken[layout] == nil then
      local found = ocicheck.check(dir, layout, package.absent(doc, layout), sha256, named)
      for _, p in ipairs(found) do problems[#problems + 1] = p end
      broken[layout] = #found > 0
    end
    return not broken[layout]
  end
  for i, app in ipairs(type(doc.apps) == "table" and doc.apps or {}) do
    local path = app_path(app, i)
    local img = type(app) == "table" and app.image
    local needed = delta and type(app) == "table" and delta.images[app.name]
    if needed then
      -- A delta package leaves this image out: the root's store supplies it.
      if type(img) == "table" and img.digest ~= nil and img.digest ~= needed then
        add(problems, file, path .. ".image.digest", "differs from the digest the delta relies on (" .. tostring(needed) .. ")")
      end
    elseif type(img) == "table" and is_rel(img.layout) and type(img.ref) == "string" and img.ref ~= ""
      and (not ct.fs.exists(dir .. "/" .. img.layout .. "/index.json") or layout_ok(img.layout)) then
      local digest = type(img.digest) == "string" and img.digest or nil
      if format == "legacy" then
        -- Reported against the legacy files, as the package's author wrote them.
        local base = package.LEGACY_APPS .. "/" .. tostring(app.name)
        local ok, err = package.image(dir, { layout = img.layout, ref = img.ref, digest = digest }, "\0",
          base .. "/version.json imageSha", package.absent(doc, img.layout), sha256)
        if not ok then add(problems, base, "skopeo", (err:gsub("^%z: ", ""))) end
      else
        local ok, err = package.image(dir, { layout = img.layout, ref = img.ref, digest = digest }, "\0", nil,
          package.absent(doc, img.layout), sha256)
        if not ok then add(problems, file, path .. ".image", (err:gsub("^%z: ", ""))) end
      end
    end
    if type(app) == "table" then check_hooks(problems, dir, file, app, path) end
  end
  if type(doc.runtime) == "table" then
    for _, tool in ipairs({ "runc", "umoci" }) do
      local p = doc.runtime[tool]
      if is_rel(p) then
        local st = ct.fs.stat(dir .. "/" .. p)
        if not st or st.type ~= "file" then
          add(problems, file, "runtime." .. tool, "no such file in the package: " .. p)
        end
      end
    end
  end
end

-- check_files(problems, dir, files): the "files" digests of a packed package.
local function check_files(problems, dir, file, files, sha256)
  local signing = require("ctcli.model.signing")
  if type(files) ~= "table" then return end
  local seen = {}
  for _, rel in ipairs(signing.files_of(dir)) do
    if rel ~= signing.MANIFEST and rel ~= signing.SIGNATURE then
      seen[rel] = true
      local want = files[rel]
      if not want then
        add(problems, rel, "", "the package holds this file but manifest.json \"files\" does not list it")
      elseif "sha256:" .. tostring(sha256(dir .. "/" .. rel)) ~= want then
        add(problems, rel, "", "does not match its digest in manifest.json \"files\"")
      end
    end
  end
  local keys = {}
  for rel in pairs(files) do keys[#keys + 1] = rel end
  table.sort(keys)
  for _, rel in ipairs(keys) do
    if not seen[rel] then
      add(problems, file, 'files["' .. rel .. '"]', "listed, but missing from the package")
    end
  end
end

-- check_text(text, file) -> doc | nil, problems: JSON syntax, then schema.
function M.check_text(text, file)
  local doc, err = json.decode(text)
  if doc == nil then
    return nil, { { file = file, path = "", message = err or "not a JSON document" } }
  end
  return doc, manifest.validate(doc, file)
end

-- check_dir(dir, opts) -> problems, doc, format. opts.files: also check the
-- "files" digests (a packed package); opts.sha256: the hash function (a
-- ctcli.base.filedigest memo the caller reads the same files through again);
-- opts.named_blobs: the blobs' content is not read (pack hashes it as it
-- archives it).
function M.check_dir(dir, opts)
  opts = opts or {}
  local sha256 = opts.sha256 or require("ctcli.base.filedigest").new()
  local problems = {}
  local file = "manifest.json"
  local doc, format
  if ct.fs.exists(dir .. "/manifest.json") then
    format = "manifest"
    local text, err = ct.fs.read(dir .. "/manifest.json")
    if not text then return { { file = file, path = "", message = err } } end
    local p
    doc, p = M.check_text(text, file)
    for _, x in ipairs(p) do problems[#problems + 1] = x end
  elseif package.is_legacy_dir(dir) then
    format = "legacy"
    file = "meta.json"
    local p
    doc, p = package.read_legacy(dir, opts.name or package.package_name(dir))
    for _, x in ipairs(p or {}) do problems[#problems + 1] = x end
  else
    return { { file = dir, path = "", message = "not a ctcli package (no manifest.json, no meta.json, no package/apps/)" } }
  end
  if type(doc) == "table" then
    check_images(problems, dir, file, doc, format, sha256, opts.named_blobs)
    if opts.files and format == "manifest" then check_files(problems, dir, file, doc.files, sha256) end
  end
  return problems, doc, format
end

-- format(problems) -> lines "file: json.path: message"
function M.format(problems)
  return manifest.format_problems(problems)
end

return M
