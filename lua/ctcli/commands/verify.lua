-- verify PKG [--key PUB]: the signature, then every file against its digest.
local ct = require("ct")
local json = require("ctcli.base.json")
local signing = require("ctcli.model.signing")
local ui = require("ctcli.ui.console")

return {
  summary = "Check a package's signature and every file's digest",
  usage = "verify PKG [--key PUB]...",
  description = "Checks manifest.sig against the public key(s) given with --key (else the\n" ..
    "root's trusted-keys/*.pub), then every file of the package against its sha256\n" ..
    "in manifest.json \"files\": a changed, missing or unlisted file fails, named.\n" ..
    "Without any key the digests are checked and the signature is reported as not\n" ..
    "checked. Exit status 1 on any failure.",
  options = {
    { "--key", arg = "PUB", multiple = true, help = "a public key to check the signature against (repeatable)" },
  },
  min_args = 1, max_args = 1,
  run = function(ctx)
    local file = ctx.args[1]
    local keys, source = signing.keys_for(ctx.opts.key, ctx.root)
    if not keys then return nil, source end
    if not ct.fs.exists(file) then return nil, file .. ": no such package" end
    -- Streaming passes over the archive: nothing is extracted.
    local signed = false
    ct.archive.list(file, { stop = function(e)
      signed = e.type == "file" and e.name:gsub("^%./", "") == signing.SIGNATURE
      return signed
    end })
    local result = { package = file, signed = signed }
    local failure
    local key, err = signing.check_archive(file, keys)
    if not key then
      failure = err
    elseif key ~= true then
      result.signer = signing.label(key)
    end
    result.ok = failure == nil
    if ctx.json then
      -- "error" is the error document's alone (docs/json.md): what failed
      -- the check is its "problem".
      result.problem = failure or json.null
      result.signer = result.signer or json.null
      result.signature = result.signer ~= json.null and "verified" or
        (#keys == 0 and (result.signed and "not checked" or "unsigned")) or "failed"
      json.print(result)
      return failure and 1 or 0
    end
    if failure then return nil, file .. ": " .. failure end
    if result.signer then
      ui.print("%s: signature by %s verified; every file matches its digest", file, result.signer)
    else
      ui.print("%s: every file matches its digest; signature %s (no --key and no trusted keys)", file,
        result.signed and "not checked" or "absent")
    end
    return true
  end,
}
