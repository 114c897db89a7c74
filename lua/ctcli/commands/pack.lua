-- pack DIR -o PKG: a reproducible package from a directory laid out as a
-- package's content (manifest.json and the paths it names).
local ct = require("ct")
local json = require("ctcli.base.json")
local lint = require("ctcli.services.lint")
local manifest = require("ctcli.model.manifest")
local package = require("ctcli.model.package")
local pkgtool = require("ctcli.model.pkgtool")
local ui = require("ctcli.ui.console")

-- base_blobs(file) -> {label=, blobs = set of digests} | nil, msg: every
-- blob (manifest, config, layer) the image layouts of a base package hold.
local function base_blobs(file)
  local dir, cleanup = pkgtool.extract(file)
  if not dir then return nil, cleanup end
  local pkg, err = package.read_dir(dir, file:match("[^/]+$"))
  if not pkg then cleanup() return nil, "the base package: " .. err end
  if pkg.delta then cleanup() return nil, file .. ": a delta package cannot be a base; use a full package" end
  local blobs = {}
  for _, app in ipairs(pkg.release.apps) do
    for _, h in ipairs(ct.fs.dir(dir .. "/" .. app.image.layout .. "/blobs/sha256") or {}) do
      blobs["sha256:" .. h] = true
    end
  end
  cleanup()
  return { label = pkg.release.name .. " " .. pkg.release.version, blobs = blobs }
end

-- copy_layout(src, dest, left) -> true | nil, msg: an OCI layout without
-- the blobs in left (hex -> true); blobs hard-linked where the filesystem
-- allows, modes as the source's (the archive records them).
local function copy_layout(src, dest, left)
  local function copy(from, to, rel)
    local st = ct.fs.lstat(from)
    if not st then return nil, from .. ": cannot be read" end
    if st.type == "dir" then
      local ok, err = ct.fs.mkdir(to, st.mode)
      if ok then ok, err = ct.fs.chmod(to, st.mode) end
      if not ok then return nil, err end
      for _, n in ipairs(ct.fs.dir(from) or {}) do
        local sub = rel == "" and n or (rel .. "/" .. n)
        if not (sub:match("^blobs/sha256/%x+$") and left[n]) then
          ok, err = copy(from .. "/" .. n, to .. "/" .. n, sub)
          if not ok then return nil, err end
        end
      end
      return true
    elseif st.type == "file" then
      if ct.fs.link(from, to) then return true end
      return ct.fs.copyfile(from, to, st.mode)
    end
    return nil, from .. ": not a file or directory in an image layout"
  end
  return copy(src, dest, "")
end

