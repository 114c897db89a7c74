-- ctest: unit
-- Cleanup by `<close>`: a journal held so is finished when its scope ends
-- unless the command kept it (or an error left it for recovery); a temp
-- dir goes on every exit; an opened package's cleanup runs once.
local ct = require("ct")
local journal = require("ctcli.journal.journal")
local tempdir = require("ctcli.base.tempdir")
local H = require("support.helpers")

local function paths_in(dir)
  return { journal = dir .. "/journal.json", state = dir }
end

describe("<close>", function()
  after_each(H.cleanup)

  it("finishes a journal when its scope ends, on a return and on a failure", function()
    local paths = paths_in(H.tmpdir())
    local function command(fail)
      local j <close> = assert(journal.begin(paths, "test", {}, { "one", "two" }))
      assert(j:step("one"))
      assert.truthy(ct.fs.lstat(paths.journal))
      if fail then return nil, "failed" end
      assert(j:step("two"))
      return true
    end
    assert.same({ nil, "failed" }, { command(true) })
    assert.is_nil(ct.fs.lstat(paths.journal))
    assert.is_true(command(false))
    assert.is_nil(ct.fs.lstat(paths.journal))
  end)

  it("keeps a journal the command kept, or that an error left", function()
    local paths = paths_in(H.tmpdir())
    do
      local j <close> = assert(journal.begin(paths, "test", {}, { "one" }))
      assert(j:step("one"))
      j:keep()
    end
    local kept = assert(journal.pending(paths))
    assert.equals("one", kept.doc.steps[1].name)
    assert(journal.discard(paths))
    local ok, err = pcall(function()
      local j <close> = assert(journal.begin(paths, "test", {}, { "one" }))
      assert(j:step("one"))
      error("a bug mid-step")
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("a bug mid-step", 1, true))
    assert.truthy(ct.fs.lstat(paths.journal))
  end)

  it("does not finish a journal twice", function()
    local paths = paths_in(H.tmpdir())
    local done
    do
      local j <close> = assert(journal.begin(paths, "test", {}, { "one" }))
      done = j:finish()
      -- Whatever is written there now is not the scope's to remove.
      assert(ct.fs.write_atomic(paths.journal, "{}"))
    end
    assert.is_true(done)
    assert.equals("{}", ct.fs.read(paths.journal))
  end)

  it("removes a temp dir on a return, on an error, and once only", function()
    local base = H.tmpdir()
    local seen
    local function use(fail)
      local tmp <close> = assert(tempdir.make(base .. "/t-XXXXXX"))
      seen = tmp.path
      assert(ct.fs.write_atomic(tmp.path .. "/f", "x"))
      if fail then error("boom") end
      return tmp.path
    end
    local used = use(false)
    assert.equals(seen, used)
    assert.is_nil(ct.fs.lstat(seen))
    assert.is_false(pcall(use, true))
    assert.is_nil(ct.fs.lstat(seen))
    do
      local tmp <close> = assert(tempdir.make(base .. "/t-XXXXXX"))
      tmp:remove()
      -- The same name made again by someone else stays.
      assert(ct.fs.mkdir(tmp.path, 448))
      seen = tmp.path
    end
    assert.truthy(ct.fs.lstat(seen))
    local none, err = tempdir.make(base .. "/missing/t-XXXXXX")
    assert.is_nil(none)
    assert.truthy(err)
  end)

  it("owns a tree another call made once tempdir.of names it", function()
    local base = H.tmpdir()
    local path = base .. "/made"
    do
      assert(ct.fs.mkdir(path, 448))
      local owned <close> = tempdir.of(path)
      assert(ct.fs.write_atomic(owned.path .. "/f", "x"))
    end
    assert.is_nil(ct.fs.lstat(path))
  end)

  it("runs an opened package's cleanup once when its scope ends", function()
    local calls = 0
    local function open() return tempdir.closing({ cleanup = function() calls = calls + 1 end }) end
    do
      local pkg <close> = open()
      assert.truthy(pkg.cleanup)
    end
    assert.equals(1, calls)
    assert.is_false(pcall(function()
      local pkg <close> = open()
      error(pkg and "boom")
    end))
    assert.equals(2, calls)
    assert.is_false(tempdir.closing(false))
    assert.is_nil(tempdir.closing(nil))
  end)
end)
