-- Staged releases: releases/staged/<id>/ is a release built completely
-- while the current one runs (`ctcli stage PKG`), apart from the kept
-- releases, with staged.json saying what it was staged against and from
-- which package. `upgrade --staged` (or `upgrade PKG` of the staged
-- package) then only backs up the changed apps' data, stops, swaps,
-- migrates and starts.
--
-- Staging holds its own lock (releases/staged/.lock), works in its own
-- directory (releases/staged/.work-XXXXXX/: tmp/ for the package and the
-- unpacks, rel/ for the release being built, wanted.json for the images it
-- needs) and takes the root's lock only to place an image in the store and
-- to register the release. At most one release is staged: a new stage
-- replaces it when it registers.
local ct = require("ct")
local lockfile = require("ctcli.base.lock")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local bundle = require("ctcli.runtime.bundle")
local store = require("ctcli.store.images")
local tempdir = require("ctcli.base.tempdir")
local clock = require("ctcli.base.clock")

local M = {}

M.RECORD = "staged.json"
-- How long staging waits for the root's lock (a long upgrade may hold it).
local ROOT_WAIT = 86400

function M.dir(paths)
  return paths.releases .. "/staged"
end

local function lock_path(paths)
  return M.dir(paths) .. "/.lock"
end

-- lock(paths, wait) -> the staging lock | nil, msg naming the holder.
function M.lock(paths, wait)
  local ok, err = ct.fs.mkdir(M.dir(paths), 448, true)
  if not ok then return nil, "cannot create " .. M.dir(paths) .. ": " .. tostring(err) end
  local info = string.format("pid=%d command=stage since=%s\n", ct.proc.getpid(), clock.iso())
  local lock, lerr, _, holder = lockfile.acquire(lock_path(paths), info, wait)
  if lock then return lock end
  if holder then
    return nil, string.format("another 'ctcli stage' is running (pid %s, since %s); wait for it or retry with --wait",
      holder:match("pid=(%d+)") or "?", holder:match("since=(%S+)") or "?")
  end
  return nil, "cannot lock " .. lock_path(paths) .. ": " .. tostring(lerr)
end

-- with_root_lock(paths, fn, ...) -> fn's results, run while holding the root's lock.
function M.with_root_lock(paths, fn, ...)
  local lock, err = require("ctcli.base.root").lock(paths, "stage", ROOT_WAIT)
  if not lock then return nil, err end
  local res = table.pack(pcall(fn, ...))
  lock:release()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

