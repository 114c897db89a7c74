-- prune [--keep N]: removes the releases beyond the newest N (never the
-- current one), the writable layers no release names, and what of the
-- store nothing refers to (images, layers, blobs: ctcli.store.gc); prints
-- what it freed.
-- prune --backups [PATH...]: backup retention (per reason, ctcli.json), or
-- the named backups.
local ct = require("ct")
local backup = require("ctcli.store.backup")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local layers = require("ctcli.store.layers")
local release = require("ctcli.store.release")
local releases = require("ctcli.services.releases")
local rootconf = require("ctcli.store.rootconf")
local ui = require("ctcli.ui.console")

-- backups(ctx) -> true | nil, msg: `prune --backups`.
local function backups(ctx)
  local removed = {}
  if #ctx.args > 0 then
    -- Named: any listed backup, the Go tool's too, never one a kept
    -- release needs to roll back.
    local list = backup.list(ctx.paths)
    local protected = backup.protected(ctx.paths, list)
    local todo = {}
    for _, arg in ipairs(ctx.args) do
      local found
      for _, b in ipairs(list) do
        if b.path == arg or b.path:match("[^/]+$") == arg or ct.fs.realpath(arg) == b.path then
          found = b
        end
      end
      if not found then return nil, arg .. ": not a backup of this root (see 'ctcli list-releases')" end
      if protected[found.path] then
        return nil, string.format("%s: the newest backup of the kept release %s, which a rollback from an archive " ..
          "needs; prune that release first", arg, tostring(found.release))
      end
      todo[#todo + 1] = found
    end
    local j, jerr = journal.begin(ctx.paths, "prune", { backups = json.array(ctx.args) }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("prune") if not stepped then return nil, jwerr end end
    for _, b in ipairs(todo) do
      local ok, err = backup.remove(b)
      if not ok then j:finish() return nil, "cannot remove the backup " .. b.path .. ": " .. tostring(err) end
      removed[#removed + 1] = b
    end
    j:finish()
  else
    local conf, cerr = rootconf.load(ctx.paths)
    if not conf then return nil, cerr end
    local keep = rootconf.keep(conf)
    if ctx.opts.keep then
      for reason in pairs(keep) do keep[reason] = math.floor(ctx.opts.keep) end
    end
    local j, jerr = journal.begin(ctx.paths, "prune", { backups = true }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("prune") if not stepped then return nil, jwerr end end
    local res, err = backup.retain(ctx.paths, keep)
    j:finish()
    if not res then return nil, err end
    removed = res
  end
  local total = 0
  local out = json.array()
  for _, b in ipairs(removed) do
    total = total + (b.bytes or 0)
    out[#out + 1] = json.backup(b)
  end
  if ctx.json then
    json.print({ backups = out, bytes = total })
  elseif #out == 0 then
    ui.print("no backup to prune")
  else
    for _, b in ipairs(out) do
      ui.print("removed backup %s (%s%s)", b.path:match("[^/]+$"), b.reason ~= json.null and (b.reason .. ", ") or "",
        b.bytes ~= json.null and ui.bytes(b.bytes) or "size unknown")
    end
    ui.print("freed %s", ui.bytes(total))
  end
  return true
end

-- staged(ctx) -> true | nil, msg: `prune --staged`, the staged release and
-- the images only it used.
local function staged(ctx)
  local j, jerr = journal.begin(ctx.paths, "prune", { staged = true }, ctx.steps, ctx.report)
  if not j then return nil, jerr end
  do local stepped, jwerr = j:step("prune") if not stepped then return nil, jwerr end end
  local id, err = require("ctcli.services.staged").drop(ctx.paths)
  local _, freed = releases.prune(ctx.paths, math.huge)
  j:finish()
  if id == nil then return nil, err end
  local images = json.array()
  local total = 0
  for _, f in ipairs(type(freed) == "table" and freed or {}) do
    local app, digest = f.image:match("^(.-)@(.+)$")
    images[#images + 1] = { app = app or f.image, digest = digest or json.null, bytes = f.bytes }
    total = total + f.bytes
  end
  if ctx.json then
    json.print({ staged = id or json.null, images = images, bytes = total })
  elseif not id then
    ui.print("no staged release")
  else
    ui.print("removed the staged release %s", id)
    for _, im in ipairs(images) do
      ui.print("removed image %s (%s)", im.app .. (im.digest ~= json.null and ("@" .. im.digest) or ""), ui.bytes(im.bytes))
    end
  end
  return true
end

-- upper_sizes(paths) -> the apps' writable layers not mounted (prune may
-- remove those no release names): {app=, id=, dir=, bytes=}.
local function upper_sizes(paths)
  local out = {}
  for _, name in ipairs(ct.fs.dir(layers.uppers_root(paths)) or {}) do
    for _, id in ipairs(layers.uppers(paths, name)) do
      local dir = layers.upper_dir(paths, name, id)
      if not ct.fs.mounted(dir .. "/merged") then
        out[#out + 1] = { app = name, id = id, dir = dir, bytes = ct.fs.du(dir) or 0 }
      end
    end
  end
  return out
end

return {
  summary = "Remove old releases and the images, layers and blobs nothing uses",
  usage = "prune [--keep N] | prune --backups [--keep N] [BACKUP...] | prune --staged",
  description = "Keeps the newest N releases (default 3) and always the current one; then removes\n" ..
    "the writable layers no kept release names and the images, layers and blobs\n" ..
    "that no kept or staged release and no backup record refers to; backups are\n" ..
    "not touched.\n" ..
    "With --backups, only backups: of each reason (upgrade, manual, safety) the\n" ..
    "newest backups.keep.<reason> of ctcli.json (default 3; --keep N for all) stay,\n" ..
    "and always the newest backup of each kept release. The Go tool's backups are\n" ..
    "never pruned unless named: with BACKUP arguments (paths or names from\n" ..
    "list-releases) exactly those are removed.\n" ..
    "A staged release ('ctcli stage') is not a kept release: --keep does not count it\n" ..
    "and its images stay; --staged drops it (and the images only it used).",
  options = {
    { "--keep", arg = "N", type = "number", integer = true, help = "releases (or, with --backups, backups of each reason) to keep" },
    { "--backups", help = "prune backups instead of releases (the named ones, or by retention)" },
    { "--staged", help = "drop the staged release instead" },
  },
  needs_root = true, needs_lock = true,
  check = function(opts, args)
    if #args > 0 and not opts.backups then return nil, "'prune' takes BACKUP arguments only with --backups" end
    if opts.staged and (opts.backups or opts.keep) then return nil, "'prune --staged' takes no other option" end
    return true
  end,
  run = function(ctx)
    if ctx.opts.backups then return backups(ctx) end
    if ctx.opts.staged then return staged(ctx) end
    local keep = math.floor(ctx.opts.keep or 3)
    -- Every release must read before anything goes (releases.prune checks again).
    local list, lerr = release.list(ctx.paths)
    if not list then return nil, lerr end
    local j, jerr = journal.begin(ctx.paths, "prune", { keep = keep }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    do local stepped, jwerr = j:step("prune") if not stepped then return nil, jwerr end end
    local sizes = {}
    for _, rel in ipairs(list) do sizes[rel.id] = ct.fs.du(rel.dir) or 0 end
    local uppers = upper_sizes(ctx.paths)
    local removed, freed, gc = releases.prune(ctx.paths, keep)
    j:finish()
    if not removed then return nil, freed end
    local doc = { releases = json.array(), images = json.array(), layers = json.array(), blobs = json.array(),
      uppers = json.array(), bytes = 0 }
    local function add(kind, item)
      doc[kind][#doc[kind] + 1] = item
      doc.bytes = doc.bytes + item.bytes
    end
    for _, id in ipairs(removed) do add("releases", { id = id, bytes = sizes[id] or 0 }) end
    for _, u in ipairs(uppers) do
      if not ct.fs.exists(u.dir) then add("uppers", { app = u.app, id = u.id, bytes = u.bytes }) end
    end
    for _, f in ipairs(freed) do
      local app, digest = f.image:match("^(.-)@(.+)$")
      add("images", { app = app or f.image, digest = digest or json.null, bytes = f.bytes })
    end
    for _, l in ipairs(gc.layers) do
      local mapping, h = l.layer:match("^(.+)/(%x+)$")
      add("layers", { diff_id = "sha256:" .. h, mapping = mapping, bytes = l.bytes })
    end
    for _, b in ipairs(gc.blobs) do add("blobs", { digest = b.blob, bytes = b.bytes }) end
    -- Releases went; the store stays whole until every record reads.
    local gc_error = gc.error and string.format("%d release%s pruned, but not the layer store: %s",
      #doc.releases, #doc.releases == 1 and "" or "s", gc.error)
    if ctx.json then
      if gc_error then return nil, gc_error end
      json.print(doc)
      return true
    end
    for _, r in ipairs(doc.releases) do ui.print("removed release %s (%s)", r.id, ui.bytes(r.bytes)) end
    for _, u in ipairs(doc.uppers) do
      ui.print("removed the writable layer %s of %s (%s)", u.id, u.app, ui.bytes(u.bytes))
    end
    for _, im in ipairs(doc.images) do
      ui.print("removed image %s %s (%s)", im.app, im.digest ~= json.null and im.digest:sub(8, 19) or "", ui.bytes(im.bytes))
    end
    local function sum(items)
      local n = 0
      for _, x in ipairs(items) do n = n + x.bytes end
      return n
    end
    if #doc.layers > 0 then
      ui.print("removed %d layer%s (%s)", #doc.layers, #doc.layers == 1 and "" or "s", ui.bytes(sum(doc.layers)))
    end
    if #doc.blobs > 0 then
      ui.print("removed %d blob%s (%s)", #doc.blobs, #doc.blobs == 1 and "" or "s", ui.bytes(sum(doc.blobs)))
    end
    if #doc.releases + #doc.uppers + #doc.images + #doc.layers + #doc.blobs == 0 then
      ui.print("nothing to prune")
    else
      ui.print("freed %s", ui.bytes(doc.bytes))
    end
    if gc_error then return nil, gc_error end
    return true
  end,
}
