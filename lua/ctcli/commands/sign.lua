-- sign PKG --key KEY: adds manifest.sig, a detached ed25519 signature over
-- the exact bytes of manifest.json, and rewrites the package with both first.
local ct = require("ct")
local json = require("ctcli.base.json")
local pkgtool = require("ctcli.model.pkgtool")
local signing = require("ctcli.model.signing")
local ui = require("ctcli.ui.console")

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "it reports in prose; 'verify --json' shows the result",
  summary = "Sign a manifest package with a private key (adds manifest.sig)",
  usage = "sign PKG --key KEY [-o OUT]",
  description = "Signs the exact bytes of PKG's manifest.json and rewrites PKG (or writes\n" ..
    "OUT) with manifest.json and manifest.sig first, entries sorted, owner 0:0,\n" ..
    "mtimes from SOURCE_DATE_EPOCH, else the release time. An existing signature\n" ..
    "is replaced. The package must carry its files' digests (made by 'ctcli pack').",
  options = {
    { "--key", arg = "KEY", required = true, help = "the private key (from 'ctcli keygen')" },
    { "-o", "--output", arg = "OUT", help = "write the signed package here (default: replace PKG)" },
  },
  min_args = 1, max_args = 1,
  run = function(ctx)
    local file = ctx.args[1]
    local key = ctx.opts.key
    local dir, cleanup = pkgtool.extract(file)
    if not dir then return nil, cleanup end
    local text = ct.fs.read(dir .. "/" .. signing.MANIFEST)
    if not text then
      cleanup()
      return nil, file .. ": no manifest.json (a package in the original layout: convert it first with 'ctcli convert')"
    end
    local doc = json.decode(text)
    if type(doc) ~= "table" or type(doc.files) ~= "table" then
      cleanup()
      return nil, file .. ": manifest.json has no \"files\" digests; pack the package with 'ctcli pack'"
    end
    local ok, err = signing.check_files(dir, doc.files)
    if not ok then cleanup() return nil, file .. ": " .. err end
    local roots = {}
    for _, n in ipairs(ct.fs.dir(dir) or {}) do
      if n ~= signing.MANIFEST and n ~= signing.SIGNATURE then roots[#roots + 1] = n end
    end
    local format = pkgtool.compression(file)
    format = (format == "gzip" or format == "zstd") and format or "zstd"
    local out = ctx.opts.output or file
    ok, err = pkgtool.write(out, dir, text, roots, { key = key, format = format, mtime = pkgtool.mtime(doc) })
    cleanup()
    if not ok then return nil, err end
    ui.print("signed %s with %s", out, key)
    return true
  end,
}
