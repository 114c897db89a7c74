-- ctest: unit
-- ct.fs.opendir as the Lua layer sees it: the types it hands back, the
-- shape of its failures and the messages an operator reads.
local ct = require("ct")
local H = require("support.helpers")

local function octal(s) return tonumber(s, 8) end

describe("ct.fs.opendir", function()
  local base, logs, canary

  teardown(H.cleanup)

  before_each(function()
    base = H.tmpdir()
    assert(ct.fs.mkdir(base .. "/logs/web", octal("755"), true))
    canary = base .. "/canary"
    assert(ct.fs.write_atomic(canary, "host"))
    logs = assert(ct.fs.opendir(base .. "/logs/web"))
  end)

  after_each(function()
    logs:close()
    assert.equals("host", ct.fs.read(canary))
  end)

  it("hands back Dir and File userdata with their display paths", function()
    assert.matches("^ct.fs.Dir %(", tostring(logs))
    assert.equals(base .. "/logs/web", logs:path())
    assert.equals(base .. "/logs/web/stdout-stderr.log", logs:path("stdout-stderr.log"))
    local f = assert(logs:open("stdout-stderr.log", { write = true, create = true, append = true }))
    assert.matches("^ct.fs.File %(", tostring(f))
    assert.equals(logs:path("stdout-stderr.log"), f:path())
    assert.is_true(f:write("one\n"))
    f:close()
    assert.matches("closed", tostring(f))
    assert.has_error(function() f:write("x") end)
    local st = assert(logs:stat("stdout-stderr.log"))
    assert.same({ "file", 4, octal("640") }, { st.type, st.size, st.mode })
    for _, k in ipairs({ "uid", "gid", "nlink", "mtime", "ino", "dev" }) do
      assert.equals("integer", math.type(st[k]), k)
    end
    assert.same({ "stdout-stderr.log" }, logs:list(""))
    assert.equals("one\n", logs:read("stdout-stderr.log"))
    do
      local d <close> = assert(logs:opendir("sub", octal("750")))
      assert.equals(base .. "/logs/web/sub", d:path())
    end
    assert.equals("dir", logs:stat("sub").type)
  end)

  it("refuses a planted symlink, FIFO or path escape with one clear line", function()
    assert(ct.fs.symlink(canary, base .. "/logs/web/stdout-stderr.log"))
    local ok, msg, code = logs:open("stdout-stderr.log", { write = true, create = true, append = true })
    assert.is_nil(ok)
    assert.equals(base .. "/logs/web/stdout-stderr.log: a symlink, refusing to follow it", msg)
    assert.equals("integer", math.type(code))

    assert.equals(0, ct.proc.run({ "mkfifo", base .. "/logs/web/fifo" }).code)
    ok, msg = logs:read("fifo")
    assert.is_nil(ok)
    assert.equals(base .. "/logs/web/fifo: not a regular file (a FIFO)", msg)

    ok, msg = logs:open("../x")
    assert.is_nil(ok)
    assert.equals(base .. "/logs/web/../x: '..' is not allowed", msg)

    ok, msg = logs:write_atomic(canary, "pwned")
    assert.is_nil(ok)
    assert.matches("an absolute path is not allowed", msg, 1, true)
  end)

  it("keeps the tree-wide operations inside", function()
    assert(ct.fs.mkdir(base .. "/logs/web/a/b", octal("755"), true))
    assert(ct.fs.symlink(base, base .. "/logs/web/a/b/up"))
    assert(logs:write_atomic("a/f", "12345"))
    local bytes, files = logs:du("a")
    assert.equals(5 + #base, bytes)
    assert.equals(2, files)
    assert.is_true(logs:rmtree("a"))
    assert.is_false(logs:exists("a"))
    assert.is_true(ct.fs.exists(base .. "/logs/web"))
  end)

  it("compresses and copies on descriptors", function()
    local data = string.rep("a line of log output\n", 2000)
    assert(logs:write_atomic("part", data))
    local src = assert(logs:open("part"))
    local out = assert(logs:open("part.zst", { write = true, create = true, excl = true }))
    local bin, bout = src:zstd_to(out)
    out:close()
    assert.equals(#data, bin)
    assert.is_true(bout > 0 and bout < bin)
    local r = ct.proc.run({ "zstd", "-dc", logs:path("part.zst") })
    assert.equals(0, r.code)
    assert.equals(data, r.stdout)
    src:seek("set", 0)
    local copy = assert(logs:open("copy", { write = true, create = true, trunc = true }))
    assert.equals(#data, src:copy_to(copy))
    copy:close()
    src:close()
    assert.equals(data, logs:read("copy"))
  end)
end)

-- Archiving a tree an app writes (a backup of its rootfs or data): every
-- lookup is beneath a directory descriptor the walk holds, so a directory
-- swapped for a symlink after it was entered is never read through.
describe("ct.archive.create over a tree that changes under it", function()
  teardown(H.cleanup)

  it("reads a swapped directory's children from the directory it opened, not through the symlink", function()
    local base = H.tmpdir()
    local canary = base .. "/canary"
    assert(ct.fs.mkdir(canary, octal("755")))
    assert(ct.fs.write_atomic(canary .. "/shadow", "host secret\n"))
    assert(ct.fs.mkdir(base .. "/tree/d", octal("755"), true))
    assert(ct.fs.write_atomic(base .. "/tree/d/a", "first\n"))
    assert(ct.fs.write_atomic(base .. "/tree/d/shadow", "inside\n"))
    local out = base .. "/out.tar.zst"
    local swapped = false
    -- The first progress call comes right after the header of "d", before
    -- its children are listed: the moment an app would swap it.
    assert(ct.archive.create(out, { { name = "d", path = base .. "/tree/d" } }, {
      progress = function()
        if swapped then return end
        swapped = true
        assert(ct.fs.rename(base .. "/tree/d", base .. "/tree/d.old"))
        assert(ct.fs.symlink(canary, base .. "/tree/d"))
      end,
    }))
    assert.is_true(swapped)
    local l = assert(ct.archive.list(out, { read = { ["d/shadow"] = 100, ["d/a"] = 100 } }))
    assert.same({ "d/a", "first\n", "d/shadow", "inside\n" }, { l[2].name, l[2].data, l[3].name, l[3].data })
  end)

  it("leaves out a FIFO swapped in for a file instead of blocking on it", function()
    local base = H.tmpdir()
    assert(ct.fs.mkdir(base .. "/tree/d", octal("755"), true))
    assert(ct.fs.write_atomic(base .. "/tree/d/a", "first\n"))
    assert(ct.fs.write_atomic(base .. "/tree/d/b", "second\n"))
    local out = base .. "/out.tar.zst"
    local swapped = false
    local res = assert(ct.archive.create(out, { { name = "d", path = base .. "/tree/d" } }, {
      progress = function()
        if swapped then return end
        swapped = true
        -- b was listed as a file; it becomes a FIFO before it is opened
        assert(ct.fs.unlink(base .. "/tree/d/b"))
        assert(ct.proc.run({ "mkfifo", base .. "/tree/d/b" }).code == 0)
      end,
    }))
    assert.is_true(swapped)
    local l = assert(ct.archive.list(out, { read = { ["d/a"] = 100 } }))
    assert.same({ "d/a", "first\n" }, { l[2].name, l[2].data })
    assert.truthy(res)
  end)
end)

describe("Dir:shift_tree", function()
  teardown(H.cleanup)

  it("keeps setuid bits for an image and drops them in an app's trees", function()
    local base = H.tmpdir()
    for _, n in ipairs({ "image", "app" }) do
      assert(ct.fs.mkdir(base .. "/" .. n, octal("755")))
      assert(ct.fs.write_atomic(base .. "/" .. n .. "/suid", "#!/bin/sh\n"))
      assert(ct.fs.chown(base .. "/" .. n .. "/suid", 200000, 200000))
      assert(ct.fs.chmod(base .. "/" .. n .. "/suid", octal("4755")))
    end
    local d = assert(ct.fs.opendir(base))
    local from, to = { uid = 200000, gid = 200000, size = 65536 }, { uid = 0, gid = 0, size = 65536 }
    assert(d:shift_tree("image", from, to))
    assert(d:shift_tree("app", from, to, { keep_setid = false }))
    d:close()
    local img, app = ct.fs.lstat(base .. "/image/suid"), ct.fs.lstat(base .. "/app/suid")
    assert.equals(0, img.uid)
    assert.equals(octal("4755"), img.mode & octal("7777"))
    assert.equals(0, app.uid)
    assert.equals(octal("755"), app.mode & octal("7777"))
  end)
end)