-- delta(dir, doc, base, stage) -> the delta record, sources | nil, msg: of
-- each image layout, the blobs the base has are left out: the layout is
-- packed from a copy in stage (hard links) without them.
local function delta(dir, doc, base, stage)
  local record = { base = base.label, images = json.object({}), blobs = json.object({}) }
  local sources, n = {}, 0
  local layouts, seen = {}, {}
  for _, app in ipairs(doc.apps) do
    local layout = app.image.layout:gsub("/+$", "")
    if not seen[layout] then seen[layout] = true layouts[#layouts + 1] = layout end
  end
  table.sort(layouts)
  for i, layout in ipairs(layouts) do
    local src = dir .. "/" .. layout
    local out = json.array()
    for _, h in ipairs(ct.fs.dir(src .. "/blobs/sha256") or {}) do
      if base.blobs["sha256:" .. h] then out[#out + 1] = "sha256:" .. h end
    end
    if #out > 0 then
      table.sort(out)
      n = n + #out
      record.blobs[layout] = out
      local left = {}
      for _, d in ipairs(out) do left[d:sub(8)] = true end
      local copy = stage .. "/" .. i
      local ok, err = copy_layout(src, copy, left)
      if not ok then return nil, err end
      sources[layout] = copy
    end
  end
  if n == 0 then return nil, "no blob of " .. dir .. "'s images is in the base; a delta would be the full package" end
  return record, sources
end

return {
  summary = "Pack a directory (manifest.json + the paths it names) into a package",
  usage = "pack DIR -o PKG [--sign KEY] [--gzip] [--base OLD.pkg]",
  description = "Validates DIR first and refuses on any problem. Writes into the packed\n" ..
    "manifest.json (DIR is not changed) the sha256 of every file it packs, and puts\n" ..
    "manifest.json (and manifest.sig with --sign) first. Reproducible: entries\n" ..
    "sorted, owner 0:0, mtimes from SOURCE_DATE_EPOCH, else the manifest's release\n" ..
    "time; packing the same directory twice gives byte-identical files. zstd by\n" ..
    "default, --gzip for the format the Go tool read. With --base OLD.pkg, a delta\n" ..
    "package: every blob of its images (layer, config, manifest) that OLD's images\n" ..
    "hold is left out and recorded; install and upgrade take them from the root's\n" ..
    "store (blobs/sha256/, whatever release brought them, checked against their\n" ..
    "digests) and refuse, naming the blob, on a root that does not hold them.",
  options = {
    { "-o", "--output", arg = "PKG", required = true, help = "the package to write" },
    { "--sign", arg = "KEY", help = "sign with this private key (adds manifest.sig)" },
    { "--gzip", help = "gzip instead of zstd" },
    { "--base", arg = "OLD", help = "a delta: leave out the blobs OLD already carries (the root's store must hold them)" },
  },
  min_args = 1, max_args = 1,
  run = function(ctx)
    local dir = ctx.args[1]:gsub("/+$", "")
    local out = ctx.opts.output
    local st = ct.fs.stat(dir)
    if not st or st.type ~= "dir" then return nil, dir .. ": not a directory" end
    if not ct.fs.exists(dir .. "/manifest.json") then
      return nil, dir .. ": no manifest.json (see docs/manifest.md)"
    end
    -- Each blob is read once: hashed as it is archived, against its name;
    -- other files through one digest memo (an inode several names share once).
    local sha256 = require("ctcli.base.filedigest").new()
    local problems, doc = lint.check_dir(dir, { named_blobs = true, sha256 = sha256 })
    if #problems > 0 then
      local lines = lint.format(problems)
      return nil, string.format("%s: %d problem%s, nothing packed:\n  %s", dir, #problems,
        #problems == 1 and "" or "s", table.concat(lines, "\n  "))
    end
    local sources, stage
    if ctx.opts.base then
      local base, berr = base_blobs(ctx.opts.base)
      if not base then return nil, berr end
      local serr
      stage, serr = ct.fs.mkdtemp(pkgtool.tmpbase() .. "/ctcli-delta-XXXXXX")
      if not stage then return nil, "cannot create a temporary directory: " .. tostring(serr) end
      local record
      record, sources = delta(dir, doc, base, stage)
      if not record then ct.fs.rmtree(stage) return nil, sources end
      doc[package.DELTA] = record
    end
    doc["$schema"] = doc["$schema"] or manifest.SCHEMA_URL
    local roots = pkgtool.named_paths(doc)
    local function done(...)
      if stage then ct.fs.rmtree(stage) end
      return ...
    end
    local files, err = pkgtool.digests(dir, roots, sources, sha256, true)
    if not files then return done(nil, err) end
    doc.files = files
    local text = json.encode(doc, true) .. "\n"
    local ok, werr = pkgtool.write(out, dir, text, roots, {
      key = ctx.opts.sign, format = ctx.opts.gzip and "gzip" or "zstd", mtime = pkgtool.mtime(doc),
      sources = sources, report = ctx.report, links = pkgtool.links(roots, files), check = files,
    })
    done()
    if not ok then return nil, werr end
    local n = 0
    for _ in pairs(files) do n = n + 1 end
    if ctx.json then
      json.print({ package = out, files = n, sha256 = ct.hash.sha256_file(out),
        signed = ctx.opts.sign ~= nil, delta = doc[package.DELTA] or json.null })
    else
      ui.print("packed %s: %d files, %s%s%s", out, n, ui.bytes((ct.fs.stat(out) or {}).size or 0),
        ctx.opts.sign and ", signed" or "", doc[package.DELTA] and ", delta" or "")
    end
    return true
  end,
}
