-- rollback [ARCHIVE | RELEASE-ID]: back to a kept release, or restore a backup.
local ct = require("ct")
local appdiff = require("ctcli.model.appdiff")
local appfs = require("ctcli.runtime.appfs")
local apps = require("ctcli.services.apps")
local backup = require("ctcli.services.backup")
local hooks = require("ctcli.hooks.runner")
local goroot = require("ctcli.store.goroot")
local json = require("ctcli.base.json")
local journal = require("ctcli.journal.journal")
local manifest = require("ctcli.model.manifest")
local release = require("ctcli.store.release")
local releases = require("ctcli.services.releases")
local bundle = require("ctcli.runtime.bundle")
local store = require("ctcli.store.images")
local tempdir = require("ctcli.base.tempdir")
local ui = require("ctcli.ui.console")
local userns = require("ctcli.runtime.userns")
local clock = require("ctcli.base.clock")

-- running_names(ctx, rel) -> names of the apps of rel that run now
local function running_names(ctx, rel)
  if not rel then return {} end
  local states = apps.states(ctx, rel) or {}
  local out = {}
  for _, name in ipairs(rel.order) do
    local st = states[name]
    if st and (st.status == "running" or st.status == "paused") then out[#out + 1] = name end
  end
  return out
end

-- changed(a, b, name): whether the app differs between releases a and b
-- (the rule plan and upgrade use too).
local function changed(a, b, name)
  return not appdiff.between(a, b, name)
end

-- What a rollback set aside and changed, so a failure can undo it: the
-- config/ and data/ moved to tmp/old-*, whether current-release moved,
-- the release it placed from an archive.
local function new_undo() return { aside = {}, swapped = false } end

-- set_aside(ctx, undo, dir, restored): moves dir to tmp/old-<name>-*/dir
-- (where recovery looks for it after a kill) and the restored copy in.
local function set_aside(ctx, undo, dir, restored, label)
  if not ct.fs.exists(restored) then return true end
  -- An app's own tree (label "config.<app>", "data.<app>") is kept as
  -- tmp/old-<label>-*, which recovery knows.
  local old, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/old-" .. (label or dir:match("[^/]+$")) .. "-XXXXXX")
  if not old then return nil, err end
  local rec = { dir = dir, old = old .. "/dir", tmp = old, had = ct.fs.exists(dir) }
  if rec.had then
    local ok, rerr = ct.fs.rename(dir, rec.old)
    if not ok then ct.fs.rmtree(old) return nil, rerr end
  end
  undo.aside[#undo.aside + 1] = rec
  local ok, rerr = ct.fs.rename(restored, dir)
  if not ok then return nil, rerr end
  return ct.fs.fsync(ctx.paths.root)
end

-- put_back(ctx, undo) -> true | nil, msg: config/ and data/ exactly as they
-- were. Each is exchanged with what replaced it in one renameat2, so a kill
-- here leaves one or the other whole. On a failure tmp/old-* stays for
-- `ctcli recover`.
local function put_back(ctx, undo)
  for i = #undo.aside, 1, -1 do
    local rec = undo.aside[i]
    local ok, err = true, nil
    if rec.had and ct.fs.exists(rec.dir) then
      ok, err = ct.fs.exchange(rec.old, rec.dir)
    elseif rec.had then
      ok, err = ct.fs.rename(rec.old, rec.dir)
    elseif ct.fs.exists(rec.dir) then
      ok, err = ct.fs.rename(rec.dir, rec.old)
    end
    if not ok then return nil, "cannot put " .. rec.dir .. " back (kept in " .. rec.tmp .. "): " .. tostring(err) end
    ct.fs.rmtree(rec.tmp)
    undo.aside[i] = nil
  end
  return ct.fs.fsync(ctx.paths.root)
end

-- revert(ctx, cur, target, undo, plan) -> nil, msg: after a failure, the
-- root as it was before the rollback: the target's apps stopped,
-- current-release back, config/ and data/ put back, the apps that ran
-- started again. msg says what failed and what the way back did.
local function revert(ctx, cur, target, undo, plan, failure)
  local problems = {}
  if undo.swapped or undo.started then
    local ok, err = apps.stop(ctx, target, apps.select(target, plan.to_start))
    if not ok then problems[#problems + 1] = "stopping " .. target.id .. ": " .. tostring(err) end
  end
  -- the failure itself is the command's error line, said once at the end
  ctx.report.step("rollback failed; putting things back")
  if undo.swapped then
    local ok, err
    if cur then ok, err = release.swap(ctx.paths, cur.id) else ok, err = ct.fs.unlink(ctx.paths.current) end
    if not ok then problems[#problems + 1] = "switching back: " .. tostring(err) end
  end
  local ok, err = put_back(ctx, undo)
  if not ok then problems[#problems + 1] = err end
  if undo.placed and ok and #problems == 0 then
    ct.fs.rmtree(release.dir(ctx.paths, target.id))
    releases.prune(ctx.paths, math.huge)
  end
  if cur and #plan.stopped > 0 then
    local started, serr = apps.start(ctx, cur, apps.select(cur, plan.stopped))
    if not started then problems[#problems + 1] = "starting " .. table.concat(plan.stopped, ", ") .. ": " .. serr end
  end
  if #problems > 0 then
    return nil, failure .. "; putting things back had problems (run 'ctcli recover'): " .. table.concat(problems, "; ")
  end
  local what = #undo.put_back_names > 0 and (table.concat(undo.put_back_names, " and ") .. " put back, ") or ""
  return nil, failure .. "; nothing changed (" .. what .. (cur and ("still on " .. cur.id) or "no release") ..
    (#plan.stopped > 0 and (", " .. table.concat(plan.stopped, ", ") .. " running again") or "") .. ")"
end

-- switch(ctx, cur, target, j, opts) -> started names | nil, msg: stops what
-- differs, swaps, starts what ran before (unchanged apps keep running).
-- opts.safety() runs once the apps are stopped and opts.restore_files()
-- sets config/ and data/ aside; any failure from the stop on is reverted.
local function switch(ctx, cur, target, j, opts)
  opts = opts or {}
  local undo = opts.undo or new_undo()
  undo.put_back_names = {}
  local running = running_names(ctx, cur)
  local restore = opts.restore_files ~= nil
  local to_stop, to_start = {}, json.array()
  if not cur then
    for _, name in ipairs(target.order) do to_start[#to_start + 1] = name end
  end
  for _, name in ipairs(running) do
    if changed(cur, target, name) or restore then
      to_stop[#to_stop + 1] = cur.by_name[name]
      if target.by_name[name] then to_start[#to_start + 1] = name end
    end
  end
  local stopping = json.array()
  for _, app in ipairs(to_stop) do stopping[#stopping + 1] = app.name end
  local plan = { to_start = to_start, stopped = stopping }
  j:set("release", target.id)
  j:set("stopped", stopping)
  j:set("restart", to_start)
  local function fail(msg) return revert(ctx, cur, target, undo, plan, msg) end
  if cur then
    -- pre_rollback comes from the release being left, and may veto.
    local leaving = apps.hooks_for(ctx, cur, { from = cur, to = target })
    -- Nothing is stopped yet: a failure here only drops what was placed.
    local function refuse(msg)
      plan.stopped = {}
      return fail(msg)
    end
    local ok, err = j:step("pre_rollback")
    if not ok then return refuse(err) end
    for _, app in ipairs(to_stop) do
      ok, err = hooks.run(leaving, app, "pre_rollback")
      if not ok then return refuse("pre_rollback of " .. app.name .. " refused the rollback: " .. err) end
    end
    ok, err = j:step("stop")
    if not ok then return fail(err) end
    ok, err = apps.stop(ctx, cur, to_stop)
    if not ok then return fail(err) end
  end
  if opts.safety then
    local ok, err = j:step("safety-backup")
    if not ok then return fail(err) end
    ok, err = opts.safety()
    if not ok then return fail("the safety backup failed: " .. tostring(err)) end
  end
  if restore then
    local ok, err = j:step("restore-files")
    if not ok then return fail(err) end
    ok, err = opts.restore_files(undo)
    for _, rec in ipairs(undo.aside) do undo.put_back_names[#undo.put_back_names + 1] = rec.dir:match("[^/]+$") .. "/" end
    if not ok then return fail("restoring the files failed: " .. tostring(err)) end
  end
  local stepped, step_err = j:step("swap")
  if not stepped then return fail(step_err) end
  ctx.report.step("swapping to release %s", target.id)
  local swapped, swap_err = release.swap(ctx.paths, target.id)
  if not swapped then return fail("cannot switch current-release: " .. tostring(swap_err)) end
  undo.swapped = true
  stepped, step_err = j:step("start")
  if not stepped then return fail(step_err) end
  undo.started = true
  local started, err = apps.start(ctx, target, apps.select(target, to_start), { health = true })
  if not started then return fail(err) end
  local restored = apps.hooks_for(ctx, target, { from = cur, to = target })
  stepped, step_err = j:step("post_rollback")
  if not stepped then return fail(step_err) end
  for _, name in ipairs(started) do
    local ok, herr = hooks.run(restored, target.by_name[name], "post_rollback")
    if not ok then return fail("post_rollback of " .. name .. " failed: " .. herr) end
  end
  -- What the restore replaced goes only now that the rollback is complete.
  for _, rec in ipairs(undo.aside) do ct.fs.rmtree(rec.tmp) end
  return started
end

-- from_archive(ctx, cur, file, j) -> target, started, info, safety | nil,
-- msg: the backup extracted into tmp/restore-* (gone when this returns),
-- checked, its release placed, then switched to with its files restored.
local function from_archive(ctx, cur, file, j)
  local tmp <close>, err = tempdir.make(ctx.paths.tmp .. "/restore-XXXXXX")
  if not tmp then return nil, err end
  local dir = tmp.path
  local stepped, step_err = j:step("extract")
  if not stepped then return nil, step_err end
  ctx.report.step("restoring %s", file:match("[^/]+$"))
  local bar = ctx.report.bar("restoring", (ct.fs.stat(file) or {}).size or 0)
  -- A FIFO, socket or device the app made in its data holds nothing to
  -- restore: skipped with a warning, so it never blocks the way back.
  local stats, xerr = backup.extract(file, dir, function(_, read) bar.set(read) end)
  if stats then bar.done() else bar.stop() end
  if not stats then return nil, xerr end
  for _, w in ipairs(stats.warnings or {}) do ctx.report.warn("%s", w) end
  if not ct.fs.lstat(dir .. "/backup-info.json") and ct.fs.exists(dir .. "/current-release/release-info.json") then
    -- The Go ctcli's backup: made into one of ours here, in tmp/, then
    -- checked and restored as every backup is.
    local ok, gerr = goroot.convert_backup(dir, file)
    if not ok then return nil, gerr end
  end
  if not ct.fs.exists(dir .. "/backup-info.json") or not ct.fs.exists(dir .. "/current-release/release.json") then
    return nil, file .. ": not a backup of this ctcli (no backup-info.json and current-release/release.json)" ..
      " nor of the Go ctcli (no current-release/release-info.json)"
  end
  -- Nothing leaves tmp/ before the whole backup is checked.
  local info, why = backup.check_restore(dir)
  if not info then return nil, file .. ": refused: " .. why end
  local id = info.release
  j:set("release", id)
  stepped, step_err = j:step("place")
  if not stepped then return nil, step_err end
  local undo = new_undo()
  local aok, aerr = userns.adopt_restored(ctx.paths, dir, info)
  if not aok then return nil, aerr end
  -- Blobs, images and the apps' writable layers into the store (what it
  -- holds already stays); a flattened rootfs of an older backup as it can.
  local pok, perr = backup.place(ctx.paths, dir, info, id, ctx.report)
  if not pok then return nil, perr end
  if not ct.fs.exists(release.dir(ctx.paths, id)) then
    local ok, rerr = ct.fs.rename(dir .. "/current-release", release.dir(ctx.paths, id))
    if not ok then return nil, rerr end
    undo.placed = not (cur and cur.id == id)
  end
  local target, lerr = release.load(ctx.paths, id)
  if not target then return nil, lerr end
  for _, app in ipairs(target.apps) do
    if not store.has(ctx.paths, app.name, app.image.digest) then
      return nil, string.format("%s: the backup lacks the image of %s", file, app.name)
    end
    -- The same layers as where the backup was made, from its blobs: a
    -- delta package made against that release applies here too.
    local uc, uerr = userns.context(ctx.paths)
    if not uc then return nil, uerr end
    local cok, cerr0 = store.complete(ctx.paths, app, userns.desired(app, uc.conf, uc.range))
    if not cok then return nil, string.format("%s: the image of %s: %s", file, app.name, tostring(cerr0)) end
    -- The bundle names the root's paths: regenerate it for this root.
    local cfg, cerr = bundle.app_config(ctx.paths, app)
    if not cfg then return nil, cerr end
    ct.fs.write_atomic(release.bundle_dir(target, app.name) .. "/config.json", cfg)
  end
  local safety
  local started, serr = switch(ctx, cur, target, j, {
    undo = undo,
    -- What the restore replaces is kept first, as a backup like any other
    -- (its apps are stopped now: nothing to pause).
    safety = cur and function()
      local sinfo, berr = backup.create(ctx, cur, { data = true, reason = "safety", journal = j })
      safety = sinfo
      return sinfo, berr
    end,
    -- A backup of some apps (an upgrade's, "only") restores theirs alone.
    restore_files = function(u)
      local kinds = { "config" }
      if info.data then kinds[2] = "data" end
      for _, kind in ipairs(kinds) do
        for _, name in ipairs(info.only or { false }) do
          local live, saved, label = ctx.paths[kind], dir .. "/" .. kind, nil
          if name then live, saved, label = live .. "/" .. name, saved .. "/" .. name, kind .. "." .. name end
          local ok, rerr = set_aside(ctx, u, live, saved, label)
          if not ok then return ok, rerr end
        end
      end
      return true
    end,
  })
  if not started then return nil, serr end
  return target, started, info, safety
end

-- peek(ctx, file) -> backup-info of an archive | nil, msg: from the record
-- beside it when it is one of this root's, else read out of the archive.
local function peek(ctx, file)
  local side = ct.fs.read((file:gsub("%.tar%.%a+$", ".json")))
  local info = side and json.decode(side)
  if type(info) == "table" and info.format == backup.FORMAT and info.archive == file:match("[^/]+$") then
    return info
  end
  local tmp <close>, err = tempdir.make(ctx.paths.tmp .. "/peek-XXXXXX")
  if not tmp then return nil, err end
  local ok, xerr = ct.archive.extract(file, tmp.path, { only = { ["backup-info.json"] = true } })
  local text = ok and ct.fs.read(tmp.path .. "/backup-info.json")
  tmp:remove()
  if not ok then return nil, file .. ": " .. tostring(xerr) end
  info = text and json.decode(text)
  if type(info) ~= "table" then
    -- The Go ctcli's: its record lies beside the archive, whose first
    -- member is its current-release/.
    local first = ct.archive.list(file, { stop = function() return true end })
    local top = first and first[1] and first[1].name:gsub("^%./", ""):match("^([^/]+)")
    if goroot.record_of(file) or top == "current-release" then
      local g = goroot.summary(file, nil, { data = true })
      return { release = g.release, created = g.created, data = g.data == true, apps = g.apps, format = g.format }
    end
    return nil, file .. ": not a backup of this ctcli (no backup-info.json) nor of the Go ctcli" ..
      " (no current-release/ first, no backup-info.json beside it)"
  end
  return info
end

local function short(digest)
  return type(digest) == "string" and digest:gsub("^sha256:", ""):sub(1, 12) or "-"
end

local iso = clock.iso

-- show(ctx, cur, to): per app, what is there now (release, image, data
-- size, newest change) and what the rollback puts in its place.
local function show(ctx, cur, to)
  ui.print("rollback: %s -> %s%s", cur and string.format("%s (%s)", cur.id, ui.release_label(cur)) or "no release",
    tostring(to.id), to.archive and string.format(" from the backup %s taken %s", to.archive:match("[^/]+$"),
      tostring(to.created)) or "")
  local names, seen = {}, {}
  for _, n in ipairs(cur and cur.order or {}) do names[#names + 1] = n seen[n] = true end
  for n in pairs(to.apps or {}) do
    if not seen[n] then names[#names + 1] = n seen[n] = true end
  end
  table.sort(names)
  local rows, newer = {}, {}
  for _, n in ipairs(names) do
    local now = cur and cur.by_name[n]
    local after = to.apps[n]
    local bytes, mtime = 0, 0
    if manifest.valid_app_name(n) then bytes, mtime = appfs.usage(ctx.paths, n, "data") end
    local changed_at = mtime > 0 and iso(mtime) or "-"
    if to.archive and to.data and mtime > 0 and changed_at > tostring(to.created) then
      newer[#newer + 1] = n
      changed_at = changed_at .. " (after the backup)"
    end
    rows[#rows + 1] = { json.encode(n):sub(2, -2),
      now and (now.version .. " " .. short(now.image.digest)) or "-",
      after and (tostring(after.version) .. " " .. short(after.digest)) or "(removed)",
      ui.bytes(bytes), changed_at }
  end
  ui.table({ "APP", "NOW", "AFTER", "DATA", "DATA CHANGED" }, rows)
  if to.archive then
    ui.print("configs%s are replaced by the backup's; %s", to.data and " and data" or "",
      cur and "a safety backup of the current ones is taken first (see list-releases)" or
      "there is no current release to back up first")
    if #newer > 0 then
      ui.print("changed since the backup: %s (kept only in the safety backup)", table.concat(newer, ", "))
    end
  else
    ui.print("configs and data stay as they are; changed apps are restarted")
  end
end

-- choose(ctx, cur, arg) -> what the rollback goes to (as show prints it),
-- the kept release or nil, the archive or nil | nil, msg.
local function choose(ctx, cur, arg)
  local archive = arg and ct.fs.exists(arg) and not arg:match("^%d+T%d+Z%-%x+$") and arg or nil
  if archive then
    local info, perr = peek(ctx, archive)
    if not info then return nil, perr end
    return { id = info.release, created = info.created, data = info.data, archive = archive,
      apps = type(info.apps) == "table" and info.apps or {} }, nil, archive
  end
  if not cur then
    return nil, "no release is installed; give a backup archive to restore (see 'ctcli list-releases')"
  end
  local id = arg or cur.previous
  if not id then
    for _, r in ipairs(release.list(ctx.paths) or {}) do
      if r.id ~= cur.id then id = r.id break end
    end
  end
  if not id then return nil, "there is no other kept release to roll back to" end
  if id == cur.id then return nil, id .. " is already the current release" end
  local target, lerr = release.load(ctx.paths, id)
  if not target then
    return nil, string.format("no kept release %s (%s); see 'ctcli list-releases'", id, lerr)
  end
  local to = { id = target.id, apps = {} }
  for _, a in ipairs(target.apps) do to.apps[a.name] = { version = a.version, digest = a.image.digest } end
  return to, target
end

-- roll_back(ctx, cur, target, archive) -> { target, started, info, safety }
-- | nil, msg: the steps, under the journal (finished when this returns).
local function roll_back(ctx, cur, target, archive)
  local j <close>, jerr = journal.begin(ctx.paths, "rollback", { from = cur and cur.id or json.null,
    target = ctx.args[1] }, ctx.steps, ctx.report)
  if not j then return nil, jerr end
  local r = { target = target }
  if archive then
    local err
    r.target, err, r.info, r.safety = from_archive(ctx, cur, archive, j)
    if not r.target then return nil, err end
    r.started = err
  else
    local serr
    r.started, serr = switch(ctx, cur, target, j)
    if not r.started then return nil, serr end
  end
  local done, ferr = j:finish()
  if not done then return nil, "rolled back to " .. r.target.id .. ", but " .. ferr end
  return r
end

return {
  summary = "Go back to the previous release, a kept release, or a backup archive",
  usage = "rollback [ARCHIVE | RELEASE-ID]",
  description = "With no argument, switches current-release back to the previous release.\n" ..
    "With a RELEASE-ID, to that kept release (configs and data stay as they are).\n" ..
    "With a backup ARCHIVE (see list-releases), restores its release, configs and,\n" ..
    "when the backup has them, data, after a safety backup (reason \"safety\") of the\n" ..
    "configs and data it replaces. Apps that were running run again afterwards.\n" ..
    "It first shows, per app, the release, image, data size and newest data change\n" ..
    "it replaces, and asks (-y: do not ask; with no terminal and no -y it does\n" ..
    "nothing and exits 3). A failure part way puts everything back as it was.",
  max_args = 1,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=rollback:<step> kills ctcli there,
  -- rollback:<step>:fail makes the step fail).
  steps = { "extract", "place", "pre_rollback", "stop", "safety-backup", "restore-files", "swap", "start",
    "post_rollback", "finish" },
  run = function(ctx)
    local cur, cerr = release.current(ctx.paths)
    if cerr then return nil, cerr end
    local to, target, archive = choose(ctx, cur, ctx.args[1])
    if not to then return nil, target end
    if not ctx.json then show(ctx, cur, to) end
    local yes, why, code = ui.ask(ctx, "Proceed with the rollback?", "rollback")
    if not yes then return nil, why, code end
    local r, err = roll_back(ctx, cur, target, archive)
    if not r then return nil, err end
    local info, safety, started = r.info, r.safety, r.started
    if ctx.json then
      json.print({ release = json.release(r.target), from = json.release(cur),
        started = json.array(started), data_restored = info and info.data or false,
        safety_backup = safety and safety.path or json.null })
    else
      ui.print("rolled back to %s (%s)%s", r.target.id, ui.release_label(r.target),
        info and (info.data and ", configs and data restored" or ", configs restored") or "")
      if safety then ui.print("what it replaced is in the safety backup %s", safety.path) end
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
    end
    return true
  end,
}
