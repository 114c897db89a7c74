-- Upgrades that say what and why, hook authors' and release engineers'
-- checks (issue 16, items 4, 5 and 8): a no-op upgrade is "already at",
-- plan and the prompt give a field diff per app, a downgrade is refused
-- unless asked for, `hook test` runs one hook on a copy, and validate/pack
-- check every OCI blob. Real packages, real runc.
local ct = require("ct")
local json = require("ctcli.base.json")
local versions = require("ctcli.base.versions")
local H = require("support.helpers")

local function has(s, want) return s:find(want, 1, true) ~= nil end

describe("versions", function()
  it("orders semver-ish versions, pre-releases before their release", function()
    for _, c in ipairs({
      { "1.0.0", "1.1.0", -1 }, { "1.10.0", "1.9.0", 1 }, { "1.2", "1.2.0", 0 }, { "v2.0.0", "1.99.99", 1 },
      { "1.0.0-rc.1", "1.0.0", -1 }, { "1.0.0-alpha", "1.0.0-beta", -1 }, { "1.0.0-rc.2", "1.0.0-rc.10", -1 },
      { "1.0.0-1", "1.0.0-alpha", -1 }, { "1.0.0+build.5", "1.0.0", 0 }, { "2024.05.01", "2024.4.30", 1 },
    }) do
      assert.equals(c[3], versions.compare(c[1], c[2]), c[1] .. " vs " .. c[2])
      assert.equals(-c[3], versions.compare(c[2], c[1]), c[2] .. " vs " .. c[1])
    end
    for _, bad in ipairs({ "latest", "", "1..2", "1.2.", "main-abc", "1.2.3beta" }) do
      assert.is_nil(versions.compare(bad, "1.0.0"), bad)
    end
  end)

  it("reads RFC 3339 times in any offset", function()
    assert.equals(0, versions.time("1970-01-01T00:00:00Z"))
    assert.equals(951782400, versions.time("2000-02-29T00:00:00Z"))
    assert.equals(versions.time("2026-03-01T10:00:00Z"), versions.time("2026-03-01T12:00:00+02:00"))
    assert.equals(1.5, versions.time("1970-01-01T00:00:01.5Z"))
    assert.is_nil(versions.time("yesterday"))
  end)
end)

describe("appdiff", function()
  local appdiff = require("ctcli.model.appdiff")
  local function app(t)
    local a = { name = "web", image = { digest = "sha256:" .. string.rep("a", 64) }, env = {}, configs = {}, data = {} }
    for k, v in pairs(t) do a[k] = v end
    return a
  end

  it("tells each field that differs, env by key only, limits with values", function()
    local old = app({ env = { A = "1", B = "2", SECRET = "x" }, configs = { "/etc/a" }, resources = { memory = 1 } })
    local new = app({ env = { A = "1", B = "3", C = "4" }, configs = { "/etc/a", "/etc/b" }, resources = { memory = 2 },
      image = { digest = "sha256:" .. string.rep("b", 64) }, entrypoint = { "/bin/app" } })
    local text = appdiff.text(appdiff.reasons(old, new, { old_hooks = "x", new_hooks = "y" }))
    assert.equals("image sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb; entrypoint none -> [/bin/app]; " ..
      "env ~B, +C, -SECRET; mounts: configs +/etc/b; limits ~memory 1 -> 2; hooks hook file changed", text)
    assert.is_false(has(text, "x"))
  end)

  it("names the config.json paths that differ when no field explains them", function()
    local cfg1 = json.encode({ process = { args = { "a" } }, linux = { uidMappings = { { hostID = 1 } } } })
    local cfg2 = json.encode({ process = { args = { "a" } }, linux = { uidMappings = { { hostID = 2 } } } })
    local r = appdiff.reasons(app({}), app({}), { old_cfg = cfg1, new_cfg = cfg2 })
    assert.equals("config.json linux.uidMappings", appdiff.text(r))
    assert.is_false(appdiff.same(app({}), app({}), cfg1, cfg2))
    assert.is_true(appdiff.same(app({}), app({}), cfg1, cfg1))
    assert.is_false(appdiff.same(app({}), app({}), nil, nil))
  end)
end)

H.need_root()

