-- plan PKG: what 'upgrade PKG' would do, changing nothing. The package is
-- extracted outside the root; no lock is taken; the root stays byte-identical.
local ct = require("ct")
local json = require("ctcli.json")
local package = require("ctcli.package")
local pkgtool = require("ctcli.pkgtool")
local preview = require("ctcli.preview")
local release = require("ctcli.release")
local signing = require("ctcli.signing")
local store = require("ctcli.store")
local ui = require("ctcli.ui")

return {
  summary = "Show what 'upgrade PKG' would do, changing nothing",
  usage = "plan PKG",
  description = "Against the current root: per app added / changed / removed / unchanged,\n" ..
    "which containers would stop and start and in what order, which hooks would run\n" ..
    "(the package's, then the operator's, in order), the pending migrations, the disk\n" ..
    "space the upgrade needs against what is free, and the signature status. The\n" ..
    "package is extracted outside the root and no lock is taken: the root stays as\n" ..
    "it is. With trusted keys, a package that fails verification is refused as\n" ..
    "upgrade refuses it.",
  min_args = 1, max_args = 1,
  needs_root = true,
  run = function(ctx)
    local file = ctx.args[1]
    local label = file:match("[^/]+$")
    local cur, cerr = release.current(ctx.paths)
    if cerr then return nil, cerr end
    local dir, cleanup = pkgtool.extract(file)
    if not dir then return nil, cleanup end
    local signer, serr = signing.enforce(ctx.paths, dir, label)
    if serr then cleanup() return nil, serr end
    local signature
    if signer then signature = "verified: " .. signer
    elseif ct.fs.exists(dir .. "/" .. signing.SIGNATURE) then signature = "signed, not checked (no trusted keys)"
    else signature = "unsigned (accepted: no trusted keys)" end
    local pkg, perr = package.read_dir(dir, label, { have = function(name, digest)
      return store.has(ctx.paths, name, digest)
    end, blob = function(digest) return package.stored_blob(ctx.paths, digest) end })
    if not pkg then cleanup() return nil, perr end
    local p = preview.build(ctx, pkg, cur)
    cleanup()
    p.signature = { status = signature, signer = signer or json.null }
    p.delta = pkg.delta or json.null
    if ctx.json then
      local diff = p.diff
      p.diff = nil
      ui.print(json.encode(p, true))
      p.diff = diff
      return true
    end
    p.signature_text = signature
    preview.print(p, cur)
    return true
  end,
}
