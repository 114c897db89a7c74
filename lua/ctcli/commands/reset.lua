-- reset APP: discards what the app changed in its rootfs by unpacking its
-- image again (from the layout the store keeps in images/<key>/oci/); its
-- configs and data are untouched. A running app is stopped and started again.
local ct = require("ct")
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local journal = require("ctcli.journal")
local json = require("ctcli.json")
local release = require("ctcli.release")
local runtime = require("ctcli.runtime")
local store = require("ctcli.store")
local ui = require("ctcli.ui")
local userns = require("ctcli.userns")

return {
  summary = "Restore an app's rootfs to its image (configs and data untouched)",
  usage = "reset [-y] APP",
  description = "Unpacks the app's image again and swaps it in for the rootfs it changed;\n" ..
    "config/<app> and data/<app> stay as they are. Asks first (-y answers yes).",
  min_args = 1, max_args = 1,
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "reset")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local app = list[1]
    local dir = store.dir(ctx.paths, app.name, app.image.digest)
    local layout = dir .. "/oci"
    if not ct.fs.exists(layout .. "/index.json") then
      return nil, string.format("the store keeps no image of %s (%s was unpacked by an older ctcli); " ..
        "upgrade to a package holding it to reset it", app.name, store.key(app.name, app.image.digest))
    end
    local tools = release.tools(rel)
    if not tools.umoci then return nil, "umoci not found: install it or ship it in the package" end
    local yes, why, code = ui.ask(ctx, string.format(
      "Reset %s: discard every change to its rootfs (configs and data stay)?", app.name), "reset")
    if not yes then return nil, why, code end
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local was_running = runtime.running(states[app.name])

    local j, jerr = journal.begin(ctx.paths, "reset", {
      app = app.name, stopped = json.array(was_running and { app.name } or {}),
    }, ctx.steps)
    if not j then return nil, jerr end
    local function fail(e, tmp)
      if tmp then ct.fs.rmtree(tmp) end
      j:finish()
      return nil, e
    end
    j:step("unpack")
    local tmp, terr = ct.fs.mkdtemp(ctx.paths.tmp .. "/reset-" .. app.name .. "-XXXXXX")
    if not tmp then return fail(terr) end
    -- umoci splits --image at the first ':', and the store's key has one
    -- (sha256:...): name the layout relative to its directory.
    -- Unpacked with the mapping the app is to run with, recorded at the swap.
    local uc, uerr = userns.context(ctx.paths)
    if not uc then return fail(uerr, tmp) end
    local idmap = userns.desired(app, uc.conf, uc.range)
    local argv = { tools.umoci, "unpack" }
    for _, a in ipairs(userns.umoci_args(idmap)) do argv[#argv + 1] = a end
    for _, a in ipairs({ "--image", "oci:" .. app.image.ref, tmp .. "/bundle" }) do argv[#argv + 1] = a end
    local r, rerr = ct.proc.run(argv, { timeout = 3600, cwd = dir })
    if not r or r.code ~= 0 then
      local msg = r and (r.stderr:match("([^\n]+)%s*$") or r.stdout) or tostring(rerr)
      return fail(string.format("unpacking the image of %s again failed: %s", app.name, msg), tmp)
    end
    -- As at install (store.lua): no device node from a layer reaches images/.
    local removed, derr = ct.fs.remove_devices(tmp .. "/bundle/rootfs")
    if not removed then
      return fail(string.format("unpacking the image of %s again failed: %s", app.name, derr), tmp)
    end
    local hc = apps.hooks_for(ctx, rel)
    if was_running then
      j:step("stop")
      local ok, e = apps.stop(ctx, rel, { app }, { hooks = hc })
      if not ok then return fail(e, tmp) end
    end
    j:step("swap")
    local ok, xerr = ct.fs.exchange(tmp .. "/bundle/rootfs", dir .. "/rootfs")
    if not ok then
      if was_running then apps.start(ctx, rel, { app }, { hooks = hc }) end
      return fail("cannot swap the rootfs of " .. app.name .. ": " .. tostring(xerr), tmp)
    end
    ct.fs.write_atomic(dir .. "/idmap", userns.image_idmap_text(idmap), 420)
    ct.fs.rmtree(tmp)
    local started
    if was_running then
      j:step("start")
      local serr2
      started, serr2 = apps.start(ctx, rel, { app }, { hooks = hc, health = true })
      if not started then return fail(serr2) end
    end
    j:finish()
    if ctx.json then
      json.print({ reset = app.name, restarted = was_running })
    else
      ui.print("reset %s to its image %s%s", app.name, app.image.digest:sub(8, 19),
        was_running and "; restarted it" or "")
    end
    return true
  end,
}
