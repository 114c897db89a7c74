-- inspect PKG: the release and apps a package holds, its signature status
-- and sizes, without installing it.
local ct = require("ct")
local json = require("ctcli.base.json")
local package = require("ctcli.model.package")
local pkgtool = require("ctcli.model.pkgtool")
local signing = require("ctcli.model.signing")
local rootconf = require("ctcli.store.rootconf")
local ui = require("ctcli.ui.console")
local userns = require("ctcli.runtime.userns")

local function signature_status(ctx, dir)
  local keys, kerr = signing.keys_for(ctx.opts.key, ctx.root)
  if not keys then return nil, kerr end
  local signed = ct.fs.exists(dir .. "/" .. signing.SIGNATURE)
  if #keys == 0 then
    return { status = signed and "signed (not checked: no --key, no trusted keys)" or "unsigned", signed = signed }
  end
  local key, err = signing.check_dir(dir, keys)
  if key then return { status = "verified", signer = signing.label(key), signed = true } end
  return { status = "failed: " .. err, signed = signed }
end

local function layers_of(dir, app)
  local layout = dir .. "/" .. app.image.layout
  local blob = layout .. "/blobs/sha256/" .. app.image.digest:sub(8)
  local mf = json.decode(ct.fs.read(blob) or "") or {}
  local out = {}
  for _, l in ipairs(type(mf.layers) == "table" and mf.layers or {}) do
    out[#out + 1] = { digest = l.digest, bytes = math.tointeger(l.size) or 0 }
  end
  table.sort(out, function(a, b) return a.bytes > b.bytes end)
  return out
end

return {
  summary = "Show what a package holds: release, apps, signature, sizes",
  usage = "inspect PKG [--key PUB]...",
  description = "Extracts PKG into a temporary directory (never into a root) and prints its\n" ..
    "release and apps as release-info shows an installed one, whether it is signed\n" ..
    "and by which key (checked against --key, else the root's trusted keys when\n" ..
    "--root names one), the size of each app's image and its largest layers.",
  options = {
    { "--key", arg = "PUB", multiple = true, help = "a public key to check the signature against" },
  },
  min_args = 1, max_args = 1,
  run = function(ctx)
    local file = ctx.args[1]
    local dir, cleanup = pkgtool.extract(file)
    if not dir then return nil, cleanup end
    local sig, serr = signature_status(ctx, dir)
    if not sig then cleanup() return nil, serr end
    -- A delta's left-out images are listed, not looked for.
    local pkg, perr = package.read_dir(dir, file:match("[^/]+$"), { have = function() return true end })
    if not pkg then cleanup() return nil, perr end
    local r = pkg.release
    -- With --root naming a root, its operator's overrides count too.
    local conf = { apps = {} }
    if ctx.root and ct.fs.exists(ctx.root .. "/.ctcli-init") and ct.fs.exists(ctx.root .. "/" .. rootconf.FILE) then
      local cerr
      conf, cerr = rootconf.load({ root = ctx.root })
      if not conf then cleanup() return nil, cerr end
    end
    -- The release nested as release-info nests it (no id: one is made when
    -- it is installed); "format" at the top is the output's own.
    local rdoc = json.release(r)
    rdoc.commit, rdoc.time = r.commit or json.null, r.time or json.null
    local doc = {
      package = file, bytes = (ct.fs.stat(file) or {}).size or json.null, package_format = pkg.format,
      compression = pkgtool.compression(file) or json.null,
      release = rdoc,
      signature = { status = sig.status, signed = sig.signed, signer = sig.signer or json.null },
      apps = json.array({}), delta = pkg.delta or json.null,
    }
    for _, name in ipairs(r.order) do
      local a
      for _, x in ipairs(r.apps) do if x.name == name then a = x end end
      -- The image as the base has it: left out whole, or its manifest left out by layer.
      local in_base = pkg.delta and (pkg.delta.images[a.name] or package.absent(pkg.doc, a.image.layout)[a.image.digest])
      local layers = in_base and {} or layers_of(dir, a)
      local top = json.array({})
      for i = 1, math.min(3, #layers) do top[i] = layers[i] end
      doc.apps[#doc.apps + 1] = {
        name = a.name, version = a.version or json.null, image = a.image.name or a.image.ref or json.null,
        ref = a.image.ref or json.null, digest = a.image.digest,
        bytes = in_base and 0 or (ct.fs.du(dir .. "/" .. a.image.layout) or 0), largest_layers = top,
        from_base = in_base and true or false,
        depends_on = json.array(a.depends_on or {}), hooks = a.hooks or json.null,
        migrations = a.migrations or json.null,
        -- Without a user namespace container root is host root.
        privileged = userns.opted_out(a, conf) ~= nil,
        privileged_by = userns.opted_out(a, conf) or json.null,
      }
    end
    cleanup()
    if ctx.json then
      json.print(doc)
      return true
    end
    ui.print("package    %s (%s, %s format, %s)", file, ui.bytes((ct.fs.stat(file) or {}).size or 0), pkg.format,
      tostring(pkgtool.compression(file)))
    ui.print("release    %s", ui.release_label(r))
    ui.print("commit     %s", r.commit or "-")
    ui.print("time       %s", r.time or "-")
    ui.print("signature  %s%s", sig.status, sig.signer and (" by " .. sig.signer) or "")
    if pkg.delta then
      local needs = {}
      for name, digest in pairs(pkg.delta.images) do needs[#needs + 1] = name .. "@" .. digest end
      local n = 0
      for _, list in pairs(pkg.delta.blobs) do n = n + #list end
      if n > 0 then needs[#needs + 1] = string.format("%d blob%s (layers, configs, manifests)", n, n == 1 and "" or "s") end
      table.sort(needs)
      ui.print("delta      of %s; needs in the root's image store: %s", tostring(pkg.delta.base), table.concat(needs, ", "))
    end
    ui.print("")
    local rows = {}
    for _, a in ipairs(doc.apps) do
      local big = a.largest_layers[1]
      rows[#rows + 1] = { a.name, a.version,
        ui.image_label({ digest = a.digest, name = a.image ~= a.ref and a.image ~= json.null and a.image or nil }),
        ui.bytes(a.bytes), big and (big.digest:sub(8, 19) .. " " .. ui.bytes(big.bytes)) or "-",
        #a.depends_on > 0 and table.concat(a.depends_on, ",") or "-",
        userns.describe(not a.privileged, a.privileged_by ~= json.null and a.privileged_by or nil) }
    end
    ui.table({ "APP", "VERSION", "IMAGE", "IMAGE SIZE", "LARGEST LAYER", "DEPENDS ON", "ISOLATION" }, rows)
    return true
  end,
}
