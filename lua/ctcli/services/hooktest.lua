-- `ctcli hook test`: one hook of one app, run in its real sandbox (hooks.lua,
-- the same child, cgroup, deadline and ctx an upgrade gives it), against a
-- copy of the app's config/, data/ and logs/ in the root's tmp/ that no
-- container runs on, or against the live dirs with writes refused. It
-- reports what the hook did: its ctx.log lines, the commands it ran, the
-- files it wrote, and, in the copy, every file that differs afterwards.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local hooks = require("ctcli.hooks.runner")
local json = require("ctcli.base.json")

local M = {}

local KINDS = { "config", "data", "logs" }

-- point_ok(point) -> true | nil, msg: a hook point, or migration:ID.
function M.point_ok(point)
  for _, p in ipairs(hooks.POINTS) do
    if p == point then return true end
  end
  if point:match("^migration:.+") then return true end
  return nil, string.format("unknown hook '%s' (known: %s, or migration:ID)", point, table.concat(hooks.POINTS, ", "))
end

local shallow = require("ctcli.base.tables").copy

-- snapshot(dir) -> {rel = "type mode uid gid sha"} of the tree at dir (our
-- copy: nothing else writes it while we read), symlinks not followed.
local function snapshot(dir, prefix, out)
  out = out or {}
  for _, name in ipairs(ct.fs.dir(dir) or {}) do
    local path, rel = dir .. "/" .. name, prefix .. "/" .. name
    local st = ct.fs.lstat(path)
    if st then
      local what = string.format("%s %o %d:%d", st.type, st.mode or 0, st.uid or 0, st.gid or 0)
      if st.type == "file" then what = what .. " " .. tostring(ct.hash.sha256_file(path))
      elseif st.type == "link" then what = what .. " " .. tostring(ct.fs.readlink(path)) end
      out[rel] = what
      if st.type == "dir" then snapshot(path, rel, out) end
    end
  end
  return out
end

