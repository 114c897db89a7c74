-- diff APP: what the app changed in its rootfs against its image, as
-- `docker diff` prints it (ctcli.store.diff reads the app's tree without ever
-- following a link it planted).
local common = require("ctcli.services.common")
local diff = require("ctcli.store.diff")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")

local HOW = {
  overlay = "its writable layer",
  copy = "its own copy of the image (no overlayfs)",
  flat = "its rootfs unpacked before the layer store",
}

return {
  summary = "List what an app changed in its rootfs: added, changed, deleted paths",
  usage = "diff APP",
  description = "Prints one line per path the app changed against its image, as docker diff:\n" ..
    "A added, C changed, D deleted (a deleted directory is one line). Configs and\n" ..
    "data (config/<app>, data/<app>) are not part of the rootfs and not listed.\n" ..
    "'ctcli reset APP' drops these changes.",
  min_args = 1, max_args = 1,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "diff")
    if not rel then return nil, err end
    local app = rel.by_name[ctx.args[1]]
    if not app then
      return nil, string.format("no app '%s' in release %s", ctx.args[1], rel.id)
    end
    if not app.upper then
      -- A flat rootfs is compared with its layers applied in tmp/: only a
      -- holder of the root's lock writes there.
      local lock, lerr = require("ctcli.base.root").lock(ctx.paths, "diff")
      if not lock then return nil, lerr end
      ctx.lock = lock
    end
    local changes, how = diff.of_app(ctx.paths, app, diff.mounts_of(rel.dir .. "/apps/" .. app.name))
    if not changes then return nil, how end
    local list = diff.list(changes)
    if ctx.json then
      local doc = { app = app.name, digest = app.image.digest, storage = how, changes = list }
      json.print(doc)
      return true
    end
    for _, c in ipairs(list) do ui.print("%s %s", c.kind, c.path) end
    if ctx.verbose or #list == 0 then
      io.stderr:write(string.format("%s: %d change%s in %s\n", app.name, #list, #list == 1 and "" or "s", HOW[how]))
    end
    return true
  end,
}
