-- prune [--keep N]: removes the releases beyond the newest N (never the
-- current one) and the images no kept release uses; prints what it freed.
local ct = require("ct")
local journal = require("ctcli.journal")
local json = require("ctcli.json")
local release = require("ctcli.release")
local ui = require("ctcli.ui")

return {
  summary = "Remove old releases and the images no kept release uses",
  usage = "prune [--keep N]",
  description = "Keeps the newest N releases (default 3) and always the current one, and every\n" ..
    "image a kept release uses; backups are not touched.",
  options = {
    { "--keep", arg = "N", type = "number", help = "releases to keep (default 3; the current one always stays)" },
  },
  max_args = 0,
  needs_root = true, needs_lock = true,
  run = function(ctx)
    local keep = math.floor(ctx.opts.keep or 3)
    -- Every release must read before anything goes (release.prune checks again).
    local list, lerr = release.list(ctx.paths)
    if not list then return nil, lerr end
    local j, jerr = journal.begin(ctx.paths, "prune", { keep = keep })
    if not j then return nil, jerr end
    j:step("prune")
    local sizes = {}
    for _, rel in ipairs(list) do sizes[rel.id] = ct.fs.du(rel.dir) or 0 end
    local removed, freed = release.prune(ctx.paths, keep)
    j:finish()
    if not removed then return nil, freed end
    local total = 0
    local rels = json.array()
    for _, id in ipairs(removed) do
      rels[#rels + 1] = { id = id, bytes = sizes[id] or 0 }
      total = total + (sizes[id] or 0)
    end
    local images = json.array()
    for _, f in ipairs(freed) do
      local app, digest = f.image:match("^(.-)@(.+)$")
      images[#images + 1] = { app = app or f.image, digest = digest or json.null, bytes = f.bytes }
      total = total + f.bytes
    end
    if ctx.json then
      ui.print(json.encode({ releases = rels, images = images, freed = total }, true))
      return true
    end
    for _, r in ipairs(rels) do ui.print("removed release %s (%s)", r.id, ui.bytes(r.bytes)) end
    for _, im in ipairs(images) do
      ui.print("removed image %s %s (%s)", im.app, im.digest ~= json.null and im.digest:sub(8, 19) or "", ui.bytes(im.bytes))
    end
    if #rels == 0 and #images == 0 then
      ui.print("nothing to prune")
    else
      ui.print("freed %s", ui.bytes(total))
    end
    return true
  end,
}
