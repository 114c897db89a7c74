-- Two ctcli processes at once, for real: a second changing command is
-- refused naming the holder, or waits with --wait; readers never block
-- behind a writer and never see a half state.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

describe("concurrency", function()
  local v1, v2
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none" })
  end)
  teardown(H.cleanup)

  -- An upgrade held open for a while by a pre_upgrade hook that sleeps.
  local function slow_upgrade(root, seconds)
    assert(ct.fs.write_atomic(root .. "/hooks/web.lua", string.format(
      "return { pre_upgrade = function(ctx) ctx.run({ 'sleep', '%d' }) end }", seconds)))
    local p = assert(ct.proc.spawn({ H.bin, "--root", root, "-y", "upgrade", v2 }, { stdout = "null", stderr = "null" }))
    -- wait until it holds the lock: only the holder writes its command there
    assert.truthy(H.wait_for(function()
      return (ct.fs.read(root .. "/state/lock") or ""):find("command=upgrade", 1, true)
    end, 10))
    return p
  end

  it("refuses a second changing command, naming the holder's pid, command and start", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local p = slow_upgrade(root, 3)
    local r = H.ctcli(root, { "stop" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("pid " .. p:pid(), 1, true), r.stderr)
    assert.truthy(r.stderr:find("command upgrade", 1, true), r.stderr)
    assert.truthy(r.stderr:match("since %d%d%d%d%-%d%d%-%d%dT"), r.stderr)
    assert.equals(0, p:wait(60))
    p:close()
  end)

  it("waits for the holder with --wait", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local p = slow_upgrade(root, 2)
    local t0 = ct.time.monotonic()
    local r = H.ctcli(root, { "--wait", "60", "stop" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(ct.time.monotonic() - t0 > 0.5)
    assert.equals(0, p:wait(60))
    p:close()
    -- the stop ran after the upgrade: the new release, stopped
    local st = H.json(root, { "status" })
    assert.equals("1.1.0", st.release.version)
    assert.equals("stopped", st.apps[1].state)
  end)

  it("lets readers run while a writer holds the lock, each seeing one whole release", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local p = slow_upgrade(root, 6)
    local seen = {}
    local deadline = ct.time.monotonic() + 30
    repeat
      for _, args in ipairs({ { "--json", "status" }, { "--json", "release-info" }, { "--json", "list-releases" },
        { "logs", "web" } }) do
        local t0 = ct.time.monotonic()
        local r = H.ctcli(root, args)
        assert.equals(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
        -- the writer holds the lock for 6 s: a reader that waited for it would take that long
        assert.truthy(ct.time.monotonic() - t0 < 3, "a reader blocked")
        if args[2] == "status" then
          local doc = json.decode(r.stdout)
          -- the release and its apps' versions always agree
          assert.equals(doc.release.version, doc.apps[1].version)
          seen[doc.release.version] = true
        end
      end
    until not ct.proc.alive(p:pid()) or ct.time.monotonic() > deadline
    assert.equals(0, p:wait(60))
    p:close()
    assert.truthy(seen["1.0.0"], "no status saw the old release while the writer ran")
  end)
end)