local HOOKS = [[
return {
  pre_upgrade = function(ctx)
    ctx.log("checking " .. ctx.app)
    local conf = ctx.paths.config .. "/etc/web/app.conf"
    ctx.write(conf, (ctx.read(conf) or "") .. "tested=yes\n")
    local r = ctx.run({ "true" })
    ctx.log("true said " .. tostring(r.code))
    local e = ctx.exec({ "sh", "-c", "echo from-exec > /var/lib/web/exec.txt" })
    ctx.log("exec said " .. tostring(e and e.code))
  end,
  post_upgrade = function(ctx) ctx.fail("post_upgrade says no") end,
  migrations = { ["0001-first"] = function(ctx) ctx.log("migrating " .. ctx.app) end },
}
]]

-- mkpkg(args, env) -> a package built with the environment env (SOURCE_DATE_EPOCH)
local function mkpkg(args, env)
  local dir = H.tmpdir()
  local out = dir .. "/pkg.tar.gz"
  local argv = { H.mkpkg, "--out", out, "--workdir", dir }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(ct.proc.run(argv, { timeout = 300, env_add = env }))
  if r.code ~= 0 then error("mkpkg failed: " .. r.stderr) end
  return out
end

local function pid_of(root, app)
  local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", H.container_id(root, app) })
  local st = r and r.code == 0 and json.decode(r.stdout)
  return st and st.pid
end

local function count(dir)
  local n = 0
  for _, e in ipairs(ct.fs.dir(dir) or {}) do
    if e ~= "backups" then n = n + 1 end
  end
  return n
end

describe("upgrades that say what and why", function()
  local work, v1, v1h, v2, v0
  setup(function()
    work = H.tmpdir()
    assert(ct.fs.write_atomic(work .. "/web.lua", HOOKS))
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web" })
    v1h = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:hooks=" .. work .. "/web.lua" })
    v2 = H.package({ "--format", "manifest", "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,memory=64M" })
    v0 = H.package({ "--format", "manifest", "--version", "0.9.0", "--app", "web" })
  end)
  teardown(H.cleanup)

  it("says 'already at' for the installed package again, and changes nothing", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local id, pid = H.current(root), pid_of(root, "web")
    assert.truthy(pid)
    local before = H.root_hash(root)
    local backups = ct.fs.dir(root .. "/releases/backups")
    local out = H.ok(root, { "-y", "upgrade", v1 })
    assert.truthy(has(out, "already at " .. id), out)
    assert.falsy(has(out, "started"), out)
    assert.equals(before, H.root_hash(root))
    assert.equals(1, count(root .. "/releases"))
    assert.same(backups, ct.fs.dir(root .. "/releases/backups"))
    assert.equals(pid, pid_of(root, "web"))
    local doc = H.json(root, { "plan", v1 })
    assert.is_true(doc.noop)
    assert.equals("unchanged", doc.changes[1].change)
    assert.same({}, doc.changes[1].reasons)
  end)

  it("gives each changed app's reasons as a field diff, in plan and at the prompt", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", v1 })
    local out = H.ok(root, { "plan", v2 })
    assert.truthy(out:find("why:\n  web: image sha256:%x+ %-> sha256:%x+"), out)
    assert.truthy(has(out, "version 1.0.0 -> 1.1.0"), out)
    assert.truthy(has(out, "limits +memory=67108864"), out)
    local doc = H.json(root, { "plan", v2 })
    assert.is_false(doc.noop)
    local fields = {}
    for _, r in ipairs(doc.changes[1].reasons) do fields[r.field] = r.detail end
    assert.truthy(fields.image and fields.limits and fields.version, json.encode(doc.changes[1].reasons))
    -- The prompt shows the same before it asks ("no" from a pipe cancels).
    local r = H.ctcli(root, { "upgrade", v2 }, { stdin = "n\n" })
    assert.equals(3, r.code, r.stderr)
    assert.truthy(has(r.stdout, "limits +memory=67108864"), r.stdout)
  end)

  it("names a hook file that changed alone: the app keeps running, and it is a new release", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local pid = pid_of(root, "web")
    local out = H.ok(root, { "plan", v1h })
    assert.truthy(out:find("\n  web %(kept running%): [^\n]*hooks added"), out)
    local doc = H.json(root, { "plan", v1h })
    assert.is_false(doc.noop)
    assert.equals("unchanged", doc.changes[1].change)
    local fields = {}
    for _, x in ipairs(doc.changes[1].reasons) do fields[x.field] = x.detail end
    assert.equals("added", fields.hooks)
    -- post_upgrade is not run for an unchanged app: the upgrade goes through.
    H.ok(root, { "-y", "upgrade", v1h })
    assert.equals(2, count(root .. "/releases"))
    assert.equals(pid, pid_of(root, "web"))
  end)

  it("refuses a downgrade of a manifest package unless --allow-downgrade; rollback is never one", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", v1 })
    local before = H.root_hash(root)
    local r = H.ctcli(root, { "-y", "upgrade", v0 })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "refusing a downgrade: release version 0.9.0 is lower than the installed 1.0.0"), r.stderr)
    assert.truthy(has(r.stderr, "--allow-downgrade"), r.stderr)
    assert.equals(before, H.root_hash(root))
    local doc = H.json(root, { "plan", v0 })
    assert.truthy(has(doc.downgrade, "0.9.0"), json.encode(doc))
    assert.truthy(has(H.ok(root, { "plan", v0 }), "plan: DOWNGRADE"))
    -- An upgrade is not a downgrade.
    local up = H.json(root, { "plan", v2 }).downgrade
    assert.truthy(up == nil or up == json.null, tostring(up))
    H.ok(root, { "-y", "upgrade", "--allow-downgrade", v0 })
    assert.truthy(has(H.ok(root, { "release-info" }), "0.9.0"))
    -- Back and forth with rollback: never refused.
    H.ok(root, { "-y", "upgrade", v2 })
    H.ok(root, { "-y", "rollback" })
    assert.truthy(has(H.ok(root, { "release-info" }), "0.9.0"))
  end)

  it("refuses a legacy package whose app's imageTag is lower, else whose builtAt is older", function()
    local root = H.root()
    local l11 = H.package({ "--version", "1.1.0" })
    local l10 = H.package({ "--version", "1.0.0" })
    H.ok(root, { "install", "--no-start", l11 })
    local r = H.ctcli(root, { "-y", "upgrade", l10 })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "refusing a downgrade: older apps: web 1.0.0 < 1.1.0"), r.stderr)

    local root2 = H.root()
    local newer = mkpkg({ "--version", "latest" }, { SOURCE_DATE_EPOCH = "1767225600" }) -- 2026-01-01
    local older = mkpkg({ "--version", "latest", "--app", "web:mark=older" }, { SOURCE_DATE_EPOCH = "1735689600" })
    H.ok(root2, { "install", "--no-start", newer })
    r = H.ctcli(root2, { "-y", "upgrade", older })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "web built 2025-01-01T00:00:00Z, before the installed 2026-01-01T00:00:00Z"), r.stderr)
    H.ok(root2, { "-y", "upgrade", "--allow-downgrade", older })
  end)
