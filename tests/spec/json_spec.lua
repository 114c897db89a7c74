-- The --json output contract (docs/json.md): every command's document
-- checked against its schema in docs/schemas by a validator written by
-- others (python3-jsonschema, through tests/support/check-json), on a real
-- root with real packages; errors as JSON with the same exit code; the
-- commands without a document refusing --json; compact and pretty output.
local ct = require("ct")
local cli = require("ctcli.cli")
local json = require("ctcli.base.json")
local H = require("support.helpers")

local SCHEMAS = H.src .. "/docs/schemas"
local CHECK = H.src .. "/tests/support/check-json"

describe("--json output contract", function()
  local dir, root, v1, v2, legacy

  -- check(schema, result) -> the decoded document(s) of a finished ctcli run,
  -- after the validator has passed every line of its stdout (the validator
  -- sees the nulls; decoded, a null is nil).
  local function check(schema, r)
    local file = dir .. "/out-" .. schema .. ".json"
    assert(ct.fs.write_atomic(file, r.stdout))
    local v = assert(ct.proc.run({ CHECK, SCHEMAS, schema, file }, { timeout = 120 }))
    assert(v.code == 0, string.format("%s does not match docs/schemas/%s.schema.json (exit %d):\n%s%s\nstdout was:\n%s",
      schema, schema, v.code, v.stdout, v.stderr, r.stdout))
    local docs = {}
    for line in r.stdout:gmatch("[^\n]+") do docs[#docs + 1] = assert(json.decode(line)) end
    return docs[1], docs
  end

  -- run(schema, args [, code]) -> the document (and every line's) of
  -- `ctcli --root ROOT --json args`, which must exit with code (0 unless
  -- given) and match its schema.
  local function run(schema, args, code, opts)
    local r = H.ctcli(root, { "--json", table.unpack(args) }, opts)
    assert(r.code == (code or 0), string.format("ctcli --json %s exited %d:\n%s%s",
      table.concat(args, " "), r.code, r.stdout, r.stderr))
    local doc, docs = check(schema, r)
    return doc, docs
  end

  lazy_setup(function()
    H.need_root()
    local py = assert(ct.proc.run({ "/usr/bin/python3", "-c", "import jsonschema" }))
    if py.code ~= 0 then
      error("python3-jsonschema is missing (scripts/install-deps.sh installs it)")
    end
    dir = H.tmpdir()
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web", "--app", "worker:depends=web" })
    v2 = H.package({ "--format", "manifest", "--version", "2.0.0", "--app", "web:mark=v2", "--app", "worker:depends=web" })
    legacy = H.package({ "--version", "3.0.0", "--app", "web" })
    root = H.tmpdir() .. "/root"
    -- H.cleanup kills and deletes its containers by id
    H.roots = H.roots or {}
    H.roots[#H.roots + 1] = root
  end)

  lazy_teardown(H.cleanup)

  it("has a schema for every command that prints a document, and the others say they have none", function()
    for _, name in ipairs(cli.COMMANDS) do
      local cmd = cli.command(name)
      local has = ct.fs.exists(SCHEMAS .. "/" .. name .. ".schema.json")
      assert(has ~= (cmd.no_json ~= nil), name .. ": needs either docs/schemas/" .. name ..
        ".schema.json or no_json (and not both)")
      local doc = assert(ct.fs.read(H.src .. "/docs/json.md"))
      assert.truthy(doc:find("`" .. name .. "`", 1, true), "docs/json.md does not name " .. name)
    end
  end)

  it("documents a root's life: init, install, the readers, upgrade, backup, rollback, stop, start, prune, delete", function()
    local d = run("init", { "init" })
    assert.is_true(d.created)
    -- no release yet: release null, apps empty, the same shapes
    d = run("release-info", { "release-info" })
    assert.is_nil(d.release)
    d = run("status", { "status" })
    assert.is_nil(d.release)
    d = run("install", { "-y", "install", v1 })
    local id1 = d.release.id
    assert.same({ "web", "worker" }, d.started)

    d = run("status", { "status" })
    assert.equals(id1, d.release.id)
    assert.equals(1, d.format)
    local web = d.apps[1]
    -- image is the reference, digest the sha256, in every document
    assert.equals("web", web.image)
    assert.truthy(web.digest:match("^sha256:%x+$"))
    run("status", { "-v", "status" })
    local info = run("release-info", { "release-info" })
    assert.equals(id1, info.release.id)
    assert.equals("manifest", info.release.package_format)
    assert.equals(web.digest, info.apps[1].digest)
    assert.equals(web.image, info.apps[1].image)
    d = run("list-releases", { "list-releases" })
    assert.equals(id1, d.releases[1].id)
    assert.equals(id1, d.backups[1].release.id)
    d = run("images", { "images" })
    assert.equals(2, #d.images)
    assert.equals("table", type(d.images[1].layers))
    d = run("plan", { "plan", v2 })
    assert.equals(id1, d.from.id)
    assert.is_nil(d.to.id)
    assert.equals(web.digest, d.changes[1].old_digest)
    assert.equals("web", d.changes[1].old_image)
    local insp = run("inspect", { "inspect", v2 })
    assert.equals(d.changes[1].new_digest, insp.apps[1].digest)
    assert.equals("2.0.0", insp.release.version)
    local _, lines = run("events", { "events", "--for", "0.3" })
    assert.equals(2, #lines, "one line per app")

    d = run("upgrade", { "-y", "upgrade", v2 })
    assert.equals(id1, d.from.id)
    local id2 = d.release.id
    assert.equals(id2, run("release-info", { "release-info" }).release.id)
    d = run("backup", { "backup" })
    assert.equals(id2, d.release.id)
    assert.truthy(ct.fs.exists(d.path))
    d = run("rotate-logs", { "rotate-logs", "--max-size", "1" })
    assert.equals("number", type(d.logs[1].bytes))
    d = run("rollback", { "-y", "rollback" })
    assert.equals(id1, d.release.id)
    assert.equals(id2, d.from.id)
    d = run("stop", { "stop", "worker" })
    assert.same({ "worker" }, d.stopped)
    d = run("start", { "start" })
    assert.same({ "worker" }, d.started)
    run("restart", { "restart", "web" })
    d = run("reset", { "-y", "reset", "worker" })
    assert.equals("worker", d.reset)
    d = run("prune", { "-y", "prune", "--keep", "1" })
    assert.equals("number", type(d.bytes))
    -- a staged release: stage, its plan, its row, its drop
    d = run("stage", { "stage", v2 })
    local staged_id = d.staged
    assert.equals(d.against, run("release-info", { "release-info" }).release.id)
    assert.truthy(d.package.bytes > 0)
    d = run("plan", { "plan", "--staged" })
    assert.equals(staged_id, d.staged.id)
    assert.is_true(d.staged.current)
    d = run("list-releases", { "list-releases" })
    assert.equals(staged_id, d.staged.id)
    d = run("prune", { "-y", "prune", "--staged" })
    assert.equals(staged_id, d.staged)
    assert.is_nil(run("list-releases", { "list-releases" }).staged)
    d = run("history", { "history" })
    assert.truthy(#d.entries >= 8)
    d = run("delete", { "-y", "delete" })
    assert.equals(id1, d.deleted.id)
    d = run("delete", { "-y", "delete" })
    assert.is_nil(d.deleted)
  end)

  it("documents the release engineer's tools: version, validate, verify, keygen, pack, convert", function()
    local d = run("version", { "version" })
    assert.equals("string", type(d.ctcli))
    d = run("validate", { "validate", v1 })
    assert.is_true(d.valid)
    -- a broken manifest: exit 1, and the problems are the document
    local bad = dir .. "/bad"
    assert(ct.fs.mkdir(bad, 493))
    assert(ct.fs.write_atomic(bad .. "/manifest.json", '{"manifest_version": 1, "apps": 5}'))
    d = run("validate", { "validate", bad .. "/manifest.json" }, 1)
    assert.is_false(d.valid)
    assert.truthy(#d.problems > 0)
    d = run("verify", { "verify", v1 })
    assert.is_true(d.ok)
    assert.is_nil(d.problem)
    d = run("keygen", { "keygen", dir .. "/k" })
    local key = d.private
    d = run("verify", { "verify", "--key", d.public, v1 }, 1)
    assert.is_false(d.ok)
    assert.equals("string", type(d.problem))
    d = run("convert", { "convert", legacy, "-o", dir .. "/conv.tar.zst", "--sign", key })
    assert.equals(1, d.apps)
    local src = dir .. "/src"
    assert(ct.fs.mkdir(src, 493))
    assert(ct.proc.run({ "tar", "-xf", dir .. "/conv.tar.zst", "-C", src }, { timeout = 120 }).code == 0)
    d = run("pack", { "pack", src, "-o", dir .. "/packed.tar.zst" })
    assert.is_false(d.signed)
  end)

  it("prints an error as {format, error} on stdout with the exit status it has without --json", function()
    assert(ct.fs.mkdir(dir .. "/empty", 493))
    -- a usage error (exit 2), found before parsing ends
    local r = H.ctcli(nil, { "--json", "nosuchcommand" })
    assert.equals(2, r.code)
    local d = check("error", r)
    assert.truthy(d.error:find("nosuchcommand", 1, true))
    assert.truthy(r.stderr:find("nosuchcommand", 1, true), "stderr keeps its line")
    -- a value error
    r = H.ctcli(nil, { "--json", "--hook-timeout", "0", "status" })
    assert.equals(2, r.code)
    check("error", r)
    -- a failure (exit 1): the same code as without --json
    local plain = H.ctcli(root, { "plan", dir .. "/nosuch.tar.gz" })
    r = H.ctcli(root, { "--json", "plan", dir .. "/nosuch.tar.gz" })
    assert.equals(plain.code, r.code)
    assert.equals(1, r.code)
    d = check("error", r)
    assert.truthy(d.error:find("nosuch.tar.gz", 1, true))
    -- cancelled (exit 3): no terminal to ask on and no -y
    local other = H.root()
    H.ok(other, { "-y", "install", v1 })
    r = H.ctcli(other, { "--json", "delete" }, { stdin = "" })
    assert.equals(3, r.code)
    check("error", r)
  end)

  it("refuses --json for a command that prints no document: a usage error, exit 2", function()
    for _, name in ipairs(cli.COMMANDS) do
      local cmd = cli.command(name)
      if cmd.no_json then
        local r = H.ctcli(root, { "--json", name })
        assert.equals(2, r.code, name)
        local d = check("error", r)
        assert.truthy(d.error:find("has no --json output", 1, true), name .. ": " .. d.error)
      end
    end
  end)

  it("is one compact line when stdout is no terminal, indented with --pretty", function()
    local compact = H.ok(nil, { "--json", "version" })
    assert.equals(1, select(2, compact:gsub("\n", "")))
    local pretty = H.ok(nil, { "--json", "--pretty", "version" })
    assert.truthy(pretty:find('\n  "format": 1,\n', 1, true), pretty)
    assert.same(json.decode(compact).ctcli, json.decode(pretty).ctcli)
  end)
end)
