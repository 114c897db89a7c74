-- The rest of the container→host attack surface (issue 11, item 4), end to
-- end on real roots: a crafted backup is refused before anything of it
-- leaves tmp/, and the root and a canary next to it stay as they were.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

-- A fresh root with a canary directory next to it.
local function fresh()
  local root = H.root()
  local canary = root:gsub("/root$", "") .. "/canary"
  assert(ct.fs.mkdir(canary, 493))
  assert(ct.fs.write_atomic(canary .. "/secret", "keep me\n"))
  return root, canary
end

-- one_line(r) -> the only line of stderr (fails otherwise; -q keeps step lines out)
local function one_line(r)
  local line = r.stderr:match("^([^\n]*)\n$")
  assert.is_truthy(line, "not one line:\n" .. r.stderr)
  return line
end

local function edit_json(path, fn)
  local doc = assert(json.decode(assert(ct.fs.read(path))))
  fn(doc)
  assert(ct.fs.write_atomic(path, json.encode(doc, true) .. "\n"))
end

describe("rollback ARCHIVE", function()
  local root, canary, backup_file
  setup(function()
    root, canary = fresh()
    local pkg = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web" })
    H.ok(root, { "install", "--no-start", pkg })
    assert(ct.fs.write_atomic(root .. "/data/web/records", "precious\n"))
    backup_file = H.json(root, { "backup" }).path
  end)
  teardown(H.cleanup)

  -- craft(name, fn) -> a copy of the backup, extracted, changed by fn(dir), repacked.
  local function craft(name, fn)
    local dir = H.tmpdir()
    assert(ct.archive.extract(backup_file, dir, { preserve = true }))
    fn(dir)
    local entries = {}
    for _, n in ipairs(ct.fs.dir(dir)) do entries[#entries + 1] = { name = n, path = dir .. "/" .. n } end
    local out = H.tmpdir() .. "/" .. name .. ".tar.zst"
    assert(ct.archive.create(out, entries))
    return out
  end

  local function app_of(rel, name)
    for _, a in ipairs(rel.apps) do if a.name == name then return a end end
  end

  it("restores a backup repacked unchanged (the control)", function()
    local copy = craft("unchanged", function() end)
    assert(ct.fs.write_atomic(root .. "/data/web/records", "changed\n"))
    H.ok(root, { "-y", "rollback", copy })
    assert.equals("precious\n", ct.fs.read(root .. "/data/web/records"))
  end)

  it("restores a setuid file an app left in its data without the bit (nothing it plants blocks the way back)",
    function()
      local copy = craft("suid", function(dir)
        assert(ct.fs.write_atomic(dir .. "/data/web/suid", "#!/bin/sh\n"))
        assert(ct.fs.chmod(dir .. "/data/web/suid", 2541)) -- 04755
      end)
      H.ok(root, { "-y", "rollback", copy })
      assert.equals(493, ct.fs.lstat(root .. "/data/web/suid").mode & 4095) -- 0755
    end)

  it("restores a backup made before device nodes were left out of images, skipping the node with a warning", function()
    -- an older ctcli kept /dev/console (umoci made it from a Debian root)
    local copy = craft("device", function(dir)
      for _, key in ipairs(ct.fs.dir(dir .. "/images")) do
        assert(ct.fs.mkdir(dir .. "/images/" .. key .. "/rootfs/dev", 493, true))
        local r = ct.proc.run({ "mknod", dir .. "/images/" .. key .. "/rootfs/dev/console", "c", "5", "1" })
        assert.equals(0, r.code, r.stderr)
      end
    end)
    -- the restore places the backup's images only where the store has none
    ct.fs.rmtree(root .. "/images")
    assert(ct.fs.mkdir(root .. "/images", 456))
    local r = H.ctcli(root, { "-y", "rollback", copy })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("dev/console: skipped a device node", 1, true), r.stderr)
    assert.equals("", ct.proc.run({ "find", root .. "/images", "-type", "c" }).stdout)
    assert.equals("precious\n", ct.fs.read(root .. "/data/web/records"))
  end)

  local CASES = {
    { "an app named ../x", function(dir)
      edit_json(dir .. "/current-release/release.json", function(rel) app_of(rel, "web").name = "../x" end)
      edit_json(dir .. "/backup-info.json", function(info) info.apps["../x"], info.apps.web = info.apps.web, nil end)
    end, "invalid app name \"../x\"" },
    { "a release id that is not an id", function(dir)
      edit_json(dir .. "/current-release/release.json", function(rel) rel.id = "../../../canary" end)
      edit_json(dir .. "/backup-info.json", function(info) info.release = "../../../canary" end)
    end, "backup-info.json: release \"../../../canary\" is not a release id" },
    { "a data path with ..", function(dir)
      edit_json(dir .. "/current-release/release.json", function(rel)
        app_of(rel, "web").data = json.array({ "/var/lib/../../../../canary" })
      end)
    end, "apps.web.data" },
    { "an entry a backup never holds", function(dir)
      assert(ct.fs.mkdir(dir .. "/releases", 493))
      assert(ct.fs.write_atomic(dir .. "/releases/evil", "x"))
    end, "releases: not part of a ctcli backup" },
    { "an image of no app of the release", function(dir)
      assert(ct.fs.mkdir(dir .. "/images/evil@sha256:" .. string.rep("0", 64), 493))
    end, "images/evil@sha256:" },
    { "metadata that does not match the release", function(dir)
      edit_json(dir .. "/backup-info.json", function(info) info.apps.web.digest = "sha256:" .. string.rep("1", 64) end)
    end, "backup-info.json: app web does not match the backed-up release" },
    { "metadata saying there is no data when there is", function(dir)
      edit_json(dir .. "/backup-info.json", function(info) info.data = false end)
    end, "data: backup-info.json says the backup holds no data" },
  }

  for _, c in ipairs(CASES) do
    it("refuses a backup with " .. c[1] .. ", before anything leaves tmp/", function()
      local crafted = craft(c[1]:gsub("%W", "-"), c[2])
      local before, canary_before = H.root_hash(root), H.tree_hash(canary)
      local r = H.ctcli(root, { "-q", "-y", "rollback", crafted })
      assert.equals(1, r.code, r.stdout .. r.stderr)
      local line = one_line(r)
      assert.is_truthy(line:find(crafted, 1, true), line)
      assert.is_truthy(line:find("refused: ", 1, true), line)
      assert.is_truthy(line:find(c[3], 1, true), "missing '" .. c[3] .. "' in: " .. line)
      assert.equals(before, (H.root_hash(root)))
      assert.equals(canary_before, (H.tree_hash(canary)))
      assert.same({}, ct.fs.dir(root .. "/tmp"))
    end)
  end
end)
