-- Hostile and broken packages (tests/corpus/, made by tests/corpus/make-corpus):
-- each is refused with exit 1 and one stderr line naming the problem and the
-- package, leaves the root byte-identical and tmp/ empty, and writes nothing
-- outside the root (a canary directory next to it stays as it was).
local ct = require("ct")
local H = require("support.helpers")
local package = require("ctcli.package")

H.need_root()

local CORPUS = H.src .. "/tests/corpus"
local ABSOLUTE_TARGET = "/tmp/ctcli-hostile-corpus-absolute"

-- file, what the spec says, the words the error line must hold
local CASES = {
  { "dotdot-path.tar.gz", "a path with '..'", { "../../../canary/pwned", "refusing a path with '..'" } },
  { "absolute-path.tar.gz", "an absolute path", { ABSOLUTE_TARGET .. "/pwned", "refusing an absolute path" } },
  { "symlink-then-file.tar.gz", "a symlink then a file through it",
    { "images/escape/pwned", "through the symlink images/escape" } },
  { "hardlink-outside.tar.gz", "a hard link to a file outside (absolute)",
    { "images/passwd", "hard link to /etc/passwd", "absolute" } },
  { "hardlink-dotdot.tar.gz", "a hard link to a file outside (..)",
    { "images/secret", "hard link to ../../../canary/secret", "'..'" } },
  { "device-node.tar.gz", "a character device", { "images/null", "refusing a device node" } },
  { "block-device.tar.gz", "a block device", { "images/sda", "refusing a device node" } },
  { "fifo.tar.gz", "a fifo", { "images/pipe", "refusing a fifo" } },
  { "size-bomb.tar.gz", "an entry declaring more than the size limit",
    { "images/bomb.bin", "more than max_bytes" } },
  { "not-gzip.tar.gz", "a file that is not an archive", { "not a tar archive" } },
  { "truncated-gzip.tar.gz", "a cut gzip stream", { "truncated gzip" } },
  { "invalid-json.tar.gz", "a manifest that is not JSON", { "manifest.json", "line 2" } },
  { "schema-violation.tar.gz", "a schema violation", { "manifest.json", "apps.web.entrypoint", "expected an array" } },
  { "invalid-app-name.tar.gz", "an invalid app name", { "manifest.json", "invalid app name", "Web App!" } },
  { "duplicate-app-name.tar.gz", "a duplicate app name", { "manifest.json", "duplicate app name 'web'" } },
  { "missing-image.tar.gz", "a missing image", { "app web", "no OCI image layout at images/web" } },
  { "missing-tag.tar.gz", "a missing tag", { "app web", "has no tag 'v9.9.9'" } },
  { "digest-mismatch.tar.gz", "a blob whose digest does not match", { "app web", "does not match its digest" } },
}

-- A fresh root with a canary directory next to it.
local function fresh()
  local root = H.root()
  local canary = root:gsub("/root$", "") .. "/canary"
  assert(ct.fs.mkdir(canary, 493))
  assert(ct.fs.write_atomic(canary .. "/secret", "keep me\n"))
  return root, canary
end

local function tmp_entries(root)
  return ct.fs.dir(root .. "/tmp") or {}
end

-- Runs `install pkg` on a fresh root and checks everything a refusal must keep.
local function refused(pkg, words)
  local root, canary = fresh()
  local before, canary_before = H.root_hash(root), H.tree_hash(canary)
  local r = H.ctcli(root, { "install", "--no-start", pkg })
  assert.equals(1, r.code, r.stdout .. r.stderr)
  local line = r.stderr:match("^([^\n]*)\n$")
  assert.is_truthy(line, "not one line:\n" .. r.stderr)
  assert.is_truthy(line:find(pkg:match("[^/]+$"), 1, true), "does not name the package: " .. line)
  for _, w in ipairs(words) do
    assert.is_truthy(line:find(w, 1, true), "missing '" .. w .. "' in: " .. line)
  end
  assert.equals(before, (H.root_hash(root)))
  assert.equals(canary_before, (H.tree_hash(canary)))
  assert.same({}, tmp_entries(root))
  assert.is_falsy(ct.fs.lstat(ABSOLUTE_TARGET))
  return line
end

describe("hostile packages", function()
  teardown(H.cleanup)

  it("installs the valid control package of the corpus", function()
    local root, canary = fresh()
    local canary_before = H.tree_hash(canary)
    H.ok(root, { "install", "--no-start", CORPUS .. "/valid.tar.gz" })
    assert.same({}, tmp_entries(root))
    assert.equals(canary_before, (H.tree_hash(canary)))
  end)

  for _, c in ipairs(CASES) do
    it("refuses " .. c[2] .. " (" .. c[1] .. ")", function()
      assert.is_falsy(ct.fs.lstat(ABSOLUTE_TARGET), ABSOLUTE_TARGET .. " exists before the test")
      refused(CORPUS .. "/" .. c[1], c[3])
    end)
  end

  it("strips setuid and setgid bits from package files and installs", function()
    local pkg = CORPUS .. "/setuid.tar.gz"
    local root, canary = fresh()
    local canary_before = H.tree_hash(canary)
    H.ok(root, { "install", "--no-start", pkg })
    assert.same({}, tmp_entries(root))
    assert.equals(canary_before, (H.tree_hash(canary)))
    -- What the package is extracted to (package.open's options): no bits left.
    local dir = H.tmpdir()
    assert(ct.archive.extract(pkg, dir, {
      max_entries = package.MAX_ENTRIES, max_bytes = package.MAX_BYTES, check_space = true }))
    for _, f in ipairs({ "tools/suid", "tools/sgid" }) do
      local st = assert(ct.fs.lstat(dir .. "/" .. f))
      assert.equals(0, st.mode & 3072, f .. string.format(" mode %o", st.mode))
      assert.equals(493, st.mode & 511, f .. string.format(" mode %o", st.mode))
    end
  end)

  it("refuses an archive with more entries than the limit (made at test time)", function()
    -- MAX_ENTRIES + 1 empty files, all named the same so the disk holds one.
    local dir = H.tmpdir()
    assert(ct.fs.write_atomic(dir .. "/empty", ""))
    local entries = {}
    for i = 1, package.MAX_ENTRIES + 1 do entries[i] = { name = "bomb/e", path = dir .. "/empty" } end
    local pkg = dir .. "/entry-bomb.tar.gz"
    assert(ct.archive.create(pkg, entries, { format = "gzip", mtime = 0, owner0 = true }))
    entries = nil -- luacheck: ignore 311
    collectgarbage()
    refused(pkg, { "bomb/e", "more than max_entries (" .. package.MAX_ENTRIES .. ")" })
  end)
end)
