-- images: the image store as containers-storage shows it: each image with
-- its layers, its size shared with other images and its own, and what
-- holds it (installed and staged releases, backups); --layers per layer;
-- --verify re-hashes the store (ctcli.store.verify).
local ct = require("ct")
local json = require("ctcli.base.json")
local storeinfo = require("ctcli.store.info")
local ui = require("ctcli.ui.console")


local function short(digest)
  return type(digest) == "string" and digest:sub(8, 19) or "-"
end

-- gather(paths) -> images (each with layers, bytes, shared, unique, held
-- by), layers (each with bytes and its images), totals.
local function gather(paths)
  local refs = storeinfo.references(paths) or { images = {} }
  local cur_id = storeinfo.current_id(paths)
  local all = storeinfo.layers(paths)
  local by_id = {}
  for _, l in ipairs(all) do
    l.bytes = l.dir and ct.fs.du(l.dir) or 0
    l.images = {}
    by_id[l.id] = l
  end
  local images = storeinfo.images(paths)
  for _, im in ipairs(images) do
    im.uses = {}
    for _, id in ipairs(storeinfo.uses(im, all)) do
      local l = by_id[id]
      if l then
        l.images[#l.images + 1] = im.key
        im.uses[#im.uses + 1] = l
      end
    end
  end
  local total = 0
  for _, l in ipairs(all) do total = total + l.bytes end
  for _, im in ipairs(images) do
    local r = refs.images[im.key] or { releases = {}, staged = {}, backups = {} }
    table.sort(r.releases, function(a, b) return a > b end)
    im.refs = r
    im.current = false
    for _, id in ipairs(r.releases) do if id == cur_id then im.current = true end end
    im.shared, im.unique = 0, 0
    if im.flat then
      im.unique = ct.fs.du(im.dir) or 0
      total = total + im.unique
    end
    for _, l in ipairs(im.uses) do
      if #l.images > 1 then im.shared = im.shared + l.bytes else im.unique = im.unique + l.bytes end
    end
    im.bytes = im.shared + im.unique
  end
  local blob_bytes = 0
  for _, b in ipairs(storeinfo.blobs(paths)) do blob_bytes = blob_bytes + b.bytes end
  return images, all, total, blob_bytes
end

local function held_by(im)
  local parts = {}
  for _, id in ipairs(im.refs.releases) do parts[#parts + 1] = id end
  for _, id in ipairs(im.refs.staged) do parts[#parts + 1] = "staged " .. id end
  local nb = #im.refs.backups
  if nb > 0 then parts[#parts + 1] = string.format("%d backup%s", nb, nb == 1 and "" or "s") end
  if #parts == 0 then return "(nothing: 'ctcli prune' removes it)" end
  return table.concat(parts, ", ")
end

local function image_doc(im)
  local ls = json.array()
  for _, l in ipairs(im.layers) do
    local found
    for _, u in ipairs(im.uses) do if u.hex == (l.diff_id or ""):match("^sha256:(%x+)$") then found = u end end
    ls[#ls + 1] = { digest = l.blob, diff_id = l.diff_id, bytes = found and found.bytes or json.null,
      mapping = im.mapping_name or json.null, shared = found and #found.images > 1 or false }
  end
  return {
    app = im.app, digest = im.digest, bytes = im.bytes, shared_bytes = im.shared, unique_bytes = im.unique,
    releases = json.array(im.refs.releases), staged = json.array(im.refs.staged),
    backups = json.array(im.refs.backups), current = im.current, flat = im.flat or false,
    reset = ct.fs.exists(im.dir .. "/oci/index.json"), layers = ls,
  }
end

local function layer_doc(l)
  return {
    diff_id = l.diff_id, mapping = l.mapping, digest = l.record and l.record.blob or json.null,
    bytes = l.bytes, extracted = l.dir ~= nil, images = json.array(l.images), shared = #l.images > 1,
  }
end

-- verify(ctx) -> exit status: 0 when everything matches, 1 naming each mismatch.
local function verify(ctx)
  local report = require("ctcli.store.verify").run(ctx.paths)
  local ok = #report.problems == 0
  if ctx.json then
    local problems = json.array()
    for _, p in ipairs(report.problems) do
      problems[#problems + 1] = { kind = p.kind, name = p.name, message = p.message,
        changes = p.changes and json.array(p.changes) or json.null }
    end
    local flat = json.array()
    for _, f in ipairs(report.flat) do
      flat[#flat + 1] = { image = f.image, changes = f.changes or json.null, error = f.error or json.null }
    end
    json.print({ ok = ok, blobs = report.blobs, layers = report.layers, problems = problems,
      notes = json.array(report.notes), flat = flat })
    return ok and 0 or 1
  end
  for _, p in ipairs(report.problems) do
    ui.print("%s %s: %s", p.kind, p.name, p.message)
    for _, c in ipairs(p.changes or {}) do ui.print("  %s %s", c.kind, c.path) end
  end
  for _, n in ipairs(report.notes) do ui.print("note: %s", n) end
  for _, f in ipairs(report.flat) do
    if f.error then
      ui.print("image %s (unpacked before the layer store): not compared: %s", f.image, f.error)
    elseif #f.changes == 0 then
      ui.print("image %s (unpacked before the layer store): its app changed nothing in it", f.image)
    else
      ui.print("image %s (unpacked before the layer store): its app changed %d path%s of its rootfs:", f.image,
        #f.changes, #f.changes == 1 and "" or "s")
      for _, c in ipairs(f.changes) do ui.print("  %s %s", c.kind, c.path) end
    end
  end
  ui.print("%s: %d blob%s and %d layer%s verified, %d problem%s", ok and "ok" or "FAILED",
    report.blobs, report.blobs == 1 and "" or "s", report.layers, report.layers == 1 and "" or "s",
    #report.problems, #report.problems == 1 and "" or "s")
  return ok and 0 or 1
end

return {
  summary = "List the images, their layers and sizes, and what holds them; verify the store",
  usage = "images [--layers | --verify]",
  description = "Each image with its layers, its size (shared: in layers other images use too;\n" ..
    "unique: only its own; each layer counts once in the total) and the releases\n" ..
    "(installed, staged) and backups that hold it. --layers lists the layers:\n" ..
    "diff id, id mapping, size, the images using it. --verify re-hashes every blob\n" ..
    "and every layer's tree and names each mismatch (exit 1); for an image\n" ..
    "unpacked before the layer store it also says what its app changed in it.",
  options = {
    { "--layers", help = "one line per layer instead of per image" },
    { "--verify", help = "re-hash every blob and layer; exit 1 on a mismatch" },
  },
  max_args = 0,
  needs_root = true,
  -- --verify extracts layers in tmp/ (a changed layer, an image from
  -- before the layer store): the root's lock.
  needs_lock = function(opts) return opts.verify and true or false end,
  check = function(opts)
    if opts.layers and opts.verify then return nil, "'images' takes --layers or --verify, not both" end
    return true
  end,
  run = function(ctx)
    if ctx.opts.verify then return verify(ctx) end
    local images, all, total, blob_bytes = gather(ctx.paths)
    if ctx.json then
      local doc = { images = json.array(), bytes = total, blob_bytes = blob_bytes }
      for _, im in ipairs(images) do doc.images[#doc.images + 1] = image_doc(im) end
      if ctx.opts.layers then
        doc.layers = json.array()
        for _, l in ipairs(all) do doc.layers[#doc.layers + 1] = layer_doc(l) end
      end
      json.print(doc)
      return true
    end
    if ctx.opts.layers then
      if #all == 0 then ui.print("no layers in %s", ctx.root) return true end
      local rows = {}
      for _, l in ipairs(all) do
        local names = {}
        for _, k in ipairs(l.images) do
          local app, d = k:match("^(.-)@(.+)$")
          names[#names + 1] = app .. "@" .. short(d)
        end
        rows[#rows + 1] = { short(l.diff_id), l.mapping, ui.bytes(l.bytes),
          #names > 0 and table.concat(names, ", ") or "(none: 'ctcli prune' removes it)" }
      end
      ui.table({ "DIFF ID", "MAPPING", "SIZE", "IMAGES" }, rows)
      ui.print("%d layer%s, %s", #all, #all == 1 and "" or "s", ui.bytes(total))
      return true
    end
    if #images == 0 then
      ui.print("no images in %s", ctx.root)
      return true
    end
    local rows = {}
    for _, im in ipairs(images) do
      rows[#rows + 1] = { im.app, short(im.digest), im.flat and "flat" or tostring(#im.layers),
        ui.bytes(im.bytes), ui.bytes(im.shared), ui.bytes(im.unique), im.current and "yes" or "no", held_by(im) }
    end
    ui.table({ "APP", "DIGEST", "LAYERS", "SIZE", "SHARED", "UNIQUE", "CURRENT", "HELD BY" }, rows)
    ui.print("%d image%s, %d layer%s: %s (each layer once); blobs %s", #images, #images == 1 and "" or "s",
      #all, #all == 1 and "" or "s", ui.bytes(total), ui.bytes(blob_bytes))
    return true
  end,
}
