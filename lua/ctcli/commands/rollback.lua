-- rollback [ARCHIVE | RELEASE-ID]: back to a kept release, or restore a backup.
local ct = require("ct")
local apps = require("ctcli.apps")
local backup = require("ctcli.backup")
local hooks = require("ctcli.hooks")
local json = require("ctcli.json")
local journal = require("ctcli.journal")
local release = require("ctcli.release")
local store = require("ctcli.store")
local ui = require("ctcli.ui")
local userns = require("ctcli.userns")

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

-- changed(a, b, name): whether the app differs between releases a and b.
local function changed(a, b, name)
  local x, y = a.by_name[name], b.by_name[name]
  if not x or not y or x.image.digest ~= y.image.digest then return true end
  return ct.fs.read(release.bundle_dir(a, name) .. "/config.json") ~=
    ct.fs.read(release.bundle_dir(b, name) .. "/config.json")
end

-- switch(ctx, cur, target, j) -> started names | nil, msg: stops what
-- differs, swaps, starts what ran before (unchanged apps keep running).
local function switch(ctx, cur, target, j, restore_files)
  local running = running_names(ctx, cur)
  local to_stop, to_start = {}, json.array()
  if not cur then
    for _, name in ipairs(target.order) do to_start[#to_start + 1] = name end
  end
  for _, name in ipairs(running) do
    if changed(cur, target, name) or restore_files then
      to_stop[#to_stop + 1] = cur.by_name[name]
      if target.by_name[name] then to_start[#to_start + 1] = name end
    end
  end
  local stopping = json.array()
  for _, app in ipairs(to_stop) do stopping[#stopping + 1] = app.name end
  j:set("release", target.id)
  j:set("stopped", stopping)
  j:set("restart", to_start)
  if cur then
    -- pre_rollback comes from the release being left, and may veto.
    local leaving = apps.hooks_for(ctx, cur, { from = cur, to = target })
    j:step("pre_rollback")
    for _, app in ipairs(to_stop) do
      local ok, err = hooks.run(leaving, app, "pre_rollback")
      if not ok then return nil, "pre_rollback of " .. app.name .. " refused the rollback: " .. err end
    end
    j:step("stop")
    local ok, err = apps.stop(ctx, cur, to_stop)
    if not ok then return nil, err end
  end
  if restore_files then
    j:step("restore-files")
    local ok, err = restore_files()
    if not ok then return nil, err end
  end
  j:step("swap")
  local swapped, swap_err = release.swap(ctx.paths, target.id)
  if not swapped then return nil, swap_err end
  j:step("start")
  local started, err = apps.start(ctx, target, apps.select(target, to_start), { health = true })
  if not started then return nil, err end
  local restored = apps.hooks_for(ctx, target, { from = cur, to = target })
  j:step("post_rollback")
  for _, name in ipairs(started) do
    local ok, herr = hooks.run(restored, target.by_name[name], "post_rollback")
    if not ok then return nil, "rolled back, but post_rollback of " .. name .. " failed: " .. herr end
  end
  return started
end

-- Moves dir aside (kept in tmp/ until the rollback is done, so recovery
-- can put it back) and puts the restored copy in its place. An app's own
-- tree (label "config.<app>", "data.<app>") is kept as tmp/old-<label>-*.
local function replace_dir(ctx, dir, restored, label)
  if not ct.fs.exists(restored) then return true end
  local old, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/old-" .. (label or dir:match("[^/]+$")) .. "-XXXXXX")
  if not old then return nil, err end
  if ct.fs.exists(dir) then
    local ok, rerr = ct.fs.rename(dir, old .. "/dir")
    if not ok then return nil, rerr end
  end
  local ok, rerr = ct.fs.rename(restored, dir)
  if not ok then
    ct.fs.rename(old .. "/dir", dir)
    return nil, rerr
  end
  return ct.fs.fsync(ctx.paths.root)
end

local function from_archive(ctx, cur, file, j)
  local dir, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/restore-XXXXXX")
  if not dir then return nil, err end
  local function fail(msg) ct.fs.rmtree(dir) return nil, msg end
  j:step("extract")
  local bar = ui.progress("restoring " .. file:match("[^/]+$"))
  local size = ct.fs.size(file) or 0
  -- A FIFO, socket or device the app made in its data holds nothing to
  -- restore: skipped with a warning, so it never blocks the way back.
  local stats, xerr = ct.archive.extract(file, dir, {
    preserve = true, check_space = true, skip_special = true,
    progress = function(_, read) bar:update(read, size) end,
  })
  bar:finish()
  if not stats then return fail(xerr) end
  for _, w in ipairs(stats.warnings or {}) do ui.warn("%s", w) end
  if not ct.fs.exists(dir .. "/backup-info.json") or not ct.fs.exists(dir .. "/current-release/release.json") then
    return fail(file .. ": not a backup of this ctcli (no backup-info.json and current-release/release.json);" ..
      " backups of the Go ctcli are listed but their restore is not supported yet")
  end
  -- Nothing leaves tmp/ before the whole backup is checked.
  local info, why = backup.check_restore(dir)
  if not info then return fail(file .. ": refused: " .. why) end
  local id = info.release
  j:set("release", id)
  j:step("place")
  local aok, aerr = userns.adopt_restored(ctx.paths, dir, info)
  if not aok then return fail(aerr) end
  for _, key in ipairs(ct.fs.dir(dir .. "/images") or {}) do
    if not ct.fs.exists(ctx.paths.images .. "/" .. key) then
      local ok, rerr = ct.fs.rename(dir .. "/images/" .. key, ctx.paths.images .. "/" .. key)
      if not ok then return fail(rerr) end
    end
  end
  if not ct.fs.exists(release.dir(ctx.paths, id)) then
    local ok, rerr = ct.fs.rename(dir .. "/current-release", release.dir(ctx.paths, id))
    if not ok then return fail(rerr) end
  end
  local target, lerr = release.load(ctx.paths, id)
  if not target then return fail(lerr) end
  for _, app in ipairs(target.apps) do
    if not store.has(ctx.paths, app.name, app.image.digest) then
      return fail(string.format("%s: the backup lacks the image of %s", file, app.name))
    end
    -- The bundle names the root's paths: regenerate it for this root.
    local cfg, cerr = release.app_config(ctx.paths, app)
    if not cfg then return fail(cerr) end
    ct.fs.write_atomic(release.bundle_dir(target, app.name) .. "/config.json", cfg)
  end
  local started, serr = switch(ctx, cur, target, j, function()
    -- A backup of some apps (an upgrade's, "only") restores theirs alone.
    local kinds = { "config" }
    if info.data then kinds[2] = "data" end
    for _, kind in ipairs(kinds) do
      for _, name in ipairs(info.only or { false }) do
        local live, saved, label = ctx.paths[kind], dir .. "/" .. kind, nil
        if name then live, saved, label = live .. "/" .. name, saved .. "/" .. name, kind .. "." .. name end
        local ok, rerr = replace_dir(ctx, live, saved, label)
        if not ok then return ok, rerr end
      end
    end
    return true
  end)
  ct.fs.rmtree(dir)
  -- What the restore replaced goes only now that the rollback is complete.
  for _, t in ipairs(ct.fs.dir(ctx.paths.tmp) or {}) do
    if t:match("^old%-") then ct.fs.rmtree(ctx.paths.tmp .. "/" .. t) end
  end
  if not started then return nil, serr end
  return target, started, info
end

return {
  summary = "Go back to the previous release, a kept release, or a backup archive",
  usage = "rollback [ARCHIVE | RELEASE-ID]",
  description = "With no argument, switches current-release back to the previous release.\n" ..
    "With a RELEASE-ID, to that kept release (configs and data stay as they are).\n" ..
    "With a backup ARCHIVE (see list-releases), restores its release, configs and,\n" ..
    "when the backup has them, data. Apps that were running run again afterwards.",
  max_args = 1,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=rollback:<step> kills ctcli there).
  steps = { "extract", "place", "pre_rollback", "stop", "restore-files", "swap", "start", "post_rollback", "finish" },
  run = function(ctx)
    local cur, cerr = release.current(ctx.paths)
    if cerr then return nil, cerr end
    local arg = ctx.args[1]
    local j, jerr = journal.begin(ctx.paths, "rollback", { from = cur and cur.id or json.null, target = arg })
    if not j then return nil, jerr end
    local target, started, info
    if arg and ct.fs.exists(arg) and not arg:match("^%d+T%d+Z%-%x+$") then
      target, started, info = from_archive(ctx, cur, arg, j)
      if not target then j:finish() return nil, started end
    else
      if not cur then
        j:finish()
        return nil, "no release is installed; give a backup archive to restore (see 'ctcli list-releases')"
      end
      local id = arg or cur.previous
      if not id then
        for _, r in ipairs(release.list(ctx.paths) or {}) do
          if r.id ~= cur.id then id = r.id break end
        end
      end
      if not id then j:finish() return nil, "there is no other kept release to roll back to" end
      if id == cur.id then j:finish() return nil, id .. " is already the current release" end
      local lerr
      target, lerr = release.load(ctx.paths, id)
      if not target then
        j:finish()
        return nil, string.format("no kept release %s (%s); see 'ctcli list-releases'", id, lerr)
      end
      local serr
      started, serr = switch(ctx, cur, target, j)
      if not started then j:finish() return nil, serr end
    end
    j:finish()
    if ctx.json then
      ui.print(json.encode({ release = target.id, from = cur and cur.id or json.null,
        started = json.array(started), data_restored = info and info.data or false }))
    else
      ui.print("rolled back to %s (%s %s)%s", target.id, target.name, target.version,
        info and (info.data and ", configs and data restored" or ", configs restored") or "")
      if #started > 0 then ui.print("started %s", table.concat(started, ", ")) end
    end
    return true
  end,
}
