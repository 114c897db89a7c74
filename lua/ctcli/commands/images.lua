-- images: the image store as containers-storage shows it: each unpacked
-- image with its app, digest, size and the kept releases that use it.
local ct = require("ct")
local json = require("ctcli.json")
local store = require("ctcli.store")
local ui = require("ctcli.ui")

return {
  summary = "List the unpacked images: app, digest, size, the releases using them",
  usage = "images",
  max_args = 0,
  needs_root = true,
  run = function(ctx)
    local users = store.users(ctx.paths)
    local cur = ct.fs.readlink(ctx.paths.current)
    local cur_id = cur and cur:match("([^/]+)$")
    local list = json.array()
    local total = 0
    for _, key in ipairs(ct.fs.dir(ctx.paths.images) or {}) do
      local app, digest = key:match("^(.-)@(.+)$")
      if app then
        local bytes = ct.fs.du(ctx.paths.images .. "/" .. key) or 0
        total = total + bytes
        local rels = users[key] or {}
        table.sort(rels, function(a, b) return a > b end)
        local in_current = false
        for _, id in ipairs(rels) do
          if id == cur_id then in_current = true end
        end
        list[#list + 1] = {
          app = app, digest = digest, bytes = bytes, releases = json.array(rels), current = in_current,
          reset = ct.fs.exists(ctx.paths.images .. "/" .. key .. "/oci/index.json"),
          layers = json.array(), -- the layer store's, per image (docs/schemas/images.schema.json)
        }
      end
    end
    if ctx.json then
      json.print({ images = list, bytes = total })
      return true
    end
    if #list == 0 then
      ui.print("no images in %s", ctx.root)
      return true
    end
    local rows = {}
    for _, im in ipairs(list) do
      local rels = #im.releases > 0 and table.concat(im.releases, ", ") or "(none: 'ctcli prune' removes it)"
      rows[#rows + 1] = { im.app, im.digest:sub(8, 19), ui.bytes(im.bytes), im.current and "yes" or "no", rels }
    end
    ui.table({ "APP", "DIGEST", "SIZE", "CURRENT", "RELEASES" }, rows)
    ui.print("%d image%s, %s", #list, #list == 1 and "" or "s", ui.bytes(total))
    return true
  end,
}
