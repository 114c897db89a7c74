-- Safe defaults of what ctcli generates: runc's protections kept, the
-- host's network unless a manifest asks for isolation, private config and
-- data directories, and the hardened defaults of docs/security.md (seccomp,
-- cgroup namespace, read-only /sys, read-only rootfs on request, no device
-- nodes in images, private images/ and logs/), each checked in config.json
-- and from inside a running container.
local ct = require("ct")
local json = require("ctcli.base.json")
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

-- sh(root, app, script) -> result of `ctcli exec app sh -c script`
local function sh(root, app, script)
  return H.ctcli(root, { "exec", app, "sh", "-c", script })
end

local function mount_index(cfg, dest)
  for i, m in ipairs(cfg.mounts) do
    if m.destination == dest then return i, m end
  end
end

-- The rules of the seccomp profile for a call: the unconditional allow
-- list holds it, or the rules naming it.
local function rules_for(cfg, name)
  local out = {}
  for _, r in ipairs(cfg.linux.seccomp.syscalls) do
    if has(r.names, name) then out[#out + 1] = r end
  end
  return out
end

local function mode_of(path)
  return string.format("%o", assert(ct.fs.stat(path), path).mode)
end

-- The cgroup mount, the /sys bind and the cgroup namespace: in the bundle,
-- and from inside (own cgroups at "/", nothing under /sys/fs/cgroup writable).
local function assert_cgroups_confined(root, cfg)
  assert.truthy(has(cfg.linux.namespaces, "cgroup"))
  assert.truthy(has(cfg.linux.readonlyPaths, "/sys/fs/cgroup"))
  local si = mount_index(cfg, "/sys")
  local ci, cg = mount_index(cfg, "/sys/fs/cgroup")
  assert.truthy(si and ci and ci > si, "the cgroup mount comes after /sys")
  assert.equals("cgroup", cg.type)
  for _, o in ipairs({ "ro", "nosuid", "noexec", "nodev" }) do assert.truthy(has(cg.options, o), o) end
  local r = H.ctcli(root, { "exec", "web", "cat", "/proc/self/cgroup" })
  assert.equals(0, r.code, r.stderr)
  for line in r.stdout:gmatch("[^\n]+") do
    assert.truthy(line:match(":/$"), "not in its own cgroup namespace: " .. line)
  end
  -- The container's own freezer and pids, the tmpfs holding them, and a
  -- controller's hierarchy: all refused.
  r = sh(root, "web", "for f in /sys/fs/cgroup/freezer/freezer.state /sys/fs/cgroup/pids/cgroup.procs " ..
    "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/planted; do echo 1 > $f && echo WROTE $f; done; " ..
    "mkdir /sys/fs/cgroup/memory/escape && echo WROTE mkdir; test -e /sys/fs/cgroup/pids/cgroup.procs && echo SEEN")
  assert.falsy(r.stdout:find("WROTE"), r.stdout)
  assert.truthy(r.stdout:find("SEEN"), "the container's cgroups are mounted: " .. r.stdout .. r.stderr)
  assert.truthy(r.stderr:find("Read%-only file system"), r.stderr)
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
    -- the app's writable layer over its image's layers (ctcli.store.layers)
    local rel = json.decode(ct.fs.read(root .. "/current-release/release.json"))
    assert.equals(root .. "/uppers/web/" .. rel.apps[1].upper .. "/merged", cfg.root.path)
    assert.is_false(cfg.root.readonly)
    -- every bind from the host: nosuid and nodev; /sys read-only all the way down
    for _, m in ipairs(cfg.mounts) do
      if m.type == "bind" then
        assert.truthy(has(m.options, "nosuid") and has(m.options, "nodev"), m.destination)
      end
    end
    local _, sys = mount_index(cfg, "/sys")
    assert.equals("bind", sys.type)
    assert.truthy(has(sys.options, "rro") and has(sys.options, "ro"))
    -- seccomp: an allowlist, EPERM for the rest
    local sc = cfg.linux.seccomp
    assert.equals("SCMP_ACT_ERRNO", sc.defaultAction)
    assert.equals(1, sc.defaultErrnoRet)
    if ct.proc.run({ "uname", "-m" }).stdout:match("x86_64") then
      assert.same({ "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32" }, sc.architectures)
    end
    assert.equals("SCMP_ACT_ALLOW", sc.syscalls[1].action)
    assert.is_nil(sc.syscalls[1].args)
    for _, name in ipairs({ "read", "openat", "execve", "futex", "chroot" }) do
      assert.truthy(has(sc.syscalls[1].names, name), name)
    end
    for _, name in ipairs({ "mount", "umount2", "unshare", "setns", "keyctl", "add_key", "bpf", "ptrace",
      "io_uring_setup", "kexec_load", "init_module", "open_by_handle_at", "userfaultfd", "perf_event_open" }) do
      assert.same({}, rules_for(cfg, name), name .. " is allowed")
    end
    local clone = rules_for(cfg, "clone")
    assert.equals(1, #clone)
    assert.same({ { index = 0, op = "SCMP_CMP_MASKED_EQ", value = 2114060288, valueTwo = 0 } }, clone[1].args)
    local clone3 = rules_for(cfg, "clone3")
    assert.equals("SCMP_ACT_ERRNO", clone3[1].action)
    assert.equals(38, clone3[1].errnoRet)
    assert.same({ index = 0, op = "SCMP_CMP_NE", value = 40, valueTwo = 0 }, rules_for(cfg, "socket")[1].args[1])
    assert.equals(5, #rules_for(cfg, "personality"))
    -- and inside the running container
    local r = H.ctcli(root, { "exec", "web", "cat", "/proc/1/status" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:match("NoNewPrivs:%s+1"), r.stdout)
    assert.truthy(r.stdout:match("CapEff:%s+00000000a80425fb"), r.stdout)
    assert.truthy(r.stdout:match("Seccomp:%s+2"), r.stdout)
    -- a denied call fails with EPERM: a user namespace (which root may make
    -- without CAP_SYS_ADMIN), mount, a device node; a FIFO is still fine
    r = sh(root, "web", "busybox unshare -U true && echo UNSHARED; busybox mount -t tmpfs none /mnt && echo MOUNTED; " ..
      "busybox mknod /tmp/null c 1 3 && echo MKNOD; busybox mknod /tmp/fifo p && test -p /tmp/fifo && echo FIFO")
    assert.falsy(r.stdout:find("UNSHARED") or r.stdout:find("MOUNTED") or r.stdout:find("MKNOD"), r.stdout)
    assert.truthy(r.stdout:find("FIFO"), r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("unshare.*Operation not permitted"), r.stderr)
    assert.truthy(r.stderr:find("mknod.*Operation not permitted"), r.stderr)
    assert_cgroups_confined(root, cfg)
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
    local cfg = bundle(root, "web")
    assert.equals("sysfs", select(2, mount_index(cfg, "/sys")).type)
    assert_cgroups_confined(root, cfg)
  end)

  it("give an app a read-only rootfs on request and keep device nodes out of images", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--format", "manifest", "--app", "web:health=none,device,read-only-rootfs" }) })
    local cfg = bundle(root, "web")
    assert.is_true(cfg.root.readonly)
    -- the layer's dev/console never reached the store
    local found = ct.proc.run({ "find", root .. "/images", root .. "/layers", root .. "/uppers",
      "-type", "c", "-o", "-type", "b" })
    assert.equals(0, found.code, found.stderr)
    assert.equals("", found.stdout)
    local digest = H.json(root, { "release-info" }).apps[1].digest
    local info = json.decode(ct.fs.read(root .. "/images/web@" .. digest .. "/image.json"))
    assert.equals(1, info.devices_removed)
    -- inside: the rootfs refuses a write, the app's own data does not
    local r = sh(root, "web", "touch /planted && echo WROTE; echo x >> /var/lib/web/ok && echo DATA")
    assert.falsy(r.stdout:find("WROTE"), r.stdout)
    assert.truthy(r.stderr:find("Read%-only file system"), r.stderr)
    assert.truthy(r.stdout:find("DATA"), r.stdout .. r.stderr)
    assert.truthy(H.wait_for(function()
      return (ct.fs.read(root .. "/data/web/var/lib/web/starts.log") or ""):find("start") ~= nil
    end, 10), "the app runs with a read-only rootfs")
    -- reset gives it a fresh writable layer: still no device node
    H.ok(root, { "--yes", "reset", "web" })
    assert.equals("", ct.proc.run({ "find", root .. "/images", root .. "/layers", root .. "/uppers",
      "-type", "c", "-o", "-type", "b" }).stdout)
  end)

  it("keep config and data private to root", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--app", "web:health=none" }) })
    for _, d in ipairs({ "config", "data", "config/web", "data/web", "releases/backups" }) do
      assert.equals(0, ct.fs.stat(root .. "/" .. d).mode & 7, d .. " is world-accessible")
    end
  end)

  it("keep images, logs, releases and runc's state private to root, also in a root made before", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--app", "web:health=none" }) })
    -- images/ and releases/ let the root's mapped root (their group) through
    local private = { images = "710", logs = "700", ["logs/web"] = "700", releases = "710", ["runc-root"] = "700" }
    local function check(when)
      for d, want in pairs(private) do assert.equals(want, mode_of(root .. "/" .. d), d .. when) end
      local range = json.decode(ct.fs.read(root .. "/state/idmap.json"))
      assert.equals(range.gid, ct.fs.stat(root .. "/images").gid)
    end
    check("")
    -- an older ctcli left them open: init, or the next changing command, closes them
    for d in pairs(private) do assert(ct.fs.chmod(root .. "/" .. d, 493)) end
    H.ok(root, { "init" })
    check(" after init")
    for d in pairs(private) do assert(ct.fs.chmod(root .. "/" .. d, 493)) end
    H.ok(root, { "stop", "web" })
    check(" after stop")
  end)
end)
