-- 20 kills from outside (SIGKILL at spread-out instants) during upgrades
-- of a large package; after each, recovery leaves one whole release, the
-- data as it was, tmp/ empty and the apps running. Label "slow": run with
-- `ctest -L slow` (see README).
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local current = H.current

local function running(root)
  return #H.running(root)
end

describe("kill -9 from outside during large upgrades", function()
  teardown(H.cleanup)

  it("always recovers to one whole release with the data intact", function()
    local pkgs = {
      H.package({ "--version", "1.0.0", "--app", "a:payload=60,health=none", "--app", "b:payload=60,health=none",
        "--app", "c:payload=60,health=none" }),
      H.package({ "--version", "2.0.0", "--app", "a:payload=61,version=2.0.0,health=none",
        "--app", "b:payload=61,version=2.0.0,health=none", "--app", "c:payload=60,health=none" }),
    }
    local root = H.root()
    H.ok(root, { "install", pkgs[1] })
    assert(ct.fs.write_atomic(root .. "/data/a/var/lib/a/precious", "keep me\n"))
    local data_before = ct.fs.read(root .. "/data/a/var/lib/a/precious")
    -- One upgrade run to its end tells how long one takes.
    local t0 = ct.time.monotonic()
    H.ok(root, { "-y", "upgrade", pkgs[2] })
    local duration = ct.time.monotonic() - t0
    local outcomes = {}
    local target = 1
    for i = 1, 20 do
      local at = duration * i / 20
      local p = assert(ct.proc.spawn({ H.bin, "--root", root, "-y", "upgrade", "--allow-downgrade", pkgs[target] },
        { stdout = "null", stderr = "null" }))
      -- spread the kills over the upgrade's whole run (a few seconds)
      ct.time.sleep(at)
      p:kill(ct.proc.signals.KILL)
      p:wait(30)
      p:close()
      local rec = H.ctcli(root, { "recover" })
      assert.equals(0, rec.code, rec.stderr)
      local id = current(root)
      local rel = json.decode(ct.fs.read(root .. "/releases/" .. id .. "/release.json"))
      outcomes[#outcomes + 1] = string.format("%.2fs: %s", at, rel.version)
      assert.equals(3, #rel.apps)
      assert.equals(3, running(root), "apps not running after kill " .. i)
      assert.same({}, ct.fs.dir(root .. "/tmp"))
      assert.equals(data_before, ct.fs.read(root .. "/data/a/var/lib/a/precious"))
      -- next time, upgrade towards the other package
      target = rel.version == "2.0.0" and 1 or 2
    end
    io.stderr:write(string.format("upgrade takes %.2fs; kill outcomes: %s\n", duration, table.concat(outcomes, "; ")))
  end)
end)
