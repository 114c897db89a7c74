-- convert LEGACY.tar.gz -o PKG: a package in the original layout (meta.json
-- + package/apps/*) into a manifest package with the same apps, images,
-- configs, data, logs folders, entrypoints and health checks.
local ct = require("ct")
local json = require("ctcli.base.json")
local lint = require("ctcli.services.lint")
local manifest = require("ctcli.model.manifest")
local package = require("ctcli.model.package")
local pkgtool = require("ctcli.model.pkgtool")
local ui = require("ctcli.ui.console")

return {
  summary = "Convert a package in the original layout into a manifest package",
  usage = "convert LEGACY.tar.gz -o PKG [--sign KEY] [--gzip]",
  description = "Reads meta.json and package/apps/<app>/{package-config.json, version.json,\n" ..
    "skopeo/} as install does, writes the equivalent manifest.json (the images stay\n" ..
    "where they are, at package/apps/<app>/skopeo, so nothing is rebuilt) and packs\n" ..
    "it as 'ctcli pack' does: files digests, manifest first, reproducible.",
  options = {
    { "-o", "--output", arg = "PKG", required = true, help = "the manifest package to write" },
    { "--sign", arg = "KEY", help = "sign with this private key" },
    { "--gzip", help = "gzip instead of zstd" },
  },
  min_args = 1, max_args = 1,
  run = function(ctx)
    local file, out = ctx.args[1], ctx.opts.output
    local dir, cleanup = pkgtool.extract(file)
    if not dir then return nil, cleanup end
    if ct.fs.exists(dir .. "/manifest.json") then
      cleanup()
      return nil, file .. ": already a manifest package; nothing to convert"
    end
    if not package.is_legacy_dir(dir) then
      cleanup()
      return nil, file .. ": not a ctcli package in the original layout (no meta.json, no package/apps/)"
    end
    local problems, doc = lint.check_dir(dir, { name = package.package_name(file) })
    if #problems > 0 or type(doc) ~= "table" then
      cleanup()
      return nil, string.format("%s: %d problem%s, nothing converted:\n  %s", file, #problems,
        #problems == 1 and "" or "s", table.concat(lint.format(problems), "\n  "))
    end
    doc["x-converted-from"] = file:match("[^/]+$")
    doc["$schema"] = manifest.SCHEMA_URL
    local roots = pkgtool.named_paths(doc)
    local files, err = pkgtool.digests(dir, roots)
    if not files then cleanup() return nil, err end
    doc.files = files
    local ok, werr = pkgtool.write(out, dir, json.encode(doc, true) .. "\n", roots, {
      key = ctx.opts.sign, format = ctx.opts.gzip and "gzip" or "zstd", mtime = pkgtool.mtime(doc),
    })
    cleanup()
    if not ok then return nil, werr end
    if ctx.json then
      json.print({ package = out, apps = #doc.apps, sha256 = ct.hash.sha256_file(out) })
    else
      ui.print("converted %s into %s (%d app%s)", file, out, #doc.apps, #doc.apps == 1 and "" or "s")
    end
    return true
  end,
}
