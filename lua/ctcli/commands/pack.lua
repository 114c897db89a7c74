-- pack DIR -o PKG: a reproducible package from a directory laid out as a
-- package's content (manifest.json and the paths it names).
local ct = require("ct")
local json = require("ctcli.json")
local lint = require("ctcli.lint")
local manifest = require("ctcli.manifest")
local package = require("ctcli.package")
local pkgtool = require("ctcli.pkgtool")
local ui = require("ctcli.ui")

-- base_images(file) -> {label=, digests={app=digest}} | nil, msg: what a base package holds.
local function base_images(file)
  local dir, cleanup = pkgtool.extract(file)
  if not dir then return nil, cleanup end
  local pkg, err = package.read_dir(dir, file:match("[^/]+$"))
  cleanup()
  if not pkg then return nil, "the base package: " .. err end
  if pkg.delta then return nil, file .. ": a delta package cannot be a base; use a full package" end
  local digests = {}
  for _, app in ipairs(pkg.release.apps) do digests[app.name] = app.image.digest end
  return { label = pkg.release.name .. " " .. pkg.release.version, digests = digests }
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
    "package: the image layouts of apps whose image OLD carries unchanged are left\n" ..
    "out and their digests recorded; upgrade takes them from the root's image store\n" ..
    "and refuses, naming the image, on a root that does not hold them.",
  options = {
    { "-o", "--output", arg = "PKG", required = true, help = "the package to write" },
    { "--sign", arg = "KEY", help = "sign with this private key (adds manifest.sig)" },
    { "--gzip", help = "gzip instead of zstd" },
    { "--base", arg = "OLD", help = "a delta: leave out the images OLD already carries (the root must hold them)" },
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
    local problems, doc = lint.check_dir(dir)
    if #problems > 0 then
      local lines = lint.format(problems)
      return nil, string.format("%s: %d problem%s, nothing packed:\n  %s", dir, #problems,
        #problems == 1 and "" or "s", table.concat(lines, "\n  "))
    end
    if ctx.opts.base then
      local base, berr = base_images(ctx.opts.base)
      if not base then return nil, berr end
      local images = json.object({})
      local n = 0
      for _, app in ipairs(doc.apps) do
        local img = package.image(dir, app.image, app.name)
        local layout_shared = false
        for _, other in ipairs(doc.apps) do
          if other ~= app and other.image.layout == app.image.layout and
            not (base.digests[other.name] and img and base.digests[other.name] == img.digest) then
            layout_shared = true
          end
        end
        if img and base.digests[app.name] == img.digest and not layout_shared then
          images[app.name] = img.digest
          app.image.digest = img.digest
          n = n + 1
        end
      end
      if n == 0 then
        return nil, "no app of " .. dir .. " has the same image in " .. ctx.opts.base .. "; a delta would be the full package"
      end
      doc[package.DELTA] = { base = base.label, images = images }
    end
    doc["$schema"] = doc["$schema"] or manifest.SCHEMA_URL
    local roots = pkgtool.named_paths(doc)
    local files, err = pkgtool.digests(dir, roots)
    if not files then return nil, err end
    doc.files = files
    local text = json.encode(doc, true) .. "\n"
    local ok, werr = pkgtool.write(out, dir, text, roots, {
      key = ctx.opts.sign, format = ctx.opts.gzip and "gzip" or "zstd", mtime = pkgtool.mtime(doc),
    })
    if not ok then return nil, werr end
    local n = 0
    for _ in pairs(files) do n = n + 1 end
    if ctx.json then
      json.print({ package = out, files = n, sha256 = ct.hash.sha256_file(out),
        signed = ctx.opts.sign ~= nil, delta = doc[package.DELTA] or json.null })
    else
      ui.print("packed %s: %d files, %s%s%s", out, n, ui.bytes(ct.fs.size(out) or 0),
        ctx.opts.sign and ", signed" or "", doc[package.DELTA] and ", delta" or "")
    end
    return true
  end,
}