local function changes(before, after)
  local out = {}
  for rel, v in pairs(after) do
    if before[rel] == nil then out[#out + 1] = { path = rel, change = "added" }
    elseif before[rel] ~= v then out[#out + 1] = { path = rel, change = "changed" } end
  end
  for rel in pairs(before) do
    if after[rel] == nil then out[#out + 1] = { path = rel, change = "removed" } end
  end
  table.sort(out, function(a, b) return a.path < b.path end)
  return out
end

-- copy_app(paths, name, work) -> copy paths | nil, msg: the app's three
-- dirs copied beneath work through descriptors (a link the app planted is
-- copied as a link, never followed), with their modes and owners.
local function copy_app(paths, name, work)
  local cp = shallow(paths)
  for _, kind in ipairs(KINDS) do
    local dst = work .. "/" .. kind
    local ok, err = ct.fs.mkdir(dst, 493)
    if not ok then return nil, err end
    cp[kind] = dst
    local d = ct.fs.opendir(paths[kind])
    if d and d:exists(name) then
      ok, err = d:copytree(name, dst .. "/" .. name)
      d:close()
      if not ok then return nil, "copying " .. kind .. "/" .. name .. ": " .. tostring(err) end
    elseif d then
      d:close()
    end
  end
  return cp
end

-- copy_bundle(rel, name, paths, cp, work) -> dir: the app's bundle with its
-- binds of config/, data/ and logs/ pointed at the copy, so a ctx.exec
-- (a temporary container) sees the copy too.
local function copy_bundle(rel, name, paths, cp, work)
  local text = ct.fs.read(rel.dir .. "/apps/" .. name .. "/config.json")
  local cfg = text and json.decode(text)
  if type(cfg) ~= "table" then return nil, "cannot read the bundle of " .. name end
  local real = ct.fs.realpath(paths.root) or paths.root
  for _, m in ipairs(type(cfg.mounts) == "table" and cfg.mounts or {}) do
    for _, kind in ipairs(KINDS) do
      for _, base in ipairs({ real .. "/" .. kind .. "/" .. name, paths[kind] .. "/" .. name }) do
        local src = type(m.source) == "string" and m.source or ""
        if src == base or src:sub(1, #base + 1) == base .. "/" then
          m.source = cp[kind] .. "/" .. name .. src:sub(#base + 1)
        end
      end
    end
  end
  local dir = work .. "/bundle/apps/" .. name
  local ok, err = ct.fs.mkdir(dir, 448, true)
  if not ok then return nil, err end
  ok, err = ct.fs.write_atomic(dir .. "/config.json", json.encode(cfg, true), 384)
  if not ok then return nil, err end
  return work .. "/bundle"
end

-- run(ctx, rel, name, point, opts) -> report | nil, msg. opts.live: the live
-- dirs, read-only. report = {app, hook, release, mode, ran, ok, error,
-- events = {{kind, ...}}, files = {{path, change}}}.
function M.run(ctx, rel, name, point, opts)
  local app = rel.by_name[name]
  if not app then
    return nil, string.format("release %s has no app '%s' (apps: %s)", rel.id, name, table.concat(rel.order, ", "))
  end
  local paths = ctx.paths
  local work, werr = ct.fs.mkdtemp(paths.tmp .. "/hook-test-XXXXXX")
  if not work then return nil, werr end
  -- Directories above the copy, as above a bundle: a user namespace's root
  -- must pass through them to reach the binds.
  ct.fs.chmod(work, 457)
  local report = {
    app = name, hook = point, release = rel.id, mode = opts.live and "live" or "copy",
    events = json.array(), files = json.array(),
  }
  local fired = {}
  local hc = apps.hooks_for(ctx, rel, { from = rel, to = rel, fired = fired })
  hc.print = nil
  local cp
  hc.trace = function(kind, what)
    local e = type(what) == "table" and what or { text = what }
    e.kind = kind
    -- A path in the copy is shown as the app's own (config/<app>/...).
    if cp and type(e.path) == "string" then
      for _, k in ipairs(KINDS) do
        local base = cp[k] .. "/"
        if e.path:sub(1, #base) == base then e.path = k .. "/" .. e.path:sub(#base + 1) end
      end
    end
    report.events[#report.events + 1] = e
  end
  local hpaths = shallow(paths)
  local before
  if opts.live then
    hc.read_only = true
  else
    local err
    cp, err = copy_app(paths, name, work)
    if not cp then ct.fs.rmtree(work) return nil, err end
    hpaths = cp
    -- Nothing runs on the copy: a ctx.exec gets a temporary container of
    -- the copy's bundle, never the live container.
    hc.running = {}
    hc.bundle_dir, err = copy_bundle(rel, name, paths, cp, work)
    if not hc.bundle_dir then ct.fs.rmtree(work) return nil, err end
    before = {}
    for _, kind in ipairs(KINDS) do snapshot(cp[kind] .. "/" .. name, kind .. "/" .. name, before) end
  end
  -- ctcli.log is the root's record of real runs: a test's lines stay out of it.
  hpaths.ctcli_log = work .. "/ctcli.log"
  hc.paths = hpaths
  local ok, err = hooks.run(hc, app, point)
  report.ok = ok and true or false
  report.error = err or json.null
  report.ran = #fired > 0
  if cp then
    local after = {}
    for _, kind in ipairs(KINDS) do snapshot(cp[kind] .. "/" .. name, kind .. "/" .. name, after) end
    for _, c in ipairs(changes(before, after)) do report.files[#report.files + 1] = c end
  end
  ct.fs.rmtree(work)
  if ok and not report.ran then
    report.ok = false
    report.error = string.format("no hook file of %s in release %s defines %s", name, rel.id, point)
  end
  return report
end

-- print(report, ui)
function M.print(report, ui)
  ui.print("hook test: %s %s of release %s, %s", report.app, report.hook, report.release,
    report.mode == "live" and "against the live dirs (writes refused)" or "against a copy of its config, data and logs")
  for _, e in ipairs(report.events) do
    if e.kind == "log" then
      ui.print("  log    %s", e.text)
    elseif e.kind == "run" or e.kind == "exec" then
      ui.print("  %-6s %s -> %s", e.kind, table.concat(e.argv, " "),
        e.code ~= json.null and e.code ~= nil and ("exit " .. tostring(e.code)) or tostring(e.error))
    elseif e.kind == "write" then
      ui.print("  write  %s (%d bytes)", e.path, e.bytes)
    end
  end
  if report.mode == "copy" then
    if #report.files == 0 then ui.print("files  none changed in the copy") end
    for _, f in ipairs(report.files) do ui.print("files  %-7s %s", f.change, f.path) end
  end
  if report.ok then ui.print("ok") end
end

return M
