-- ctest: unit
-- The front end, end to end through the real binary: help, version, init,
-- global options, usage errors, a root that is not one.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

describe("ctcli front end", function()
  after_each(H.cleanup)

  it("lists every registered command in help, with its summary", function()
    local out = H.ok(nil, { "help" })
    local cli = require("ctcli.cli")
    for _, name in ipairs(cli.COMMANDS) do
      assert.truthy(out:find("\n  " .. name:gsub("%-", "%%-") .. "%s+%S"), name .. " missing from help")
    end
    assert.truthy(out:find("--hook-timeout SECONDS", 1, true))
  end)

  it("shows one command's usage and options with help CMD and CMD --help", function()
    local a = H.ok(nil, { "help", "install" })
    local b = H.ok(nil, { "install", "--help" })
    assert.equals(a, b)
    assert.truthy(a:find("Usage: ctcli install", 1, true))
    assert.truthy(a:find("--no-start", 1, true))
  end)

  it("prints the version, and the tools' versions with -v", function()
    assert.equals("ctcli " .. ct.version .. "\n", H.ok(nil, { "version" }))
    local v = H.ok(nil, { "-v", "version" })
    assert.truthy(v:find("lua Lua 5.4", 1, true))
    assert.truthy(v:find("libarchive 3", 1, true))
    assert.truthy(v:match("runc %d"))
    assert.truthy(v:match("umoci %d"))
  end)

  it("exits 2 with a hint on an unknown command or option", function()
    local r = H.ctcli(nil, { "instal" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("unknown command 'instal'", 1, true))
    assert.truthy(r.stderr:find("did you mean 'install'", 1, true))
    r = H.ctcli(nil, { "status", "--jsn" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("did you mean '--json'", 1, true))
    r = H.ctcli(nil, { "install" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("ctcli install", 1, true))
  end)

  it("creates the root layout, idempotently, with private config and data", function()
    local root = H.tmpdir() .. "/r"
    H.ok(root, { "init" })
    local before = H.tree_hash(root)
    local out = H.ok(root, { "init" })
    assert.truthy(out:find("already a root", 1, true))
    assert.equals(before, H.tree_hash(root))
    for _, d in ipairs({ "state", "config", "data", "logs", "releases/backups", "images",
      "trusted-keys", "hooks", "runc-root", "tmp" }) do
      assert.equals("dir", ct.fs.stat(root .. "/" .. d).type, d)
    end
    assert.truthy(ct.fs.exists(root .. "/.ctcli-init"))
    assert.equals("1\n", ct.fs.read(root .. "/state/format"))
    assert.equals(0, ct.fs.stat(root .. "/config").mode & 7)
    assert.equals(0, ct.fs.stat(root .. "/data").mode & 7)
  end)

  it("recognises a root made by the Go ctcli and completes it in place", function()
    local root = H.tmpdir() .. "/go"
    assert(ct.fs.mkdir(root .. "/data/app", 493, true))
    assert(ct.fs.write_atomic(root .. "/.ctcli-init", ""))
    assert(ct.fs.write_atomic(root .. "/data/app/db", "keep me"))
    local out = H.ok(root, { "init" })
    assert.truthy(out:find("Go ctcli", 1, true))
    assert.equals("keep me", ct.fs.read(root .. "/data/app/db"))
    assert.truthy(ct.fs.exists(root .. "/state/format"))
  end)

  it("prints a valid JSON status with no apps on a fresh root", function()
    local root = H.tmpdir() .. "/r"
    H.ok(root, { "init" })
    local doc = H.json(root, { "status" })
    assert.same({}, doc.apps)
    assert.equals(root, doc.root)
    assert.is_nil(doc.release)
    assert.truthy(H.ok(root, { "--json", "status" }):find('"apps":[]', 1, true))
  end)

  it("refuses a directory that is not a root, saying how to make one", function()
    local dir = H.tmpdir()
    local r = H.ctcli(dir, { "status" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("is not a ctcli root", 1, true))
    assert.truthy(r.stderr:find("ctcli --root " .. dir .. " init", 1, true))
    assert.equals("", r.stdout)
    local lines = select(2, r.stderr:gsub("\n", ""))
    assert.equals(1, lines)
  end)

  it("takes the root from CTCLI_ROOT, then the current directory", function()
    local root = H.tmpdir() .. "/r"
    H.ok(root, { "init" })
    local a = H.ctcli(nil, { "--json", "status" }, { env = { CTCLI_ROOT = root } })
    assert.equals(0, a.code)
    assert.equals(root, json.decode(a.stdout).root)
    local b = H.ctcli(nil, { "--json", "status" }, { cwd = root, env = { CTCLI_ROOT = "" } })
    assert.equals(0, b.code, b.stderr)
    assert.equals(root, json.decode(b.stdout).root)
  end)

  it("runs every command from a copy of the binary alone in an empty directory", function()
    local dir = H.tmpdir()
    assert(ct.fs.copyfile(H.bin, dir .. "/ctcli", 493))
    local root = dir .. "/root"
    local env = { CTCLI_LUA_DIR = "" }
    local r = assert(ct.proc.run({ dir .. "/ctcli", "--root", root, "init" }, { env_add = env, cwd = dir }))
    assert.equals(0, r.code, r.stderr)
    r = assert(ct.proc.run({ dir .. "/ctcli", "help" }, { env_add = env, cwd = dir }))
    assert.equals(0, r.code, r.stderr)
    local cli = require("ctcli.cli")
    for _, name in ipairs(cli.COMMANDS) do
      r = assert(ct.proc.run({ dir .. "/ctcli", "help", name }, { env_add = env, cwd = dir }))
      assert.equals(0, r.code, name .. ": " .. r.stderr)
    end
  end)

  it("exits 70 on an internal error, with a traceback only with -v", function()
    local dir = H.tmpdir()
    assert(ct.fs.mkdir(dir .. "/ctcli/commands", 493, true))
    -- A version command that has a bug, loaded through CTCLI_LUA_DIR.
    assert(ct.fs.write_atomic(dir .. "/ctcli/commands/version.lua",
      "return { summary = 'x', run = function() local t = nil; return t.field end }"))
    local src = H.src .. "/lua/ctcli"
    for _, f in ipairs(ct.fs.dir(src)) do
      if f:match("%.lua$") then assert(ct.fs.copyfile(src .. "/" .. f, dir .. "/ctcli/" .. f)) end
    end
    for _, f in ipairs(ct.fs.dir(src .. "/commands")) do
      if f ~= "version.lua" then assert(ct.fs.copyfile(src .. "/commands/" .. f, dir .. "/ctcli/commands/" .. f)) end
    end
    local r = H.ctcli(nil, { "version" }, { env = { CTCLI_LUA_DIR = dir } })
    assert.equals(70, r.code)
    assert.truthy(r.stderr:find("internal error", 1, true))
    assert.falsy(r.stderr:find("stack traceback", 1, true))
    r = H.ctcli(nil, { "-v", "version" }, { env = { CTCLI_LUA_DIR = dir } })
    assert.equals(70, r.code)
    assert.truthy(r.stderr:find("stack traceback", 1, true))
  end)
end)
