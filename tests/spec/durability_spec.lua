-- Durability, read off the system calls of a real upgrade (strace -f):
-- every metadata file is written to a temp file, fsynced, renamed over its
-- name and its directory fsynced, or written into a new directory of tmp/
-- that is renamed in whole only after a syncfs (the release, an image, an
-- upper, a layer: ctcli.store.scratch); nothing is rewritten in place; and the
-- journal says a step began before the step acts.
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

-- parse(log) -> per line {pid=, call=, args=, full=, ret=}: strace -y
-- writes a descriptor as 3</its/path>; args has the bare numbers, full has
-- each (directory descriptor, name) pair as the one path it names, since
-- ctcli acts on names relative to an open directory.
local function parse(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local pid, call, raw, ret = line:match("^(%d+)%s+([%w_]+)%((.*)%)%s+=%s+(%-?%d+)")
    if pid then
      local full = raw:gsub('%d+<([^>]*)>, "([^"]*)"', '"%1/%2"')
      out[#out + 1] = { pid = pid, call = call, args = (raw:gsub("(%d+)<[^>]*>", "%1")), full = full,
        ret = tonumber(ret), line = line }
    end
  end
  return out
end

describe("durability of an upgrade", function()
  local calls
  setup(function()
    local v1 = H.package({ "--version", "1.0.0", "--app", "web:health=none", "--app", "db:health=none" })
    local v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })
    local root = H.root()
    H.ok(root, { "install", v1 })
    local log = H.tmpdir() .. "/strace.log"
    local r = assert(ct.proc.run({ "strace", "-f", "-qq", "-y", "-s", "65536", "-o", log,
      -- follow ctcli's own forks (hooks), detach from the programs it runs (runc, umoci)
      "-b", "execve", "-e", "trace=openat,write,fsync,fdatasync,syncfs,rename,renameat,renameat2,close",
      H.bin, "--root", root, "-y", "upgrade", v2 }, {
      -- LeakSanitizer cannot run under ptrace (the sanitizer build).
      env_add = { ASAN_OPTIONS = "detect_leaks=0" }, timeout = 300,
    }))
    assert.equals(0, r.code, r.stderr)
    calls = parse(assert(ct.fs.read(log)))
    assert.truthy(#calls > 100)
  end)
  teardown(H.cleanup)

  it("writes each metadata file as temp, fsync, rename, fsync of the directory", function()
    local checked = 0
    for i, c in ipairs(calls) do
      local dirfd, tmp, dst = c.args:match('^(%d+), "(%.[^"]+%.%x+%.tmp)", %d+, "([^"]+)"')
      if c.call == "renameat" and dirfd and c.ret == 0 then
        -- the temp was opened exclusively, written and fsynced before the rename
        local fd
        for k = i - 1, 1, -1 do
          local o = calls[k]
          if o.pid == c.pid and o.call == "openat" and o.args:find('"' .. tmp .. '"', 1, true) then
            assert.truthy(o.args:find("O_EXCL", 1, true), o.line)
            fd = o.ret
            break
          end
        end
        assert.truthy(fd, "no open of " .. tmp)
        local fsynced = false
        for k = i - 1, 1, -1 do
          local o = calls[k]
          if o.pid == c.pid and o.call == "fsync" and tonumber(o.args) == fd then fsynced = true break end
          if o.pid == c.pid and o.call == "openat" and o.args:find('"' .. tmp .. '"', 1, true) then break end
        end
        assert.is_true(fsynced, dst .. " was renamed into place without an fsync")
        -- and the directory is fsynced after
        local dir_synced = false
        for k = i + 1, math.min(#calls, i + 20) do
          local o = calls[k]
          if o.pid == c.pid and o.call == "fsync" and tonumber(o.args) == tonumber(dirfd) then dir_synced = true break end
        end
        assert.is_true(dir_synced, "the directory of " .. dst .. " was not fsynced after the rename")
        checked = checked + 1
      end
    end
    -- release.json, the bundles, the journal (many times), the backup's metadata...
    assert.truthy(checked >= 10, "only " .. checked .. " atomic writes seen")
  end)

  it("renames a directory built in tmp/ in only after a syncfs of everything written in it", function()
    local checked = 0
    for i, c in ipairs(calls) do
      local src = (c.call == "rename" or c.call == "renameat" or c.call == "renameat2") and c.ret == 0
        and c.full:match('"([^"]*/tmp/[a-z]+%-[^"]*)"')
      if src and (src:match("/release%-%w+$") or src:match("/image%-[%w_.-]+$") or src:match("/upper%-[%w_.-]+$")
          or src:match("/layer%-%w+/tree$")) then
        local last_write, last_sync = 0, 0
        for k = 1, i - 1 do
          local o = calls[k]
          if o.pid == c.pid and o.call == "openat" and o.args:find("O_CREAT", 1, true)
              and o.full:find('"' .. src .. "/", 1, true) then
            last_write = k
          elseif o.pid == c.pid and o.call == "syncfs" and o.ret == 0 then
            last_sync = k
          end
        end
        assert.truthy(last_write > 0 or src:match("/tree$"), "nothing written in " .. src)
        assert.truthy(last_sync > last_write, src .. " renamed in without a syncfs after its last file was made")
        checked = checked + 1
      end
    end
    -- the new release, the changed app's image, its layer and its upper
    assert.truthy(checked >= 4, "only " .. checked .. " directories seen")
  end)

  it("never rewrites a metadata file in place", function()
    local opened = 0
    for _, c in ipairs(calls) do
      local path = c.call == "openat" and c.args:match('"([^"]+)"') or ""
      if path:match("%.json$") or path:match("%.json%.%x+%.tmp$") then
        opened = opened + 1
        assert.falsy(c.args:find("O_TRUNC", 1, true), "opened with O_TRUNC: " .. c.line)
      end
    end
    -- the trace holds the metadata opens it judges (read and written)
    assert.truthy(opened >= 10, "only " .. opened .. " opens of metadata files seen")
  end)

  it("writes the journal's step before the step acts", function()
    -- the swap is the rename of .current-release.new over current-release
    local swap_at
    for i, c in ipairs(calls) do
      if (c.call == "rename" or c.call == "renameat" or c.call == "renameat2") and c.args:find("current%-release\"") and
        c.args:find(".current-release.new", 1, true) then
        swap_at = i
      end
    end
    assert.truthy(swap_at, "no swap seen")
    local journal_swap
    for i = 1, swap_at do
      local c = calls[i]
      if c.call == "write" and c.args:find('\\"name\\": \\"swap\\"', 1, true) then journal_swap = i end
    end
    assert.truthy(journal_swap, "the journal did not record the swap before it happened")
    -- and that journal write was committed (renamed into place) before the swap too
    local committed = false
    for i = journal_swap, swap_at do
      local c = calls[i]
      if c.call == "renameat" and c.args:find('"journal.json"', 1, true) then committed = true end
    end
    assert.is_true(committed)
  end)
end)