local function work_dirs(paths)
  local out = {}
  for _, n in ipairs(ct.fs.dir(M.dir(paths)) or {}) do
    if n:match("^%.work%-") then out[#out + 1] = M.dir(paths) .. "/" .. n end
  end
  return out
end

-- clean_work(paths [, held]) -> true when no stage runs (its half-made work
-- removed), false when one does. held: the caller holds the staging lock.
function M.clean_work(paths, held)
  if not ct.fs.exists(M.dir(paths)) then return true end
  local lock
  if not held then
    lock = ct.lock.acquire(lock_path(paths), string.format("pid=%d command=clean\n", ct.proc.getpid()))
    if not lock then return false end
  end
  for _, d in ipairs(work_dirs(paths)) do ct.fs.rmtree(d) end
  if lock then lock:release() end
  return true
end

local function read_record(dir)
  local text = ct.fs.read(dir .. "/" .. M.RECORD)
  local rec = text and json.decode(text)
  if type(rec) ~= "table" or type(rec.against) ~= "string" or type(rec.package) ~= "table" then return nil end
  return rec
end

-- current(paths) -> the staged release {id=, dir=, against=, package=, staged=} | false (none) | nil, msg
function M.current(paths)
  local found
  for _, n in ipairs(ct.fs.dir(M.dir(paths)) or {}) do
    if release.is_id(n) and (not found or n > found) then found = n end
  end
  if not found then return false end
  local dir = M.dir(paths) .. "/" .. found
  local rec = read_record(dir)
  if not rec then
    return nil, string.format("%s/%s is missing or broken; drop the staged release with 'ctcli prune --staged'",
      dir, M.RECORD)
  end
  rec.id, rec.dir = found, dir
  return rec
end

local paths_in = require("ctcli.base.root").paths_in

-- load(paths, rec) -> the staged release (release.load's table, dir in releases/staged/) | nil, msg
function M.load(paths, rec)
  return release.load(paths_in(paths, M.dir(paths)), rec.id)
end

-- image_keys(paths) -> set of the image keys a staged release, or a stage
-- under way, needs: prune never removes them. A half-made stage nobody
-- runs any more is cleaned here (its images are then unreferenced).
function M.image_keys(paths)
  local keys = {}
  local rec = M.current(paths)
  local rel = rec and M.load(paths, rec)
  for _, app in ipairs(rel and rel.apps or {}) do keys[store.key(app.name, app.image.digest)] = true end
  if not M.clean_work(paths) then
    for _, d in ipairs(work_dirs(paths)) do
      local wanted = json.decode(ct.fs.read(d .. "/wanted.json") or "null")
      for _, k in ipairs(type(wanted) == "table" and wanted or {}) do keys[k] = true end
    end
  end
  return keys
end

-- drop(paths) -> the id dropped, or false when nothing was staged | nil, msg (root lock held).
function M.drop(paths)
  local rec, err = M.current(paths)
  if rec == nil then
    -- A broken record: the directory goes all the same.
    for _, n in ipairs(ct.fs.dir(M.dir(paths)) or {}) do
      if release.is_id(n) then ct.fs.rmtree(M.dir(paths) .. "/" .. n) end
    end
    M.clean_work(paths)
    return nil, err
  end
  M.clean_work(paths)
  if not rec then return false end
  local ok, rerr = ct.fs.rmtree(rec.dir)
  if not ok then return nil, "cannot remove " .. rec.dir .. ": " .. tostring(rerr) end
  ct.fs.fsync(M.dir(paths))
  return rec.id
end

-- same_package(file, want) -> whether file is the package want ({bytes=, sha256=}) describes.
local function same_package(file, want)
  local st = ct.fs.stat(file)
  if not st or st.size ~= want.bytes then return false end
  return ct.hash.sha256_file(file) == want.sha256
end

-- The package model of a staged release, as upgrade reads a package's:
-- its hook files and tools are in the release directory.
local function model_of(rel)
  local rt = {}
  if rel.runtime and rel.runtime.runc == "release" then rt.runc = "bin/runc" end
  if rel.runtime and rel.runtime.umoci == "release" then rt.umoci = "bin/umoci" end
  return { name = rel.name, version = rel.version, commit = rel.commit, time = rel.time, meta = rel.meta,
    apps = rel.apps, order = rel.order, levels = rel.levels, runtime = rt }
end

-- package(paths, rec) -> {dir=, release=, signer=, staged=} as 'plan' reads a package | nil, msg
function M.package(paths, rec)
  local rel, err = M.load(paths, rec)
  if not rel then return nil, err end
  return { dir = rec.dir, release = model_of(rel), signer = rel.signer, staged = rec, rel = rel }
end

-- unplace(paths, id): a cutover undone before its swap gives the release
-- back to releases/staged/ (it is still staged against the current one).
function M.unplace(paths, id)
  local from, to = release.dir(paths, id), M.dir(paths) .. "/" .. id
  if not ct.fs.exists(from) then return end
  if ct.fs.exists(to) or not read_record(from) or not ct.fs.rename(from, to) then
    ct.fs.rmtree(from)
  end
  ct.fs.fsync(paths.releases)
  ct.fs.fsync(M.dir(paths))
end

-- open(ctx, file, j, cur) -> a package table for upgrade built from the
-- staged release | false (nothing staged for this upgrade: open the
-- package as usual) | nil, msg.
function M.open(ctx, file, j, cur)
  local paths = ctx.paths
  local want = ctx.opts.staged
  local rec, err = M.current(paths)
  if rec == nil then return nil, err end
  if not rec then
    if want then
      return nil, string.format("nothing is staged in %s; run 'ctcli stage PKG' first", ctx.root)
    end
    return false
  end
  if file and not same_package(file, rec.package) then
    if not want then return false end
    return nil, string.format("%s is not the staged package (%s, staged as %s); run 'ctcli stage %s' first," ..
      " or 'ctcli upgrade %s' without --staged", file, tostring(rec.package.name), rec.id, file, file)
  end
  if rec.against ~= cur.id then
    return nil, string.format("the staged release %s was staged against %s, but the current release is %s now;" ..
      " re-stage: 'ctcli stage %s' (or drop it: 'ctcli prune --staged')", rec.id, rec.against, cur.id,
      file or tostring(rec.package.name))
  end
  local rel, lerr = M.load(paths, rec)
  if not rel then return nil, lerr .. "; re-stage, or drop it with 'ctcli prune --staged'" end
  for _, app in ipairs(rel.apps) do
    if not store.has(paths, app.name, app.image.digest) then
      return nil, string.format("the image of %s (%s) the staged release %s needs is no longer in the store;" ..
        " re-stage: 'ctcli stage PKG'", app.name, app.image.digest:sub(8, 19), rec.id)
    end
  end
  local ok, serr = j:step("extract")
  if not ok then return nil, serr end
  j:set("staged", rec.id)
  require("ctcli.base.report").of(ctx.report).step("using the staged release %s (nothing to extract or unpack)", rec.id)
  local pkg = {
    dir = rec.dir, release = model_of(rel), signer = rel.signer, file = file, staged = rec,
    cleanup = function() end,
  }
  -- build: the release is built already; the root's configuration may
  -- have changed since (ctcli.json), so each bundle is generated again
  -- (a few ms), then the release moves into releases/ by one rename.
  function pkg.build(_, _, jj)
    local stepped, step_err = jj:step("unpack")
    if not stepped then return nil, step_err end
    stepped, step_err = jj:step("stage")
    if not stepped then return nil, step_err end
    for _, app in ipairs(rel.apps) do
      local cfg, cerr = bundle.app_config(paths, app)
      if not cfg then return nil, cerr end
      local file_path = release.bundle_dir(rel, app.name) .. "/config.json"
      if ct.fs.read(file_path) ~= cfg then
        local wok, werr = ct.fs.write_atomic(file_path, cfg)
        if not wok then return nil, werr end
      end
    end
    jj:set("release", rec.id)
    stepped, step_err = jj:step("place")
    if not stepped then return nil, step_err end
    local placed, perr = ct.fs.rename(rec.dir, release.dir(paths, rec.id))
    if not placed then return nil, "cannot move the staged release into releases/: " .. tostring(perr) end
    ct.fs.fsync(M.dir(paths))
    ct.fs.fsync(paths.releases)
    return release.load(paths, rec.id)
  end
  function pkg.unplace(placed)
    M.unplace(paths, placed.id)
  end
  return tempdir.closing(pkg)
end

-- stage(ctx, file) -> the staged record | nil, msg. The steps (CTCLI_FAULT=stage:<step>
-- kills there, :fail fails there, :pause holds there) are commands/stage.lua's.
function M.stage(ctx, file)
  local paths = ctx.paths
  local deploy = require("ctcli.services.deploy")
  local hooks = require("ctcli.hooks.runner")
  local preview = require("ctcli.services.preview")
  local function step(name) return journal.fault("stage", name) end

  -- The staging lock and the work dir go on every return (and on an
  -- error): `<close>`. A kill leaves the work dir to clean_work.
  local lock <close>, lerr = M.lock(paths, ctx.wait)
  if not lock then return nil, lerr end
  -- What a killed stage left: nobody else works here while we hold the lock.
  M.clean_work(paths, true)
  local ok, err = step("prepare")
  if not ok then return nil, err end
  -- Under the root's lock, briefly: no interrupted command awaits recovery,
  -- the release to stage against, the root's id range (allocated once).
  local cur, cerr = M.with_root_lock(paths, function()
    if ct.fs.lstat(paths.journal) then
      return nil, "an interrupted command awaits recovery; run 'ctcli recover' first, then stage"
    end
    if require("ctcli.store.goroot").present(paths) then
      return nil, "this root was made by the Go ctcli; adopt it first ('ctcli adopt'), then stage"
    end
    local c, e = require("ctcli.services.common").current_or_fail(ctx, "stage")
    if not c then return nil, e end
    local uc, uerr = require("ctcli.runtime.userns").context(paths)
    if not uc then return nil, uerr end
    return c
  end)
  if not cur then return nil, cerr end

  local work_dir <close>, werr = tempdir.make(M.dir(paths) .. "/.work-XXXXXX")
  if not work_dir then return nil, "cannot create a staging directory: " .. tostring(werr) end
  local work = work_dir.path
  ct.fs.mkdir(work .. "/tmp", 448)
  ct.fs.mkdir(work .. "/rel", 448)
  -- The work's own tmp/ and releases/; images/ is the root's, each image
  -- placed under the root's lock (store.lua: paths.store_guard).
  local wpaths = paths_in(paths, work .. "/rel")
  -- the current release stays readable (its apps' writable layers are kept
  -- by the unchanged apps of the staged one)
  wpaths.base_releases = paths.releases
  wpaths.tmp = work .. "/tmp"
  wpaths.store_guard = function(fn) return M.with_root_lock(paths, fn) end
  local wctx = setmetatable({ paths = wpaths }, { __index = ctx })

  ok, err = step("extract")
  if not ok then return nil, err end
  local st = ct.fs.stat(file)
  local pkg, perr = require("ctcli.services.packages").open(wpaths, file, ctx.report)
  if not pkg then return nil, perr end
  local sum = ct.hash.sha256_file(file)
  -- The images this stage needs, before it looks at the store: a prune
  -- meanwhile keeps them (image_keys).
  local wanted = json.array()
  for _, app in ipairs(pkg.release.apps) do wanted[#wanted + 1] = store.key(app.name, app.image.digest) end
  ok, werr = ct.fs.write_atomic(work .. "/wanted.json", json.encode(wanted) .. "\n")
  if not ok then return nil, werr end
  -- A hook file that does not compile is found now, not in the maintenance window.
  for _, app in ipairs(pkg.release.apps) do
    local hok, herr = hooks.check(hooks.sources(paths, app, pkg.dir))
    if not hok then return nil, herr end
  end

  -- deploy.build's own steps (unpack, stage, place) are this command's too.
  local j = { step = function(_, name) return step(name) end, set = function() end }
  local rel, berr = deploy.build(wctx, pkg, j, cur.id)
  if not rel then return nil, berr end

  -- The checks of `plan`: against the current release as it runs now.
  ok, err = step("check")
  if not ok then return nil, err end
  local p = preview.build(ctx, pkg, cur)
  p.signature_text = pkg.signer and ("verified, signed by " .. pkg.signer) or nil
  local record = {
    id = rel.id, against = cur.id, staged = clock.iso(),
    package = { name = file:match("[^/]+$"), bytes = st and st.size or 0, sha256 = sum },
    signer = pkg.signer or json.null,
    changes = require("ctcli.services.plan").to_json(p.diff),
    disk = p.disk,
  }
  if not p.disk.enough then
    local text = require("ctcli.base.text")
    require("ctcli.base.report").of(ctx.report).warn(
      "the cutover needs about %s (its backup of the changed apps' data), %s free",
      text.bytes(p.disk.backup), text.bytes(p.disk.free ~= json.null and p.disk.free or 0))
  end
  pkg.cleanup()
  ok, werr = ct.fs.write_atomic(rel.dir .. "/" .. M.RECORD, json.encode(record, true) .. "\n")
  if not ok then return nil, werr end

  ok, err = step("register")
  if not ok then return nil, err end
  local registered, rerr = M.with_root_lock(paths, function()
    local now = release.current(paths)
    if not now or now.id ~= cur.id then
      return nil, string.format("the current release changed while staging (%s, now %s); run 'ctcli stage %s' again",
        cur.id, now and now.id or "none", file)
    end
    for _, app in ipairs(rel.apps) do
      if not store.has(paths, app.name, app.image.digest) then
        return nil, "the image of " .. app.name .. " was pruned while staging; run 'ctcli stage " .. file .. "' again"
      end
    end
    local old = M.current(paths)
    if old then ct.fs.rmtree(old.dir) end
    local moved, merr = ct.fs.rename(rel.dir, M.dir(paths) .. "/" .. rel.id)
    if not moved then return nil, "cannot register the staged release: " .. tostring(merr) end
    ct.fs.fsync(M.dir(paths))
    return old and old.id or true
  end)
  if not registered then return nil, rerr end
  ok, err = step("finish")
  if not ok then return nil, err end
  work_dir:remove()
  lock:release()
  record.dir = M.dir(paths) .. "/" .. rel.id
  record.replaced = type(registered) == "string" and registered or nil
  record.plan = p
  record.release = rel
  return record
end

return M
