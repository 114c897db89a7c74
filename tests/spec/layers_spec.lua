-- The layer store (issue 15) on real runc containers: layers extracted once
-- and shared, a writable layer per app mounted around its container, kept
-- per release (rollback brings an app's changes back, reset drops them),
-- remounted at boot, and the own-copy fallback forced by ctcli.json.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local L = require("support.layered")
local release_of, upper_of, sh, layer_dirs = L.release_of, L.upper_of, L.sh, L.layer_dirs

H.need_root()

local APPS = L.APPS

-- reboot(root): what a reboot leaves: every monitor and container dead,
-- no mount; runc's state and the records stay on disk.
local function reboot(root)
  H.kill_monitors(root)
  for _, app in ipairs(APPS) do
    local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "state", H.container_id(root, app) })
    local st = r and r.code == 0 and json.decode(r.stdout)
    if st and st.pid and st.pid > 0 then ct.proc.kill(st.pid, ct.proc.signals.KILL) end
  end
  assert.truthy(H.wait_for(function()
    for _, a in ipairs(H.json(root, { "status" }).apps) do
      if a.state == "running" then return false end
    end
    return true
  end, 20))
  H.unmount_all(root)
  assert.same({}, H.mounts(root))
end

describe("the layer store", function()
  local v1, v2
  setup(function() v1, v2 = L.packages() end)
  teardown(H.cleanup)

  it("extracts a base layer three apps share once, and keeps each app's writes in its own upper", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    -- three images of two layers each, one base layer among them: 4 layers
    local dirs, n = layer_dirs(root)
    assert.equals(4, n)
    local busyboxes = {}
    for _, d in pairs(dirs) do
      local st = ct.fs.lstat(d .. "/bin/busybox")
      if st then busyboxes[#busyboxes + 1] = st.ino end
    end
    assert.equals(1, #busyboxes, "the base layer is held once")
    for _, key in ipairs(ct.fs.dir(root .. "/images")) do
      assert.falsy(ct.fs.exists(root .. "/images/" .. key .. "/rootfs"), key)
    end
    -- each app runs on an overlay at its upper's merged/
    local mounts = H.mounts(root)
    assert.equals(3, #mounts)
    for _, app in ipairs(APPS) do
      local merged = root .. "/uppers/" .. app .. "/" .. upper_of(root, app) .. "/merged"
      local found = false
      for _, m in ipairs(mounts) do if m == (ct.fs.realpath(merged) or merged) then found = true end end
      assert.is_true(found, app .. " has no mount at " .. merged)
    end

    local layers_before = H.tree_hash(root .. "/layers")
    local r = sh(root, "web", "echo mine > /etc/written && rm /bin/vi /app/mark; echo done")
    assert.equals(0, r.code, r.stderr)
    local upper = root .. "/uppers/web/" .. upper_of(root, "web") .. "/upper"
    assert.equals("mine\n", ct.fs.read(upper .. "/etc/written"))
    assert.equals("char", ct.fs.lstat(upper .. "/app/mark").type, "a whiteout in the upper")
    -- the layers are as they were; the other apps see nothing of it
    assert.equals(layers_before, H.tree_hash(root .. "/layers"))
    for _, app in ipairs({ "api", "worker" }) do
      local o = sh(root, app, "cat /etc/written; cat /app/mark")
      assert.falsy(o.stdout:find("mine", 1, true), app)
      assert.truthy(o.stdout:find(app, 1, true), app .. ": " .. o.stdout .. o.stderr)
      assert.falsy(ct.fs.exists(root .. "/uppers/" .. app .. "/" .. upper_of(root, app) .. "/upper/etc/written"))
    end

    -- nothing stays mounted after stop; start mounts again, the writes still there
    H.ok(root, { "stop" })
    assert.same({}, H.mounts(root))
    H.ok(root, { "start" })
    assert.equals(3, #H.mounts(root))
    assert.equals("mine\n", sh(root, "web", "cat /etc/written").stdout)
    -- a stopped app's exec runs in a temporary container: mounted for it only
    H.ok(root, { "stop", "api" })
    assert.equals(2, #H.mounts(root))
    assert.equals(0, sh(root, "api", "echo tmp > /tmpwrite").code)
    assert.equals(2, #H.mounts(root))
    assert.truthy(ct.fs.exists(root .. "/uppers/api/" .. upper_of(root, "api") .. "/upper/tmpwrite"))
    H.ok(root, { "-y", "delete" })
    assert.same({}, H.mounts(root))
    assert.falsy(ct.fs.exists(root .. "/layers"))
  end)

  it("gives a changed app a fresh upper at upgrade; rollback brings its changes back, reset drops them", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local first = release_of(root).id
    assert.equals(0, sh(root, "web", "echo v1-change > /etc/written").code)
    assert.equals(0, sh(root, "api", "echo api-change > /etc/written").code)
    H.ok(root, { "-y", "upgrade", v2 })
    local second = release_of(root).id
    assert.equals(second, upper_of(root, "web"), "a changed app gets an upper of the new release")
    assert.equals(first, upper_of(root, "api"), "an unchanged app keeps its upper")
    assert.falsy(sh(root, "web", "cat /etc/written").stdout:find("v1-change", 1, true))
    assert.equals("api-change\n", sh(root, "api", "cat /etc/written").stdout)
    assert.equals(0, sh(root, "web", "echo v2-change > /etc/written").code)
    assert.equals(3, #H.mounts(root))

    H.ok(root, { "-y", "rollback" })
    assert.equals(first, release_of(root).id)
    assert.equals("v1-change\n", sh(root, "web", "cat /etc/written").stdout)
    assert.equals("api-change\n", sh(root, "api", "cat /etc/written").stdout)
    assert.equals(3, #H.mounts(root), "the upgrade's upper of web is unmounted")
    -- and forward again: the second release's upper, with its change
    H.ok(root, { "-y", "rollback", second })
    assert.equals("v2-change\n", sh(root, "web", "cat /etc/written").stdout)

    H.ok(root, { "-y", "reset", "web" })
    local o = sh(root, "web", "cat /etc/written; cat /app/mark")
    assert.falsy(o.stdout:find("change", 1, true), o.stdout)
    assert.truthy(o.stdout:find("web", 1, true), o.stdout .. o.stderr)
    assert.equals("running", H.app_state(root, "web").state)
    assert.equals("api-change\n", sh(root, "api", "cat /etc/written").stdout, "reset touches one app")
    assert.same({}, ct.fs.dir(root .. "/tmp"))
    for _, n in ipairs(ct.fs.dir(root .. "/uppers/web")) do assert.falsy(n:match("^%.reset"), n) end
  end)

  it("mounts the rootfs again at boot", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    assert.equals(0, sh(root, "worker", "echo kept > /etc/written").code)
    reboot(root)
    local out = H.json(root, { "start", "--boot" })
    assert.equals(3, #out.started)
    assert.equals(3, #H.mounts(root))
    assert.equals("kept\n", sh(root, "worker", "cat /etc/written").stdout)
    H.ok(root, { "stop" })
    assert.same({}, H.mounts(root))
  end)

  it("gives each app its own copy when ctcli.json turns overlayfs off", function()
    local root = H.root()
    assert(ct.fs.write_atomic(root .. "/ctcli.json", '{"storage": {"overlay": false}}\n'))
    H.ok(root, { "install", v1 })
    assert.same({}, H.mounts(root))
    assert.truthy(H.ok(root, { "status", "-v" }):find("own copy", 1, true))
    local first = release_of(root).id
    local copy = root .. "/uppers/web/" .. first .. "/rootfs"
    assert.truthy(ct.fs.exists(copy .. "/bin/busybox"))
    assert.truthy(ct.fs.exists(root .. "/uppers/api/" .. first .. "/rootfs/bin/busybox"))
    assert.equals(0, sh(root, "web", "echo copied > /etc/written").code)
    assert.equals("copied\n", ct.fs.read(copy .. "/etc/written"))
    assert.falsy(ct.fs.exists(root .. "/uppers/api/" .. first .. "/rootfs/etc/written"))
    H.ok(root, { "-y", "upgrade", v2 })
    assert.same({}, H.mounts(root))
    assert.falsy(sh(root, "web", "cat /etc/written").stdout:find("copied", 1, true))
    H.ok(root, { "-y", "rollback" })
    assert.equals("copied\n", sh(root, "web", "cat /etc/written").stdout)
    H.ok(root, { "stop" })
    H.ok(root, { "start" })
    assert.same({}, H.mounts(root))
    assert.equals("running", H.app_state(root, "web").state)
  end)

  it("refuses a ctcli.json whose storage.overlay is not a boolean", function()
    local root = H.root()
    assert(ct.fs.write_atomic(root .. "/ctcli.json", '{"storage": {"overlay": "no"}}\n'))
    local r = H.ctcli(root, { "install", v1 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("storage.overlay: expected true or false", 1, true), r.stderr)
  end)
end)
