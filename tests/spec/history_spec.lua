-- The root's history (state/history.jsonl, `ctcli history`): every changing
-- command, with its outcome, in the order they ended; kept across rollbacks
-- and restores; carried by backups; a torn last line never stops it.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local function entries(root)
  local doc = H.json(root, { "history" })
  assert.equals(1, doc.format)
  return doc.entries, doc
end

-- The words after the global options: what the operator asked for.
local function tail_of(e, n)
  local out = {}
  for i = #e.argv - n + 1, #e.argv do out[#out + 1] = e.argv[i] end
  return out
end

describe("history", function()
  local v1, v2, bad
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0" })
    bad = H.package({ "--version", "1.2.0", "--app", "web:mark=bad,version=1.2.0,health=fail" })
  end)
  teardown(H.cleanup)

  it("lists an install, an upgrade, an upgrade that rolled back, a failed, a refused and a cancelled command in order",
    function()
      local root = H.root()
      H.ok(root, { "install", v1 })
      local id1 = H.current(root)
      H.ok(root, { "-y", "upgrade", v2 }, { env = { SUDO_USER = "alice" } })
      local id2 = H.current(root)
      local r = H.ctcli(root, { "-y", "upgrade", bad })
      assert.equals(1, r.code, r.stdout .. r.stderr)
      assert.truthy(r.stderr:find("rolled back", 1, true), r.stderr)
      assert.equals(id2, H.current(root))
      r = H.ctcli(root, { "-y", "upgrade", root .. "/no-such-package.tar.gz" })
      assert.equals(1, r.code)
      -- Another ctcli holds the root: this one is refused before it begins.
      local held = assert(ct.lock.acquire(root .. "/state/lock",
        string.format("pid=%d command=upgrade since=2026-01-01T00:00:00Z\n", ct.proc.getpid())))
      r = H.ctcli(root, { "stop" })
      held:release()
      assert.equals(1, r.code)
      assert.truthy(r.stderr:find("another ctcli holds", 1, true), r.stderr)
      r = H.ctcli(root, { "rollback" }) -- no terminal, no -y
      assert.equals(3, r.code, r.stdout .. r.stderr)
      -- Readers leave no entry; nor does a watch run with nothing to restart.
      H.ok(root, { "status" })
      H.ok(root, { "start", "--restart-exited" })

      local list = entries(root)
      local got = {}
      for _, e in ipairs(list) do got[#got + 1] = e.command .. ":" .. e.result end
      assert.same({ "install:ok", "upgrade:ok", "upgrade:failed", "upgrade:failed", "stop:refused",
        "rollback:cancelled" }, got)
      local install, up, rolled, failed, refused, cancelled = table.unpack(list)

      for i, e in ipairs(list) do
        assert.equals(1, e.format)
        assert.equals(i, e.index)
        assert.truthy(e.started:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), e.started)
        assert.equals("integer", math.type(e.duration_ms))
        assert.truthy(e.duration_ms >= 0)
        assert.equals(0, e.user.uid)
        assert.equals("root", e.user.name)
        assert.equals("--root", e.argv[1])
        assert.equals(root, e.argv[2])
        if i > 1 then assert.truthy(e.started >= list[i - 1].started) end
      end

      assert.same({ "install", v1 }, tail_of(install, 2))
      assert.is_nil(install.release_before)
      assert.equals(id1, install.release_after)
      assert.equals(0, install.exit_code)
      assert.is_nil(install.error)

      assert.same({ "-y", "upgrade", v2 }, tail_of(up, 3))
      assert.equals(id1, up.release_before)
      assert.equals(id2, up.release_after)
      assert.equals("alice", up.user.sudo_user)
      assert.is_nil(install.user.sudo_user)

      -- The automatic rollback, visible as such: it left the root where it was.
      assert.equals(id2, rolled.release_before)
      assert.equals(id2, rolled.release_after)
      assert.equals(1, rolled.exit_code)
      assert.truthy(rolled.error:find("rolled back to " .. id2, 1, true), rolled.error)
      assert.is_table(rolled.rollback)
      assert.is_true(rolled.rollback.automatic)
      assert.is_true(rolled.rollback.ok)
      assert.equals(id2, rolled.rollback.to)
      assert.truthy(rolled.rollback.from ~= id2 and rolled.rollback.from:match("^%d+T%d+Z%-%x+$"), rolled.rollback.from)
      assert.is_string(rolled.rollback.failed_at)
      assert.is_nil(up.rollback)

      assert.equals(1, failed.exit_code)
      assert.truthy(failed.error:find("no-such-package", 1, true), failed.error)
      assert.is_nil(failed.error:find("\n", 1, true))
      assert.is_nil(failed.rollback)

      assert.equals(1, refused.exit_code)
      assert.truthy(refused.error:find("another ctcli holds", 1, true), refused.error)
      assert.equals(id2, refused.release_after)

      assert.equals(3, cancelled.exit_code)
      assert.truthy(cancelled.error:find("cancelled", 1, true), cancelled.error)
      assert.equals(id2, cancelled.release_before)
      assert.equals(id2, cancelled.release_after)

      -- -n keeps the newest; the table says what happened in words.
      local last = H.json(root, { "history", "-n", "2" }).entries
      assert.equals(2, #last)
      assert.equals("stop", last[1].command)
      assert.equals(6, last[2].index)
      local text = H.ok(root, { "history" })
      for _, word in ipairs({ "install", "refused (1)", "cancelled (3)", "automatic rollback to " .. id2,
        "alice (sudo)" }) do
        assert.truthy(text:find(word, 1, true), word .. " not in:\n" .. text)
      end
    end)

  it("survives a rollback and a restore; each backup carries the history, and a restore leaves the live one",
    function()
      local root = H.root()
      H.ok(root, { "install", v1 })
      local id1 = H.current(root)
      H.ok(root, { "-y", "upgrade", v2 })
      local id2 = H.current(root)
      local b = H.json(root, { "backup" })
      local names = {}
      for _, e in ipairs(assert(ct.archive.list(b.path))) do names[e.name] = true end
      assert.is_true(names["history.jsonl"])
      -- The copy in the archive is the history as it stood when it was taken.
      local dir = H.tmpdir()
      assert(ct.archive.extract(b.path, dir, { only = { ["history.jsonl"] = true } }))
      local copy = {}
      for line in assert(ct.fs.read(dir .. "/history.jsonl")):gmatch("[^\n]+") do
        copy[#copy + 1] = assert(json.decode(line)).command
      end
      assert.same({ "install", "upgrade" }, copy)

      H.ok(root, { "-y", "rollback" })
      assert.equals(id1, H.current(root))
      H.ok(root, { "-y", "rollback", b.path })
      assert.equals(id2, H.current(root))
      local got = {}
      for _, e in ipairs(entries(root)) do got[#got + 1] = e.command .. ":" .. e.result end
      assert.same({ "install:ok", "upgrade:ok", "backup:ok", "rollback:ok", "rollback:ok" }, got)
      local list = entries(root)
      assert.equals(id2, list[4].release_before)
      assert.equals(id1, list[4].release_after)
      assert.equals(id1, list[5].release_before)
      assert.equals(id2, list[5].release_after)
    end)

  it("skips a torn last line with a note, and the next entry still gets a line of its own", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local file = root .. "/state/history.jsonl"
    -- What a crash in the middle of a write leaves: a line without its end.
    local f = assert(ct.fs.open(file, { write = true, append = true }))
    assert(f:write('{"format":1,"command":"upgrade","started":"2026-'))
    f:close()
    local r = H.ctcli(root, { "--json", "history" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stderr:find("line 2", 1, true), r.stderr)
    assert.truthy(r.stderr:find("skipped", 1, true), r.stderr)
    local doc = assert(json.decode(r.stdout))
    assert.equals(1, #doc.entries)
    assert.same({ 2 }, doc.skipped_lines)

    H.ok(root, { "stop" })
    doc = H.json(root, { "history" })
    assert.equals(2, #doc.entries)
    assert.equals("install", doc.entries[1].command)
    assert.equals("stop", doc.entries[2].command)
    assert.equals("ok", doc.entries[2].result)
    assert.same({ 2 }, doc.skipped_lines)
    -- The file itself: whole lines, the torn one closed by the next writer.
    local text = assert(ct.fs.read(file))
    assert.equals("\n", text:sub(-1))
    assert.equals(3, select(2, text:gsub("\n", "")))
  end)

  it("records the adoption of a Go ctcli root as an entry of its own", function()
    -- A Go root that was only initialised: its marker and an empty current-release/.
    local root = H.tmpdir() .. "/go"
    assert(ct.fs.mkdir(root .. "/current-release", 493, true))
    assert(ct.fs.write_atomic(root .. "/.ctcli-init", ""))
    H.roots = H.roots or {}
    H.roots[#H.roots + 1] = root
    H.ok(root, { "install", v1 })
    local list = entries(root)
    assert.equals(2, #list)
    assert.equals("adopt", list[1].command)
    assert.is_true(list[1].automatic)
    assert.equals("install", list[1].by)
    assert.equals("ok", list[1].result)
    assert.equals("install", list[2].command)
    assert.equals(H.current(root), list[2].release_after)
  end)
end)
