-- The edges an operator or a release engineer meets first (issue 16): exit
-- statuses (usage, cancelled, bug, exec's docker statuses), idempotent
-- delete and stop, exec -it, sign with the wrong key, "$schema" in a
-- manifest, backup names and size units, and what validate and the hook
-- ctx tell a hook author. Real packages, real runc.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local HOOKS = [[
return {
  pre_start = function(ctx)
    local conf = ctx.paths.config .. "/etc/web/app.conf"
    ctx.write(conf, (ctx.read(conf) or "") .. "written=by a hook\n")
    local ok, err = pcall(ctx.read, ctx.paths.config .. "/../../../etc/hostname")
    ctx.log(ok and "read outside: no error" or ("read outside: " .. tostring(err)))
    ok, err = pcall(ctx.read, "/etc/hostname")
    ctx.log(ok and "read absolute: no error" or ("read absolute: " .. tostring(err)))
    ctx.log("missing is " .. tostring(ctx.read(ctx.paths.data .. "/no-such-file")))
  end,
}
]]

local function extract(pkg)
  local dir = H.tmpdir()
  assert(ct.archive.extract(pkg, dir, {}))
  return dir
end

local function edit_manifest(dir, fn)
  local doc = assert(json.decode(assert(ct.fs.read(dir .. "/manifest.json"))))
  fn(doc)
  doc.files = nil
  assert(ct.fs.write_atomic(dir .. "/manifest.json", json.encode(doc, true) .. "\n"))
end

-- packed_manifest(pkg) -> the manifest.json a package holds, decoded
local function packed_manifest(pkg)
  local dir = H.tmpdir()
  assert(ct.archive.extract(pkg, dir, { only = { ["manifest.json"] = true } }))
  return assert(json.decode(assert(ct.fs.read(dir .. "/manifest.json"))))
end

local function has(s, want) return s:find(want, 1, true) ~= nil end

describe("operator and release engineer edges", function()
  local work, v1, v2, legacy
  setup(function()
    work = H.tmpdir()
    assert(ct.fs.write_atomic(work .. "/web.lua", HOOKS))
    -- userns=off: the config's owner stays the one the spec gives it (no shift into a range)
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:userns=off,hooks=" .. work .. "/web.lua" })
    v2 = H.package({ "--format", "manifest", "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0" })
    legacy = H.package({ "--version", "1.0.0" })
  end)
  teardown(H.cleanup)

  describe("exit statuses", function()
    it("exits 2 on every usage and value error, before anything runs, leaving the root as it was", function()
      local root = H.root()
      H.ok(root, { "install", "--no-start", v1 })
      local before = H.root_hash(root)
      local dir = extract(v1)
      for _, case in ipairs({
        { { "--hook-timeout", "0", "-y", "upgrade", v2 }, "--hook-timeout expects a number above 0, got '0'" },
        { { "--hook-timeout", "soon", "-y", "upgrade", v2 }, "--hook-timeout expects" },
        { { "--wait", "abc", "status" }, "--wait expects a number above 0, got 'abc'" },
        { { "rotate-logs", "--max-size", "1X" }, "--max-size expects a size like 100M or 1G, got '1X'" },
        { { "-y", "upgrade", "--keep", "0", v2 }, "--keep expects a whole number of at least 1, got '0'" },
        { { "logs", "--tail", "1.5", "web" }, "--tail expects a whole number" },
        { { "pack", dir }, "'pack' needs --output PKG" },
        { { "convert", legacy }, "'convert' needs --output PKG" },
        { { "sign", v1 }, "'sign' needs --key KEY" },
        { { "prune", "some-backup" }, "only with --backups" },
        { { "-y", "upgrade" }, "'upgrade' expects" },
        { { "exec", "-x", "web", "sh" }, "unknown option '-x'" },
      }) do
        local r = H.ctcli(root, case[1])
        assert.equals(2, r.code, table.concat(case[1], " ") .. ":\n" .. r.stderr)
        assert.truthy(has(r.stderr, case[2]), r.stderr)
        assert.falsy(has(r.stderr, "error: "), r.stderr)
        assert.equals(before, H.root_hash(root), table.concat(case[1], " "))
      end
      assert.is_nil(ct.fs.lstat(root .. "/state/journal.json"))
    end)

    it("reads --wait's optional value only when it is one", function()
      local root = H.root()
      for _, argv in ipairs({ { "--wait", "status" }, { "--wait", "5", "status" }, { "--wait=5", "status" },
        { "status", "--wait" } }) do
        local r = H.ctcli(root, argv)
        assert.equals(0, r.code, table.concat(argv, " ") .. ": " .. r.stderr)
      end
      local r = H.ctcli(root, { "--wait=0", "status" })
      assert.equals(2, r.code)
    end)

    it("exits 3 on a \"no\" at a terminal's prompt, naming -y, and changes nothing", function()
      local root = H.root()
      H.ok(root, { "install", "--no-start", v1 })
      local before = H.root_hash(root)
      -- script(1) gives ctcli a terminal on stdin, answered by our "n".
      local cmd = string.format("%s --root %s upgrade %s", H.bin, root, v2)
      local r = assert(ct.proc.run({ "script", "-qec", cmd, "/dev/null" },
        { stdin = "n\n", env_add = { CTCLI_SUBID_DIR = H.subid_dir() }, timeout = 120 }))
      assert.equals(3, r.code, r.stdout)
      assert.truthy(has(r.stdout, "[y/N]"), r.stdout)
      assert.truthy(has(r.stdout, "upgrade cancelled; nothing changed (pass -y"), r.stdout)
      assert.equals(before, H.root_hash(root))
    end)

    it("documents the table in 'help exit-codes'", function()
      local out = H.ok(nil, { "help", "exit-codes" })
      for _, code in ipairs({ "0", "1", "2", "3", "70", "125", "126", "127" }) do
        assert.truthy(out:find("\n%s+" .. code .. "  "), code .. " in:\n" .. out)
      end
      local doc = assert(ct.fs.read(H.src .. "/docs/exit-codes.md"))
      for _, code in ipairs({ "| 0 |", "| 2 |", "| 3 |", "| 70 |", "| 125 |", "| 126 |", "| 127 |" }) do
        assert.truthy(has(doc, code), code)
      end
    end)
  end)

  describe("exec", function()
    local root
    setup(function()
      root = H.root()
      H.ok(root, { "install", v2 })
    end)

    local function both(fn)
      fn("running")
      H.ok(root, { "stop", "web" })
      fn("stopped")
      H.ok(root, { "start", "web" })
    end

    it("passes the command's own status, 127 not found, 126 not executable, 125 its own failure", function()
      both(function(state)
        local r = H.ctcli(root, { "exec", "web", "sh", "-c", "exit 255" })
        assert.equals(255, r.code, state)
        assert.equals("", r.stderr, state)
        r = H.ctcli(root, { "exec", "web", "nosuchcmd" })
        assert.equals(127, r.code, state .. ": " .. r.stderr)
        assert.truthy(has(r.stderr, "ctcli: error: nosuchcmd: command not found in web"), r.stderr)
        assert.falsy(has(r.stderr, "level=error"), r.stderr)
        r = H.ctcli(root, { "exec", "web", "/no/such/file" })
        assert.equals(127, r.code, state .. ": " .. r.stderr)
        r = H.ctcli(root, { "exec", "web", "/etc" })
        assert.equals(126, r.code, state .. ": " .. r.stderr)
        assert.truthy(has(r.stderr, "/etc: not executable in web"), r.stderr)
      end)
      local r = H.ctcli(root, { "exec", "nosuchapp", "true" })
      assert.equals(125, r.code, r.stderr)
      r = H.ctcli(H.root(), { "exec", "web", "true" })
      assert.equals(125, r.code, r.stderr)
    end)

    it("accepts docker's -it, together or apart", function()
      assert.equals("hi\n", H.ok(root, { "exec", "-it", "web", "echo", "hi" }))
      assert.equals("hi\n", H.ok(root, { "exec", "-i", "-t", "web", "echo", "hi" }))
      -- after the app, the words are the command's own
      assert.equals("-it\n", H.ok(root, { "exec", "web", "echo", "-it" }))
    end)
  end)

  describe("idempotent delete and stop", function()
    it("succeed on a root with no release, saying so, and change nothing", function()
      local root = H.root()
      local before = H.root_hash(root)
      for _, cmd in ipairs({ "delete", "stop" }) do
        local r = H.ctcli(root, { "-y", cmd })
        assert.equals(0, r.code, r.stderr)
        assert.truthy(has(r.stdout, "no release installed"), r.stdout)
        assert.truthy(has(r.stdout, "nothing to " .. cmd), r.stdout)
      end
      local r = H.ctcli(root, { "--json", "-y", "delete" })
      assert.equals(0, r.code)
      assert.is_false(json.decode(r.stdout).purged)
      assert.truthy(has(r.stdout, '"deleted":null'), r.stdout)
      assert.equals(before, H.root_hash(root))
    end)

    it("succeed when run twice; the second delete --purge empties what the first left", function()
      local root = H.root()
      H.ok(root, { "install", v2 })
      H.ok(root, { "stop" })
      local r = H.ctcli(root, { "stop" })
      assert.equals(0, r.code)
      assert.truthy(has(r.stdout, "web is not running"), r.stdout)
      H.ok(root, { "-y", "delete" })
      assert.truthy(#ct.fs.dir(root .. "/data") > 0)
      -- purging what is left asks first: no terminal, no -y: cancelled
      r = H.ctcli(root, { "delete", "--purge" })
      assert.equals(3, r.code)
      assert.truthy(#ct.fs.dir(root .. "/data") > 0)
      assert.truthy(has(H.ok(root, { "-y", "delete", "--purge" }), "purged"))
      assert.same({}, ct.fs.dir(root .. "/data"))
      assert.truthy(has(H.ok(root, { "-y", "delete", "--purge" }), "nothing to delete"))
    end)
  end)

  describe("release engineering", function()
    it("says a public key given to sign is a public key", function()
      H.ok(nil, { "keygen", work .. "/rel" })
      local r = H.ctcli(nil, { "sign", v1, "--key", work .. "/rel.pub", "-o", work .. "/signed.pkg" })
      assert.equals(1, r.code)
      assert.truthy(has(r.stderr, "rel.pub: a public key; signing needs the private key"), r.stderr)
      assert.is_nil(ct.fs.lstat(work .. "/signed.pkg"))
    end)

    it("accepts \"$schema\" in a manifest; pack and convert write it; the schema's $id is a URL", function()
      local schema = assert(json.decode(assert(ct.fs.read(H.src .. "/manifests/release.schema.json"))))
      assert.equals("https://ctcli.dev/schemas/release.schema.json", schema["$id"])
      assert.equals("string", schema.properties["$schema"].type)
      local dir = extract(v1)
      edit_manifest(dir, function(doc) doc["$schema"] = "./release.schema.json" end)
      H.ok(nil, { "validate", dir })
      H.ok(nil, { "pack", dir, "-o", work .. "/own-schema.pkg" })
      assert.equals("./release.schema.json", packed_manifest(work .. "/own-schema.pkg")["$schema"])
      edit_manifest(dir, function(doc) doc["$schema"] = nil end)
      H.ok(nil, { "pack", dir, "-o", work .. "/packed.pkg" })
      assert.equals(schema["$id"], packed_manifest(work .. "/packed.pkg")["$schema"])
      H.ok(nil, { "validate", work .. "/packed.pkg" })
      H.ok(nil, { "convert", legacy, "-o", work .. "/converted.pkg" })
      assert.equals(schema["$id"], packed_manifest(work .. "/converted.pkg")["$schema"])
      edit_manifest(dir, function(doc) doc["$schema"] = 7 end)
      local r = H.ctcli(nil, { "validate", dir })
      assert.equals(1, r.code)
      assert.truthy(has(r.stdout, "$schema: expected a string"), r.stdout)
    end)

    it("validate runs hook files' tables: not functions, keys not ids, ids that misorder", function()
      local dir = extract(v1)
      assert(ct.fs.write_atomic(dir .. "/hooks/web.lua", [[
return {
  pre_start = "not a function",
  migrations = {
    ["9-first"] = function(ctx) end,
    ["10-second"] = function(ctx) end,
    ["0003-x"] = { "a table" },
    [4] = function(ctx) end,
  },
}
]]))
      local r = H.ctcli(nil, { "validate", dir })
      assert.equals(1, r.code)
      for _, want in ipairs({
        "hooks/web.lua: pre_start: expected a function, got a string",
        "hooks/web.lua: migrations[\"0003-x\"]: expected a function, got a table",
        "hooks/web.lua: migrations: key 4 is not an id",
        "'10-second' runs before '9-first'",
      }) do
        assert.truthy(has(r.stdout, want), want .. " in:\n" .. r.stdout)
      end
      -- a listed order is the order: text order does not matter then
      assert(ct.fs.write_atomic(dir .. "/hooks/web.lua",
        'return { migrations = { ["9-first"] = function() end, ["10-second"] = function() end } }\n'))
      edit_manifest(dir, function(doc) doc.apps[1].migrations = json.array({ "9-first", "10-second" }) end)
      H.ok(nil, { "validate", dir })
      -- and pack refuses a migration that is not a function
      assert(ct.fs.write_atomic(dir .. "/hooks/web.lua",
        'return { migrations = { ["0001-a"] = function() end, ["0002-b"] = "later" } }\n'))
      edit_manifest(dir, function(doc) doc.apps[1].migrations = nil end)
      local pkg = work .. "/bad-migration.pkg"
      local pr = H.ctcli(nil, { "pack", dir, "-o", pkg })
      assert.equals(1, pr.code)
      assert.truthy(has(pr.stderr, "migrations[\"0002-b\"]: expected a function, got a string"), pr.stderr)
    end)
  end)

  describe("backups", function()
    it("are named <time>-<reason>-<release hash>, sizes in MiB/KiB; old names still list and restore", function()
      local root = H.root()
      H.ok(root, { "install", "--no-start", v2 })
      local out = H.ok(root, { "backup" })
      assert.truthy(out:find("%d [KM]iB"), out)
      assert.falsy(out:find("%d [KMG]B"), out)
      local b = H.json(root, { "backup" })
      local name = b.path:match("[^/]+$")
      local hash = H.current(root):match("%-(%x+)$")
      -- (a second backup within the same second gets "-2")
      assert.truthy(name:match("^%d+T%d+Z%-manual%-" .. hash .. "%.tar%.zst$") or
        name:match("^%d+T%d+Z%-manual%-" .. hash .. "%-2%.tar%.zst$"), name)
      -- a backup named as before (<time>-<release id>) is listed and restored
      local bdir = root .. "/releases/backups"
      local rec_path = bdir .. "/" .. name:gsub("%.tar%.zst$", ".json")
      local rec = assert(json.decode(assert(ct.fs.read(rec_path))))
      local old = "20250101T000000Z-" .. H.current(root) .. ".tar.zst"
      assert(ct.fs.rename(b.path, bdir .. "/" .. old))
      assert(ct.fs.unlink(rec_path))
      rec.archive = old
      assert(ct.fs.write_atomic(bdir .. "/20250101T000000Z-" .. H.current(root) .. ".json", json.encode(rec, true)))
      local listed = false
      for _, lb in ipairs(H.json(root, { "list-releases" }).backups) do
        if lb.path:match("[^/]+$") == old then listed = true end
      end
      assert.is_true(listed)
      H.ok(root, { "-y", "rollback", bdir .. "/" .. old })
    end)
  end)

  describe("hook ctx", function()
    it("ctx.write keeps a file's mode and owner; ctx.read is an error outside the app's dirs", function()
      local root = H.root()
      H.ok(root, { "install", "--no-start", v1 })
      local conf = root .. "/config/web/etc/web/app.conf"
      assert(ct.fs.chmod(conf, 416)) -- 0640
      assert(ct.fs.chown(conf, 4242, 4343))
      H.ok(root, { "start", "web" })
      local st = assert(ct.fs.stat(conf))
      assert.equals(416, st.mode)
      assert.equals(4242, st.uid)
      assert.equals(4343, st.gid)
      assert.truthy(has(assert(ct.fs.read(conf)), "written=by a hook"))
      local log = assert(ct.fs.read(root .. "/logs/ctcli.log"))
      assert.truthy(log:find("read outside: [^\n]*ctx.read"), log)
      assert.truthy(has(log, "read absolute: ") and not has(log, "read absolute: no error"), log)
      assert.truthy(has(log, "is outside this app's config, data and logs"), log)
      assert.truthy(has(log, "missing is nil"), log)
    end)
  end)
end)
