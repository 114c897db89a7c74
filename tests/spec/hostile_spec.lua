-- Hostile and broken packages (tests/corpus/, made by tests/corpus/make-corpus):
-- each is refused with exit 1 and one stderr line naming the problem and the
-- package, leaves the root byte-identical and tmp/ empty, and writes nothing
-- outside the root (a canary directory next to it stays as it was).
local ct = require("ct")
local H = require("support.helpers")
local package = require("ctcli.model.package")

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
  { "duplicate-manifest.tar.gz", "a second manifest.json (as ./manifest.json) after the first",
    { "manifest.json: refusing a second entry of the same name" } },
  { "duplicate-entry.tar.gz", "a file named twice",
    { "images/web/oci-layout: refusing a second entry of the same name" } },
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
  -- -q: the refusal alone on stderr, without the step lines before it
  local r = H.ctcli(root, { "-q", "install", "--no-start", pkg })
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

  -- verify reads the archive as one stream (list refuses a second
  -- manifest.json); inspect and plan extract it, as install and upgrade do.
  for _, cmd in ipairs({ "verify", "inspect", "plan" }) do
    it("refuses two entries of one name in " .. cmd, function()
      local root, canary = fresh()
      H.ok(root, { "install", "--no-start", CORPUS .. "/valid.tar.gz" })
      local before, canary_before = H.root_hash(root), H.tree_hash(canary)
      for _, f in ipairs({ "duplicate-manifest.tar.gz", "duplicate-entry.tar.gz" }) do
        local r = H.ctcli(root, { "-q", cmd, CORPUS .. "/" .. f })
        assert.equals(1, r.code, r.stdout .. r.stderr)
        local line = r.stderr:match("^([^\n]*)\n$")
        assert.is_truthy(line, "not one line:\n" .. r.stderr)
        assert.is_truthy(line:find(f, 1, true), line)
        assert.is_truthy(line:find("refusing a second entry of the same name", 1, true), line)
      end
      assert.equals(before, (H.root_hash(root)))
      assert.equals(canary_before, (H.tree_hash(canary)))
      assert.same({}, tmp_entries(root))
    end)
  end

  it("strips setuid and setgid bits from package files and installs", function()
    local pkg = CORPUS .. "/setuid.tar.gz"
    local root, canary = fresh()
    local canary_before = H.tree_hash(canary)
    H.ok(root, { "install", "--no-start", pkg })
    assert.same({}, tmp_entries(root))
    assert.equals(canary_before, (H.tree_hash(canary)))
    -- What the package is extracted to (packages.open's options): no bits left.
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
    -- MAX_ENTRIES + 1 entries naming the archive's root ("./"): every header
    -- counts against the limit, so no file need be written to reach it (two
    -- entries of one other name are refused before, and as many distinct
    -- files would take minutes to create). One ustar header written again
    -- and again: a plain tar of 256 MiB, made in a second.
    local dir = H.tmpdir()
    local h = "./" .. string.rep("\0", 98) .. "0000755\0" .. "0000000\0" .. "0000000\0"
      .. "00000000000\0" .. "00000000000\0" .. "        " .. "5" .. string.rep("\0", 100) .. "ustar\0" .. "00"
    local sum = 0
    for i = 1, #h do sum = sum + h:byte(i) end
    h = h:sub(1, 148) .. string.format("%06o\0 ", sum) .. h:sub(157)
    h = h .. string.rep("\0", 512 - #h)
    local pkg = dir .. "/entry-bomb.tar"
    local f = assert(io.open(pkg, "wb"))
    local block = string.rep(h, 1000)
    for _ = 1, package.MAX_ENTRIES // 1000 do f:write(block) end
    f:write(h, string.rep("\0", 1024))
    f:close()
    assert.equals(package.MAX_ENTRIES + 1, #assert(ct.archive.list(pkg)))
    refused(pkg, { "./: the archive holds more than max_entries (" .. package.MAX_ENTRIES .. ")" })
  end)
end)