end)

describe("hook test", function()
  local work, pkg, plain
  setup(function()
    work = H.tmpdir()
    assert(ct.fs.write_atomic(work .. "/web.lua", HOOKS))
    pkg = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:hooks=" .. work .. "/web.lua" })
    plain = H.package({ "--format", "manifest", "--version", "1.1.0", "--app", "web" })
  end)
  teardown(H.cleanup)

  it("runs one hook on a copy of the app's dirs and prints what it did; the live dirs stay as they were", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    local live = H.tree_hash(root .. "/config") .. H.tree_hash(root .. "/data")
    local log_before = ct.fs.read(root .. "/logs/ctcli.log") or ""
    local out = H.ok(root, { "hook", "test", "web", "pre_upgrade" })
    assert.truthy(has(out, "against a copy"), out)
    assert.truthy(has(out, "log    checking web"), out)
    assert.truthy(has(out, "write  config/web/etc/web/app.conf"), out)
    assert.truthy(has(out, "run    true -> exit 0"), out)
    assert.truthy(has(out, "exec   sh -c echo from-exec > /var/lib/web/exec.txt -> exit 0"), out)
    assert.truthy(has(out, "files  changed config/web/etc/web/app.conf"), out)
    assert.truthy(has(out, "files  added   data/web/var/lib/web/exec.txt"), out)
    assert.equals(live, H.tree_hash(root .. "/config") .. H.tree_hash(root .. "/data"))
    assert.equals(log_before, ct.fs.read(root .. "/logs/ctcli.log") or "")
    assert.same({}, ct.fs.dir(root .. "/tmp"))
    local doc = H.json(root, { "hook", "test", "web", "migration:0001-first" })
    assert.is_true(doc.ok)
    assert.equals("migrating web", doc.events[1].text)
  end)

  it("with --live reads the live dirs and refuses ctx.write; a failing or absent hook exits 1", function()
    local root = H.root()
    H.ok(root, { "install", pkg })
    local live = H.tree_hash(root .. "/config")
    local r = H.ctcli(root, { "hook", "test", "web", "pre_upgrade", "--live" })
    assert.equals(1, r.code)
    assert.truthy(has(r.stdout, "log    checking web"), r.stdout)
    assert.truthy(has(r.stderr, "read-only here (hook test --live)"), r.stderr)
    assert.equals(live, H.tree_hash(root .. "/config"))
    r = H.ctcli(root, { "hook", "test", "web", "post_upgrade" })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "post_upgrade says no"), r.stderr)
    r = H.ctcli(root, { "hook", "test", "web", "pre_stop" })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "no hook file of web in release"), r.stderr)
    r = H.ctcli(root, { "hook", "test", "web", "pre_upgarde" })
    assert.equals(2, r.code)
    assert.truthy(has(r.stderr, "unknown hook 'pre_upgarde'"), r.stderr)
    r = H.ctcli(root, { "hook", "test", "nosuch", "pre_upgrade" })
    assert.equals(1, r.code)
    assert.truthy(has(r.stderr, "has no app 'nosuch'"), r.stderr)
  end)

  it("takes the hook files of another kept release with --release", function()
    local root = H.root()
    H.ok(root, { "install", "--no-start", pkg })
    local first = H.current(root)
    H.ok(root, { "-y", "upgrade", plain })
    local r = H.ctcli(root, { "hook", "test", "web", "pre_upgrade" })
    assert.equals(1, r.code)
    assert.truthy(has(H.ok(root, { "hook", "test", "--release", first, "web", "pre_upgrade" }), "checking web"))
  end)
