-- reset APP: discards what the app changed in its rootfs: its writable
-- layer (uppers/<app>/<id>) is swapped for an empty one (or, without
-- overlayfs, a fresh copy of its image); an image unpacked before the layer
-- store (a flat rootfs) is unpacked again from images/<key>/oci/. Its
-- configs and data are untouched. A running app is stopped and started again.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local common = require("ctcli.services.common")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local runtools = require("ctcli.runtime.tools")
local runtime = require("ctcli.runtime.runc")
local store = require("ctcli.store.images")
local tempdir = require("ctcli.base.tempdir")
local ui = require("ctcli.ui.console")
local userns = require("ctcli.runtime.userns")

-- fresh_upper(ctx, app) -> spare, swap | nil, msg: the layer-store way. A
-- fresh upper is made beside the old one (while the app runs); swap()
-- exchanges it with the app's in one rename once the app is stopped.
local function fresh_upper(ctx, app)
  local uc, uerr = userns.context(ctx.paths)
  if not uc then return nil, uerr end
  local name = string.format(".reset-%d-%d", ct.proc.getpid(), ct.time.now() // 1)
  local spare = tempdir.of(layers.upper_dir(ctx.paths, app.name, name))
  local ok, err = store.ensure_upper(ctx.paths, app, name, userns.desired(app, uc.conf, uc.range))
  if not ok then
    spare:remove()
    return nil, "cannot make a fresh writable layer for " .. app.name .. ": " .. tostring(err)
  end
  return spare, function()
    -- Stopped now: nothing has it mounted (a leftover mount goes too).
    local sok, serr = runtime.unmount(ctx.paths, app)
    if sok then sok, serr = ct.fs.exchange(spare.path, layers.upper_dir(ctx.paths, app.name, app.upper)) end
    if not sok then return nil, "cannot swap the writable layer of " .. app.name .. ": " .. tostring(serr) end
    return true
  end
end

-- remove_devices(root) -> true | nil, msg: unlinks every character and
-- block device node beneath root (walked beneath a Dir: no symlink
-- followed, no mount entered).
local function remove_devices(root)
  local d, err = ct.fs.opendir(root)
  if not d then return nil, err end
  local list, ok
  list, err = d:walk("")
  ok = list ~= nil
  for _, e in ipairs(list or {}) do
    if e.type == "char" or e.type == "block" then
      ok, err = d:unlink(e.path)
      if not ok then break end
    end
  end
  d:close()
  if not ok then return nil, err end
  return true
end

-- fresh_rootfs(ctx, app, dir, tools) -> spare, swap | nil, msg: an image
-- unpacked before the layer store: unpacked again from images/<key>/oci/
-- into a temp dir, whose rootfs swap() exchanges with the app's.
local function fresh_rootfs(ctx, app, dir, tools)
  local tmp, terr = tempdir.make(ctx.paths.tmp .. "/reset-" .. app.name .. "-XXXXXX")
  if not tmp then return nil, terr end
  local function fail(msg)
    tmp:remove()
    return nil, msg
  end
  -- Unpacked with the mapping the app is to run with, recorded at the swap.
  local uc, uerr = userns.context(ctx.paths)
  if not uc then return fail(uerr) end
  local idmap = userns.desired(app, uc.conf, uc.range)
  -- umoci splits --image at the first ':', and the store's key has one
  -- (sha256:...): name the layout relative to its directory.
  local argv = { tools.umoci, "unpack" }
  for _, a in ipairs(userns.umoci_args(idmap)) do argv[#argv + 1] = a end
  for _, a in ipairs({ "--image", "oci:" .. app.image.ref, tmp.path .. "/bundle" }) do argv[#argv + 1] = a end
  local r, rerr = ct.proc.run(argv, { timeout = 3600, cwd = dir })
  if not r or r.code ~= 0 then
    local msg = r and (r.stderr:match("([^\n]+)%s*$") or r.stdout) or tostring(rerr)
    return fail(string.format("unpacking the image of %s again failed: %s", app.name, msg))
  end
  -- As at install (store.lua): no device node from a layer reaches images/.
  local removed, derr = remove_devices(tmp.path .. "/bundle/rootfs")
  if not removed then
    return fail(string.format("unpacking the image of %s again failed: %s", app.name, derr))
  end
  return tmp, function()
    local ok, xerr = ct.fs.exchange(tmp.path .. "/bundle/rootfs", dir .. "/rootfs")
    if not ok then return nil, "cannot swap the rootfs of " .. app.name .. ": " .. tostring(xerr) end
    ct.fs.write_atomic(dir .. "/idmap", userns.image_idmap_text(idmap), 420)
    return true
  end
end

-- reset(ctx, rel, app, prepare) -> whether the app ran (and runs again) |
-- nil, msg. What takes the place of the app's changes is made first, while
-- it runs (prepare -> spare, swap: nothing stops until it is there); then
-- the app is stopped, swap() puts it in place, the spare (holding what the
-- app had changed now) goes before the app starts again. A failure puts the
-- app back as it was and the spare goes with the scope.
local function reset(ctx, rel, app, prepare)
  local states, lerr = apps.states(ctx, rel)
  if not states then return nil, lerr end
  local was_running = runtime.running(states[app.name])
  local j <close>, jerr = journal.begin(ctx.paths, "reset", {
    app = app.name, stopped = json.array(was_running and { app.name } or {}),
  }, ctx.steps, ctx.report)
  if not j then return nil, jerr end
  j:step("unpack")
  local spare <close>, swap = prepare()
  if not spare then return nil, swap end
  local hc = apps.hooks_for(ctx, rel)
  if was_running then
    j:step("stop")
    local ok, e = apps.stop(ctx, rel, { app }, { hooks = hc })
    if not ok then return nil, e end
  end
  j:step("swap")
  local ok, err = swap()
  if not ok then
    if was_running then apps.start(ctx, rel, { app }, { hooks = hc }) end
    return nil, err
  end
  spare:remove()
  if was_running then
    j:step("start")
    local started, serr = apps.start(ctx, rel, { app }, { hooks = hc, health = true })
    if not started then return nil, serr end
  end
  j:finish()
  return was_running
end

return {
  summary = "Restore an app's rootfs to its image (configs and data untouched)",
  usage = "reset [-y] APP",
  description = "Swaps the app's writable layer for an empty one (an image unpacked by an\n" ..
    "older ctcli: unpacks it again and swaps it in for the rootfs it changed);\n" ..
    "config/<app> and data/<app> stay as they are. Asks first (-y answers yes).",
  min_args = 1, max_args = 1,
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "reset")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local app = list[1]
    local prepare
    if app.upper then
      prepare = function() return fresh_upper(ctx, app) end
    else
      local dir = store.dir(ctx.paths, app.name, app.image.digest)
      if not ct.fs.exists(dir .. "/oci/index.json") then
        return nil, string.format("the store keeps no image of %s (%s was unpacked by an older ctcli); " ..
          "upgrade to a package holding it to reset it", app.name, store.key(app.name, app.image.digest))
      end
      local tools = runtools.of(rel)
      if not tools.umoci then return nil, "umoci not found: install it or ship it in the package" end
      prepare = function() return fresh_rootfs(ctx, app, dir, tools) end
    end
    local yes, why, code = ui.ask(ctx, string.format(
      "Reset %s: discard every change to its rootfs (configs and data stay)?", app.name), "reset")
    if not yes then return nil, why, code end
    local restarted, rerr = reset(ctx, rel, app, prepare)
    if restarted == nil then return nil, rerr end
    if ctx.json then
      json.print({ reset = app.name, restarted = restarted })
    else
      ui.print("reset %s to its image %s%s", app.name, app.image.digest:sub(8, 19),
        restarted and "; restarted it" or "")
    end
    return true
  end,
}
