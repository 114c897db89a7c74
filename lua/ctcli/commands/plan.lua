-- plan PKG: what 'upgrade PKG' would do, changing nothing. The package is
-- extracted outside the root; no lock is taken; the root stays byte-identical.
local ct = require("ct")
local json = require("ctcli.base.json")
local package = require("ctcli.model.package")
local packages = require("ctcli.services.packages")
local pkgtool = require("ctcli.model.pkgtool")
local preview = require("ctcli.services.preview")
local release = require("ctcli.store.release")
local signing = require("ctcli.model.signing")
local store = require("ctcli.store.images")
local ui = require("ctcli.ui.console")

-- plan --staged: the staged release against the current one.
local function staged_plan(ctx)
  local staged = require("ctcli.services.staged")
  local cur, cerr = release.current(ctx.paths)
  if cerr then return nil, cerr end
  local rec, serr = staged.current(ctx.paths)
  if rec == nil then return nil, serr end
  if not rec then return nil, "nothing is staged in " .. ctx.root .. "; run 'ctcli stage PKG' first" end
  local pkg, perr = staged.package(ctx.paths, rec)
  if not pkg then return nil, perr end
  local p = preview.build(ctx, pkg, cur)
  local stale = not cur or cur.id ~= rec.against
  p.staged = { id = rec.id, against = rec.against, package = rec.package.name, staged = rec.staged,
    current = not stale }
  p.signature = { status = pkg.signer and ("verified when staged: " .. pkg.signer) or "not signed by a trusted key",
    signed = pkg.signer ~= nil, signer = pkg.signer or json.null }
  -- the staged release has its id already
  if type(p.to) == "table" then p.to.id = rec.id end
  p.delta = pkg.delta or json.null
  if ctx.json then
    p.diff = nil
    json.print(p)
    return true
  end
  p.signature_text = p.signature.status
  preview.print(p, cur, ui)
  ui.print("staged    %s from %s (%s), against %s%s", rec.id, tostring(rec.package.name), tostring(rec.staged),
    rec.against, stale and (": the current release is " .. (cur and cur.id or "none") ..
      " now, so 'upgrade --staged' refuses; re-stage") or "")
  return true
end

return {
  summary = "Show what 'upgrade PKG' would do, changing nothing",
  usage = "plan PKG | plan --staged",
  description = "Against the current root: per app added / changed / removed / unchanged,\n" ..
    "which containers would stop and start and in what order, which hooks would run\n" ..
    "(the package's, then the operator's, in order), the pending migrations, the disk\n" ..
    "space the upgrade needs against what is free, and the signature status. The\n" ..
    "package is extracted outside the root and no lock is taken: the root stays as\n" ..
    "it is. With trusted keys, a package that fails verification is refused as\n" ..
    "upgrade refuses it. With --staged, the plan of the staged release ('ctcli stage'),\n" ..
    "as 'upgrade --staged' would run it now.",
  options = {
    { "--staged", help = "the plan of the staged release instead of a package" },
  },
  min_args = 0, max_args = 1,
  check = function(opts, args)
    if (#args == 1) == (opts.staged == true) then return nil, "'plan' expects PKG or --staged (one of them)" end
    return true
  end,
  needs_root = true,
  run = function(ctx)
    if ctx.opts.staged then return staged_plan(ctx) end
    local file = ctx.args[1]
    local label = file:match("[^/]+$")
    local cur, cerr = release.current(ctx.paths)
    if cerr then return nil, cerr end
    local dir, cleanup = pkgtool.extract(file)
    if not dir then return nil, cleanup end
    local signer, serr = signing.enforce(ctx.paths, dir, label)
    if serr then cleanup() return nil, serr end
    local signature
    local signed = signer ~= nil or ct.fs.exists(dir .. "/" .. signing.SIGNATURE)
    if signer then signature = "verified: " .. signer
    elseif ct.fs.exists(dir .. "/" .. signing.SIGNATURE) then signature = "signed, not checked (no trusted keys)"
    else signature = "unsigned (accepted: no trusted keys)" end
    local pkg, perr = package.read_dir(dir, label, { have = function(name, digest)
      return store.has(ctx.paths, name, digest)
    end, blob = function(digest) return packages.stored_blob(ctx.paths, digest) end })
    if not pkg then cleanup() return nil, perr end
    local p = preview.build(ctx, pkg, cur)
    cleanup()
    p.signature = { status = signature, signed = signed, signer = signer or json.null }
    p.delta = pkg.delta or json.null
    if ctx.json then
      local diff = p.diff
      p.diff = nil
      json.print(p)
      p.diff = diff
      return true
    end
    p.signature_text = signature
    preview.print(p, cur, ui)
    return true
  end,
}