end)

describe("integrity of a package's images", function()
  local pkg, legacy
  setup(function()
    pkg = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web" })
    legacy = H.package({ "--version", "1.0.0" })
  end)
  teardown(H.cleanup)

  local function extract(p)
    local dir = H.tmpdir()
    assert(ct.archive.extract(p, dir, {}))
    return dir
  end

  -- blobs(dir, layout) -> {manifest=, config=, layer=} relative paths
  local function blobs(dir, layout)
    local index = json.decode(assert(ct.fs.read(dir .. "/" .. layout .. "/index.json")))
    local function path(d) return layout .. "/blobs/sha256/" .. d:sub(8) end
    local m = index.manifests[1].digest
    local mf = json.decode(assert(ct.fs.read(dir .. "/" .. path(m))))
    return { manifest = path(m), config = path(mf.config.digest), layer = path(mf.layers[1].digest) }
  end

  local function refused(dir, file, what)
    local r = H.ctcli(nil, { "validate", dir })
    assert.equals(1, r.code, r.stdout)
    assert.truthy(has(r.stdout, file .. ": " .. what), r.stdout)
    local out = H.tmpdir() .. "/out.tar.gz"
    r = H.ctcli(nil, { "pack", "-o", out, dir })
    assert.equals(1, r.code, r.stdout .. r.stderr)
    assert.truthy(has(r.stderr, file .. ": " .. what), r.stderr)
    assert.is_nil(ct.fs.stat(out))
  end

  it("refuses a layer or a config changed after the build, naming the file, in validate and pack", function()
    for _, part in ipairs({ "layer", "config" }) do
      local dir = extract(pkg)
      H.ok(nil, { "validate", dir })
      local b = blobs(dir, "images/web")
      assert(H.append(dir .. "/" .. b[part], "\n"))
      refused(dir, b[part], "does not match the digest it is named by")
    end
  end)

  it("refuses a blob the index or a manifest names but that is missing or of another size", function()
    local dir = extract(pkg)
    local b = blobs(dir, "images/web")
    assert(ct.fs.unlink(dir .. "/" .. b.layer))
    refused(dir, b.manifest, "layers[0]: names sha256:")

    dir = extract(pkg)
    b = blobs(dir, "images/web")
    local index = json.decode(assert(ct.fs.read(dir .. "/images/web/index.json")))
    index.manifests[1].size = index.manifests[1].size + 1
    assert(ct.fs.write_atomic(dir .. "/images/web/index.json", json.encode(index)))
    local size = assert(ct.fs.stat(dir .. "/" .. b.manifest)).size
    refused(dir, b.manifest, string.format("is %d bytes, but images/web/index.json says %d", size, size + 1))
  end)

  it("checks a legacy package's skopeo layouts too", function()
    local dir = extract(legacy)
    local layout = "package/apps/web/skopeo"
    local b = blobs(dir, layout)
    assert(H.append(dir .. "/" .. b.config, " "))
    local r = H.ctcli(nil, { "validate", dir })
    assert.equals(1, r.code)
    assert.truthy(has(r.stdout, b.config .. ": does not match the digest it is named by"), r.stdout)
  end)
end)
