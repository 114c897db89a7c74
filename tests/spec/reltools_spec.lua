-- The release engineer's tools end to end on real packages, keys and runc:
-- validate, pack, keygen/sign/verify and the trust model, plan, the docs.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local pkgtool = require("ctcli.model.pkgtool")

H.need_root()

local HOOKS = [[
return {
  pre_upgrade = function(ctx) ctx.log("pre_upgrade ran") end,
  post_start = function(ctx) ctx.log("post_start ran") end,
  post_upgrade = function(ctx) ctx.log("post_upgrade ran") end,
  migrations = {
    ["0001-a"] = function(ctx) ctx.log("m1") end,
    ["0002-b"] = function(ctx) ctx.log("m2") end,
    ["0003-c"] = function(ctx) ctx.log("m3") end,
  },
}
]]

local function extract(pkg)
  local dir = H.tmpdir()
  assert(ct.archive.extract(pkg, dir, {}))
  return dir
end

-- repack(dir, out): manifest.json (+ .sig) first, then the rest, as is.
local function repack(dir, out)
  local entries = { { name = "manifest.json", path = dir .. "/manifest.json" } }
  if ct.fs.exists(dir .. "/manifest.sig") then
    entries[2] = { name = "manifest.sig", path = dir .. "/manifest.sig" }
  end
  for _, n in ipairs(ct.fs.dir(dir)) do
    if n ~= "manifest.json" and n ~= "manifest.sig" then
      entries[#entries + 1] = { name = n, path = dir .. "/" .. n }
    end
  end
  assert(ct.archive.create(out, entries, { format = "gzip", owner0 = true }))
  return out
end

local function flip(path, offset)
  local data = assert(ct.fs.read(path))
  offset = offset or (#data // 2)
  local b = data:byte(offset + 1)
  assert(ct.fs.write_atomic(path, data:sub(1, offset) .. string.char(b ~ 1) .. data:sub(offset + 2)))
end

local function edit_manifest(dir, fn)
  local doc = assert(json.decode(assert(ct.fs.read(dir .. "/manifest.json"))))
  fn(doc)
  assert(ct.fs.write_atomic(dir .. "/manifest.json", json.encode(doc, true) .. "\n"))
end

describe("release tools", function()
  local work, hookfile, v1, v2, key, pub, other_pub, src1
  setup(function()
    work = H.tmpdir()
    hookfile = work .. "/web.lua"
    assert(ct.fs.write_atomic(hookfile, HOOKS))
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0",
      "--app", "web:migrations=0001-a+0002-b,hooks=" .. hookfile, "--app", "worker:depends=web" })
    v2 = H.package({ "--format", "manifest", "--version", "1.1.0",
      "--app", "web:mark=two,version=1.1.0,migrations=0001-a+0002-b+0003-c,hooks=" .. hookfile,
      "--app", "worker:depends=web" })
    src1 = extract(v1)
    H.ok(nil, { "keygen", work .. "/release" })
    H.ok(nil, { "keygen", work .. "/other" })
    key, pub, other_pub = work .. "/release.key", work .. "/release.pub", work .. "/other.pub"
  end)
  teardown(H.cleanup)

  describe("validate", function()
    it("accepts a good package, its directory and its manifest", function()
      H.ok(nil, { "validate", v1 })
      H.ok(nil, { "validate", src1 })
      H.ok(nil, { "validate", src1 .. "/manifest.json" })
    end)

    it("reports every planted mistake with its path, and exits 1", function()
      local dir = extract(v1)
      edit_manifest(dir, function(doc)
        local web, worker = doc.apps[1], doc.apps[2]
        doc.release.version = 1                               -- 1 number, not string
        web.entrypiont = web.entrypoint                       -- 2 typo
        web.depends_on = json.array({ "worker" })             -- 3 cycle with worker -> web
        worker.depends_on = json.array({ "web", "wrker" })    -- 4 unknown app
        worker.image.ref = "nope"                             -- 5 ref missing from the layout
        web.image.digest = "sha256:" .. string.rep("0", 64)   -- 6 digest mismatch
        web.logs = "var/log/web"                              -- 7 relative path
        worker.data = json.array({ "/etc/worker" })           -- 8 overlaps configs /etc/worker/app.conf
        web.migrations = json.array({ "0001-a", "0001-a" })   -- 9 duplicate migration id
        worker.hooks = "hooks/worker.lua"                     -- 10 hook file with an unknown point
        doc["x-team"] = "ours"                                -- allowed
      end)
      assert(ct.fs.write_atomic(dir .. "/hooks/worker.lua",
        "return { pre_upgarde = function(ctx) end, post_start = function(ctx) end }\n"))
      local r = H.ctcli(nil, { "validate", dir })
      assert.equal(1, r.code)
      for _, want in ipairs({
        "manifest.json: release.version: expected a non%-empty string",
        "apps.web.entrypiont: unknown key 'entrypiont' %(did you mean 'entrypoint'%?%)",
        "dependency cycle: web %-> worker %-> web",
        "apps.worker.depends_on: unknown app 'wrker'",
        "apps.worker.image: .*no tag 'nope'",
        "apps.web.image: .*the package declares sha256:0000",
        "apps.web.logs: expected an absolute path",
        "apps.worker.data: data \"/etc/worker\" contains configs",
        "apps.web.migrations: \"0001%-a\" is listed twice",
        "hooks/worker.lua: pre_upgarde: unknown hook point 'pre_upgarde' %(did you mean 'pre_upgrade'%?%)",
      }) do
        assert.truthy(r.stdout:find(want), "missing: " .. want .. "\nin:\n" .. r.stdout)
      end
      assert.falsy(r.stdout:find("x%-team"))
      local out = H.ctcli(nil, { "--json", "validate", dir })
      assert.equal(1, out.code)
      local doc = json.decode(out.stdout)
      assert.is_false(doc.valid)
      assert.is_true(#doc.problems >= 10)
      -- A precompiled hook file is refused without running it.
      assert(ct.fs.write_atomic(dir .. "/hooks/worker.lua", string.dump(function() return {} end)))
      r = H.ctcli(nil, { "validate", dir })
      assert.truthy(r.stdout:find("precompiled"), r.stdout)
    end)

    it("gives line and column for a JSON syntax error", function()
      local f = work .. "/broken.json"
      assert(ct.fs.write_atomic(f, '{\n  "manifest_version": 1,\n  "release": {,}\n}\n'))
      local r = H.ctcli(nil, { "validate", f })
      assert.equal(1, r.code)
      assert.truthy(r.stdout:find("broken.json: line 3, column %d+"), r.stdout)
    end)
  end)

  describe("pack", function()
    it("is reproducible: the same directory packed twice is byte-identical", function()
      local a, b = work .. "/a.pkg", work .. "/b.pkg"
      H.ok(nil, { "pack", src1, "-o", a })
      H.ok(nil, { "pack", src1, "-o", b })
      assert.equal(ct.hash.sha256_file(a), ct.hash.sha256_file(b))
      assert.equal("zstd", pkgtool.compression(a))
      local list = ct.archive.list(a)
      assert.equal("manifest.json", list[1].name)
      H.ok(nil, { "pack", "--gzip", src1, "-o", work .. "/g.pkg" })
      assert.equal("gzip", pkgtool.compression(work .. "/g.pkg"))
      H.ok(nil, { "validate", a })
      H.ok(nil, { "verify", a })
    end)

    it("refuses a directory with a problem and writes nothing", function()
      local dir = extract(v1)
      edit_manifest(dir, function(doc) doc.apps[1].stop_signal = "SIGFOO" end)
      local r = H.ctcli(nil, { "pack", dir, "-o", work .. "/bad.pkg" })
      assert.equal(1, r.code)
      assert.truthy(r.stderr:find("apps.web.stop_signal"), r.stderr)
      assert.is_false(ct.fs.exists(work .. "/bad.pkg"))
    end)
  end)

  describe("signatures", function()
    local signed
    setup(function()
      signed = work .. "/signed.pkg"
      H.ok(nil, { "pack", src1, "-o", signed, "--sign", key })
    end)

    it("keygen writes a 0600 private key", function()
      assert.equal(384, ct.fs.stat(key).mode)
      assert.truthy(ct.fs.read(pub):find("PUBLIC KEY"))
    end)

    it("verify checks the signature and every digest", function()
      assert.equal("manifest.sig", ct.archive.list(signed)[2].name)
      H.ok(nil, { "verify", signed, "--key", pub })
      local r = H.ctcli(nil, { "verify", signed, "--key", other_pub })
      assert.equal(1, r.code)
      assert.truthy(r.stderr:find("signature does not match"), r.stderr)
      -- sign rewrites a package; the result verifies too.
      local copy = work .. "/resigned.pkg"
      H.ok(nil, { "pack", src1, "-o", copy })
      H.ok(nil, { "sign", copy, "--key", key })
      H.ok(nil, { "verify", copy, "--key", pub })
    end)

    it("installs a signed package when its key is trusted, and says so", function()
      local root = H.root()
      assert(ct.fs.copyfile(pub, root .. "/trusted-keys/release.pub"))
      H.ok(root, { "install", "--no-start", signed })
      local info = H.json(root, { "release-info" }).release
      assert.truthy(tostring(info.signer):find("^release %(sha256:"), tostring(info.signer))
    end)

    -- Skipping a key that cannot be read would leave no key, and no key
    -- turns signature checking off: every package is refused instead.
    it("refuses every package while a trusted key cannot be used, naming the key", function()
      local bad = {
        { "a dangling symlink", function(path) assert(ct.fs.symlink(work .. "/no-such.pub", path)) end,
          "cannot be read: No such file or directory" },
        { "a directory", function(path) assert(ct.fs.mkdir(path, 493)) end, "cannot be read: Is a directory" },
        { "bad PEM", function(path) assert(ct.fs.write_atomic(path, "-----BEGIN PUBLIC KEY-----\nnope\n")) end,
          "is not an ed25519 public key" },
      }
      local unsigned = work .. "/unsigned-for-keys.pkg"
      H.ok(nil, { "pack", src1, "-o", unsigned })
      for _, b in ipairs(bad) do
        local root = H.root()
        local key_path = root .. "/trusted-keys/broken.pub"
        b[2](key_path)
        local before
        -- Alone (today: no key, nothing checked) and beside a good key.
        for _, with_good in ipairs({ false, true }) do
          if with_good then assert(ct.fs.copyfile(pub, root .. "/trusted-keys/release.pub")) end
          before = H.root_hash(root)
          for _, argv in ipairs({ { "install", "--no-start", signed }, { "install", "--no-start", unsigned },
                                  { "plan", signed }, { "verify", signed }, { "inspect", unsigned } }) do
            -- -q: the refusal alone on stderr, without the step lines before it
            local r = H.ctcli(root, { "-q", table.unpack(argv) })
            local what = b[1] .. " (" .. table.concat(argv, " ") .. ", good key too: " .. tostring(with_good) .. ")"
            assert.equal(1, r.code, what .. "\n" .. r.stdout .. r.stderr)
            local line = r.stderr:match("^([^\n]*)\n$")
            assert.truthy(line, what .. ": not one line:\n" .. r.stderr)
            assert.truthy(line:find("the trusted key " .. key_path .. " " .. b[3], 1, true), what .. ": " .. line)
            assert.truthy(line:find("every package is refused until it is fixed or removed", 1, true), line)
            assert.equal(before, H.root_hash(root), what .. " changed the root")
          end
        end
      end
    end)

    it("refuses unsigned, wrongly signed, tampered, extra and missing files, root unchanged", function()
      local root = H.root()
      assert(ct.fs.copyfile(pub, root .. "/trusted-keys/release.pub"))
      local cases = {}
      cases.unsigned = { pkg = work .. "/a.pkg", want = "not signed" }
      local function variant(name, fn, want)
        local dir = extract(signed)
        fn(dir)
        cases[name] = { pkg = repack(dir, work .. "/" .. name .. ".pkg"), want = want }
      end
      H.ok(nil, { "pack", src1, "-o", work .. "/a.pkg" })
      local other_signed = work .. "/other.pkg"
      H.ok(nil, { "pack", src1, "-o", other_signed, "--sign", work .. "/other.key" })
      cases.wrong_key = { pkg = other_signed, want = "manifest.sig: the signature does not match" }
      local layer
      variant("layer", function(dir)
        local blobs = dir .. "/images/web/blobs/sha256"
        local best, size = nil, -1
        for _, b in ipairs(ct.fs.dir(blobs)) do
          local s = (ct.fs.stat(blobs .. "/" .. b) or {}).size
          if s > size then best, size = b, s end
        end
        layer = "images/web/blobs/sha256/" .. best
        flip(blobs .. "/" .. best)
      end, "images/web/blobs/sha256/%x+: does not match its digest")
      variant("hook", function(dir) flip(dir .. "/hooks/web.lua", 10) end,
        "hooks/web.lua: does not match its digest")
      variant("manifest", function(dir) flip(dir .. "/manifest.json", 40) end,
        "manifest.sig: the signature does not match .* manifest.json was changed")
      variant("extra", function(dir) assert(ct.fs.write_atomic(dir .. "/images/web/extra.txt", "x")) end,
        "images/web/extra.txt: the package holds a file its manifest does not list")
      variant("missing", function(dir) assert(ct.fs.unlink(dir .. "/hooks/web.lua")) end,
        "hooks/web.lua: listed in manifest.json but missing")
      assert.truthy(layer)
      local before = H.root_hash(root)
      for name, c in pairs(cases) do
        for _, cmd in ipairs({ "install", "plan" }) do
          local r = H.ctcli(root, { cmd, c.pkg })
          assert.equal(1, r.code, name .. " " .. cmd)
          assert.truthy(r.stderr:find("refused: " .. c.want), name .. " " .. cmd .. ": " .. r.stderr)
          assert.equal(before, H.root_hash(root), name .. " " .. cmd .. " changed the root")
        end
        local r = H.ctcli(nil, { "verify", c.pkg, "--key", pub })
        assert.equal(1, r.code, "verify " .. name)
      end
    end)
  end)

  describe("plan", function()
    it("changes nothing and predicts what the upgrade does", function()
      local root = H.root()
      H.ok(root, { "install", v1 })
      -- An operator hook: its points run after the package's, and plan says so.
      assert(ct.fs.write_atomic(root .. "/hooks/worker.lua", [[
return {
  pre_stop = function(ctx) ctx.log("operator pre_stop ran") end,
  post_start = function(ctx) ctx.log("operator post_start ran") end,
}
]]))
      local d2 = extract(v2)
      local p2 = work .. "/v2.pkg"
      H.ok(nil, { "pack", d2, "-o", p2 })
      local before = H.root_hash(root)
      local plan = H.json(root, { "plan", p2 })
      assert.equal(before, H.root_hash(root))
      H.ok(root, { "plan", p2 })
      assert.equal(before, H.root_hash(root))
      assert.same({ "worker", "web" }, plan.stop)
      assert.same({ "web", "worker" }, plan.start)
      assert.same({ { app = "web", id = "0003-c" } }, plan.migrations)
      assert.is_true(plan.disk.enough)
      local log_before = #(ct.fs.read(root .. "/logs/ctcli.log") or "")
      local up = H.json(root, { "-y", "upgrade", p2 })
      assert.same(plan.start, up.restarted)
      local changes = {}
      for _, c in ipairs(up.changes) do changes[c.name] = c.change end
      for _, c in ipairs(plan.changes) do assert.equal(c.change, changes[c.name]) end
      local fired = {}
      local log = (ct.fs.read(root .. "/logs/ctcli.log") or ""):sub(log_before + 1)
      for app, point in log:gmatch("%S+ (%S+) ([%w_]+): [^\n]*ran") do fired[#fired + 1] = app .. ":" .. point end
      local predicted = {}
      for _, h in ipairs(plan.hooks) do predicted[#predicted + 1] = h.app .. ":" .. h.point end
      assert.same({ "web:pre_upgrade", "worker:pre_stop", "web:post_start", "worker:post_start",
        "web:post_upgrade" }, predicted)
      assert.same(predicted, fired)
      assert.truthy(plan.hooks[2].source:find("^operator "))
      local rec = json.decode(ct.fs.read(root .. "/data/web/.ctcli/migrations.json"))
      assert.equal("0003-c", rec[#rec].id)
      assert.equal(3, #rec)
    end)
  end)

  describe("inspect and convert", function()
    it("inspect shows the release, apps, signature and sizes without installing", function()
      local signed = work .. "/inspect-signed.pkg"
      H.ok(nil, { "pack", src1, "-o", signed, "--sign", key })
      local doc = H.json(nil, { "inspect", signed, "--key", pub })
      assert.equal("1.0.0", doc.release.version)
      assert.equal("verified", doc.signature.status)
      assert.equal(2, #doc.apps)
      assert.equal("web", doc.apps[1].name)
      assert.is_true(doc.apps[1].bytes > 0)
      assert.is_true(doc.apps[1].largest_layers[1].bytes > 0)
      doc = H.json(nil, { "inspect", v1 })
      assert.equal("unsigned", doc.signature.status)
    end)

    it("convert gives a package that installs into the same running apps", function()
      local legacy = H.package({ "--version", "2.0.0", "--app", "web", "--app", "worker:ignore-term" })
      local conv = work .. "/converted.pkg"
      H.ok(nil, { "convert", legacy, "-o", conv })
      H.ok(nil, { "validate", conv })
      H.ok(nil, { "verify", conv })
      local a, b = H.root(), H.root()
      H.ok(a, { "install", legacy })
      H.ok(b, { "install", conv })
      local function apps_of(root)
        local rel = json.decode(ct.fs.read(root .. "/current-release/release.json"))
        local out = {}
        for _, app in ipairs(rel.apps) do
          out[app.name] = { app.image.digest, app.entrypoint, app.configs, app.data, app.logs,
            app.healthcheck, app.version }
        end
        local st = {}
        for _, x in ipairs(H.json(root, { "status" }).apps) do st[x.name] = x.state end
        return out, st
      end
      local apps_a, st_a = apps_of(a)
      local apps_b, st_b = apps_of(b)
      assert.same(apps_a, apps_b)
      assert.same({ web = "running", worker = "running" }, st_a)
      assert.same(st_a, st_b)
      H.ok(a, { "stop", "--force" })
      H.ok(b, { "stop", "--force" })
    end)
  end)

  describe("legacy packages as the Go tool made them", function()
    -- A legacy package rewritten in place: its files as mkpkg made them,
    -- edited by fn(dir), packed again under the name out.
    local function relegacy(src, out, fn)
      local dir = extract(src)
      fn(dir)
      local entries = {}
      for _, n in ipairs(ct.fs.dir(dir)) do entries[#entries + 1] = { name = n, path = dir .. "/" .. n } end
      assert(ct.archive.create(out, entries, { format = "gzip", owner0 = true }))
      return out
    end
    local function edit_json(path, fn)
      local doc = assert(json.decode(assert(ct.fs.read(path))))
      fn(doc)
      assert(ct.fs.write_atomic(path, json.encode(doc, true) .. "\n"))
    end

    it("names the release by releaseMeta.id and shows version.json's image in every command", function()
      local p1 = H.package({ "--version", "opbot-2024.05", "--app", "web:version=2.4.1" })
      local p2 = H.package({ "--version", "opbot-2024.06", "--app", "web:version=2.5.0,mark=two" })
      local root = H.root()
      local insp = H.json(nil, { "inspect", p1 })
      assert.same({ "opbot-2024.05", "opbot-2024.05" }, { insp.release.name, insp.release.version })
      assert.equal("registry.example/web:2.4.1", insp.apps[1].image)
      assert.equal("web", insp.apps[1].ref)
      local text = H.ok(nil, { "inspect", p1 })
      assert.truthy(text:find("release    opbot-2024.05\n", 1, true), text)
      assert.truthy(text:find("registry.example/web:2.4.1 (", 1, true), text)

      H.ok(root, { "install", p1 })
      local info = H.json(root, { "release-info" })
      assert.same({ "opbot-2024.05", "opbot-2024.05", "legacy" },
        { info.release.name, info.release.version, info.release.package_format })
      assert.equal("registry.example/web:2.4.1", info.apps[1].image)
      assert.equal("2.4.1", info.apps[1].version)
      text = H.ok(root, { "release-info" })
      assert.truthy(text:find("name       opbot-2024.05\n", 1, true), text)
      assert.truthy(text:find("registry.example/web:2.4.1", 1, true), text)

      local list = H.ok(root, { "list-releases" })
      assert.truthy(list:find("opbot-2024.05", 1, true), list)
      assert.falsy(list:find("release 1", 1, true), list)
      assert.falsy(list:find("opbot-2024.05 opbot-2024.05", 1, true), list)

      local st = H.json(root, { "status" })
      assert.equal("registry.example/web:2.4.1", st.apps[1].image)
      text = H.ok(root, { "status" })
      assert.truthy(text:find("(opbot-2024.05)", 1, true), text)
      assert.truthy(text:find("registry.example/web:2.4.1 (", 1, true), text)

      local plan = H.json(root, { "plan", p2 })
      assert.same({ "opbot-2024.05", "opbot-2024.06" }, { plan.from.name, plan.to.name })
      assert.same({ "registry.example/web:2.4.1", "registry.example/web:2.5.0" },
        { plan.changes[1].old_image, plan.changes[1].new_image })
      text = H.ok(root, { "plan", p2 })
      assert.truthy(text:find("plan: upgrade opbot-2024.05 (", 1, true), text)
      assert.truthy(text:find(") -> opbot-2024.06\n", 1, true), text)
      assert.truthy(text:find("registry.example/web:2.5.0 (", 1, true), text)
      H.ok(root, { "stop", "--force" })
    end)

    it("installs a package without meta.json, named by its file, as the Go tool did", function()
      local src = H.package({ "--version", "1.0.0", "--app", "web" })
      local pkg = relegacy(src, work .. "/crafttalk-opbot-release-7.tar.gz", function(dir)
        assert(ct.fs.unlink(dir .. "/meta.json"))
      end)
      H.ok(nil, { "validate", pkg })
      local root = H.root()
      H.ok(root, { "install", pkg })
      local info = H.json(root, { "release-info" }).release
      assert.same({ "crafttalk-opbot-release-7", "crafttalk-opbot-release-7" }, { info.name, info.version })
      H.ok(root, { "stop", "--force" })
    end)

    it("explains an imageSha that is neither digest of the image, and accepts the config digest", function()
      local src = H.package({ "--version", "1.0.0", "--app", "web" })
      local vj = "package/apps/web/version.json"
      local manifest_digest, config_digest
      local bad = relegacy(src, work .. "/bad-sha.tar.gz", function(dir)
        edit_json(dir .. "/" .. vj, function(v)
          manifest_digest = v.imageSha
          v.imageSha = "sha256:" .. string.rep("ab", 32)
        end)
        local mf = json.decode(ct.fs.read(dir .. "/package/apps/web/skopeo/blobs/sha256/" .. manifest_digest:sub(8)))
        config_digest = mf.config.digest
      end)
      local root = H.root()
      local r = H.ctcli(root, { "install", bad })
      assert.equal(1, r.code)
      assert.truthy(r.stderr:find(vj .. " imageSha is sha256:" .. string.rep("ab", 32), 1, true), r.stderr)
      assert.truthy(r.stderr:find("manifest digest " .. manifest_digest .. " and config digest " .. config_digest
        .. "; imageSha must be one of them", 1, true), r.stderr)
      assert.falsy(ct.fs.exists(root .. "/current-release"))
      r = H.ctcli(nil, { "validate", bad })
      assert.equal(1, r.code)
      assert.truthy(r.stdout:find("package/apps/web: skopeo: " .. vj .. " imageSha is", 1, true), r.stdout)

      local by_config = relegacy(src, work .. "/config-sha.tar.gz", function(dir)
        edit_json(dir .. "/" .. vj, function(v) v.imageSha = config_digest end)
      end)
      H.ok(root, { "install", by_config })
      assert.equal(manifest_digest, H.json(root, { "release-info" }).apps[1].digest)
      H.ok(root, { "stop", "--force" })
    end)

    it("convert keeps the release's name and each image's reference", function()
      local legacy = H.package({ "--version", "opbot-2024.05", "--app", "web:version=2.4.1" })
      local conv = work .. "/converted-names.pkg"
      H.ok(nil, { "convert", legacy, "-o", conv })
      local doc = H.json(nil, { "inspect", conv })
      assert.same({ "manifest", "opbot-2024.05", "opbot-2024.05" }, { doc.package_format, doc.release.name, doc.release.version })
      assert.equal("registry.example/web:2.4.1", doc.apps[1].image)
    end)
  end)

  describe("delta packages", function()
    it("upgrades a root that holds the base, and is refused by one that does not", function()
      -- worker keeps its 1.0.0 image: the delta leaves it out.
      local v2d = H.package({ "--format", "manifest", "--version", "1.1.0",
        "--app", "web:mark=two,version=1.1.0", "--app", "worker:depends=web,version=1.0.0" })
      local d2 = extract(v2d)
      local delta = work .. "/delta.pkg"
      H.ok(nil, { "pack", d2, "-o", delta, "--base", v1, "--sign", key })
      -- Of worker's layout only its index is packed; every blob of it is the base's.
      for _, e in ipairs(ct.archive.list(delta)) do
        assert.falsy(e.name:find("^images/worker/blobs/sha256/%x"), e.name)
      end
      H.ok(nil, { "validate", delta })
      H.ok(nil, { "verify", delta, "--key", pub })
      local info = H.json(nil, { "inspect", delta })
      assert.equal(4, #info.delta.blobs["images/worker"])
      assert.is_true(info.apps[2].from_base)
      assert.is_false(info.apps[1].from_base)
      -- A root without the base's images: refused, root unchanged.
      local empty = H.root()
      local before = H.root_hash(empty)
      for _, cmd in ipairs({ "install", "plan" }) do
        local r = H.ctcli(empty, { cmd, delta })
        assert.equal(1, r.code)
        assert.truthy(r.stderr:find("delta package .*leaves out the blob sha256:%x+ of images/w"), r.stderr)
        assert.equal(before, H.root_hash(empty))
      end
      -- A root that holds the base upgrades, taking worker from its store.
      local root = H.root()
      H.ok(root, { "install", "--no-start", v1 })
      local worker = H.json(root, { "release-info" }).apps[2].digest
      local plan = H.json(root, { "plan", delta })
      assert.equal(4, #plan.delta.blobs["images/worker"])
      H.ok(root, { "-y", "upgrade", delta })
      local rel = H.json(root, { "release-info" })
      assert.equal("1.1.0", rel.release.version)
      assert.equal(worker, rel.apps[2].digest)
    end)
  end)

  describe("docs", function()
    it("docs/manifest.md names every field of the schema", function()
      local schema = json.decode(assert(ct.fs.read(H.src .. "/manifests/release.schema.json")))
      local doc = assert(ct.fs.read(H.src .. "/docs/manifest.md"))
      local missing = {}
      local function walk(node)
        if type(node) ~= "table" then return end
        if type(node.properties) == "table" then
          for name in pairs(node.properties) do
            if not doc:find("`" .. name .. "`", 1, true) then missing[#missing + 1] = name end
          end
        end
        for _, v in pairs(node) do walk(v) end
      end
      walk(schema)
      table.sort(missing)
      assert.same({}, missing)
    end)
  end)
end)
