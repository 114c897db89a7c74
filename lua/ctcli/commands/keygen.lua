-- keygen NAME: an ed25519 key pair to sign packages with.
local ct = require("ct")
local signing = require("ctcli.model.signing")
local ui = require("ctcli.ui.console")
local json = require("ctcli.base.json")

return {
  summary = "Create an ed25519 key pair: NAME.key (private, 0600) and NAME.pub",
  usage = "keygen NAME",
  description = "Writes NAME.key (mode 0600; keep it secret) and NAME.pub. Sign packages\n" ..
    "with 'ctcli pack --sign NAME.key' or 'ctcli sign PKG --key NAME.key'; an\n" ..
    "operator trusts the key by copying NAME.pub into <root>/trusted-keys/.",
  min_args = 1, max_args = 1,
  run = function(ctx)
    local name = ctx.args[1]:gsub("%.key$", ""):gsub("%.pub$", "")
    local keyfile, pubfile = name .. ".key", name .. ".pub"
    for _, f in ipairs({ keyfile, pubfile }) do
      if ct.fs.exists(f) then return nil, f .. " exists; remove it first or choose another name" end
    end
    local priv, pub = require("ctcli.base.pem").keygen()
    if not priv then return nil, "cannot generate a key: " .. tostring(pub) end
    local ok, err = ct.fs.write_atomic(keyfile, priv, 384)
    if not ok then return nil, err end
    ok, err = ct.fs.write_atomic(pubfile, pub, 420)
    if not ok then ct.fs.unlink(keyfile) return nil, err end
    local fp = signing.fingerprint(pub)
    if ctx.json then
      json.print({ private = keyfile, public = pubfile, fingerprint = fp })
    else
      ui.print("wrote %s (private, mode 0600) and %s (public, %s)", keyfile, pubfile, fp)
    end
    return true
  end,
}
