-- Safe defaults of what ctcli generates: runc's protections kept, the
-- host's network unless a manifest asks for isolation, private config and
-- data directories.
local ct = require("ct")
local json = require("ctcli.json")
local H = require("support.helpers")

H.need_root()

local function bundle(root, app)
  return json.decode(ct.fs.read(root .. "/current-release/apps/" .. app .. "/config.json"))
end

local function has(list, v)
  for _, x in ipairs(list or {}) do
    if x == v or (type(x) == "table" and x.type == v) then return true end
  end
  return false
end

describe("generated container configs", function()
  teardown(H.cleanup)

  it("keep runc's protections and share the host's network", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--app", "web:health=none" }) })
    local cfg = bundle(root, "web")
    assert.is_true(cfg.process.noNewPrivileges)
    assert.is_false(cfg.process.terminal)
    assert.falsy(has(cfg.process.capabilities.bounding, "CAP_SYS_ADMIN"))
    assert.truthy(has(cfg.process.capabilities.bounding, "CAP_NET_BIND_SERVICE"))
    for _, ns in ipairs({ "pid", "mount", "ipc", "uts" }) do assert.truthy(has(cfg.linux.namespaces, ns), ns) end
    assert.falsy(has(cfg.linux.namespaces, "network"))
    assert.truthy(has(cfg.linux.maskedPaths, "/proc/kcore"))
    assert.truthy(has(cfg.linux.readonlyPaths, "/proc/sys"))
    assert.equals(root .. "/images/web@" .. H.json(root, { "release-info" }).apps[1].digest .. "/rootfs", cfg.root.path)
    -- and inside the running container
    local r = H.ctcli(root, { "exec", "web", "cat", "/proc/1/status" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:match("NoNewPrivs:%s+1"), r.stdout)
    assert.truthy(r.stdout:match("CapEff:%s+00000000a80425fb"), r.stdout)
    -- the host's network: the same interfaces as the host
    local host = ct.fs.read("/proc/net/dev"):gsub("%s+%d+", "")
    local inside = H.ctcli(root, { "exec", "web", "cat", "/proc/net/dev" }).stdout:gsub("%s+%d+", "")
    assert.equals(host, inside)
  end)

  it("give an app its own network when the manifest asks for isolation", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--format", "manifest", "--app", "web:health=none,network=isolated" }) })
    assert.truthy(has(bundle(root, "web").linux.namespaces, "network"))
    local inside = H.ctcli(root, { "exec", "web", "cat", "/proc/net/dev" }).stdout
    local ifaces = {}
    for name in inside:gmatch("\n%s*([%w%-_.]+):") do ifaces[#ifaces + 1] = name end
    assert.same({ "lo" }, ifaces)
  end)

  it("keep config and data private to root", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--app", "web:health=none" }) })
    for _, d in ipairs({ "config", "data", "config/web", "data/web", "releases/backups" }) do
      assert.equals(0, ct.fs.stat(root .. "/" .. d).mode & 7, d .. " is world-accessible")
    end
  end)
end)
