-- The runc bundle of an app: our own config.json (never umoci's), built
-- from the release model, the image's process and the root's paths. The
-- result is deterministic, so two releases can compare it byte for byte.
local ct = require("ct")
local appfs = require("ctcli.runtime.appfs")
local json = require("ctcli.base.json")
local seccomp = require("ctcli.runtime.seccomp")

local M = {}

local A = json.array

-- The capabilities containerd and Docker give a container by default.
local CAPS = A {
  "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
  "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
  "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

local MASKED = A {
  "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
}
local READONLY = A { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" }

-- Every bind from the host is nosuid,nodev. noexec only on the host's own
-- files: an app may run programs from its data and config (docs/security.md).
local function bind(src, dst, ro, noexec)
  local opts = A { "rbind", "nosuid", "nodev" }
  if noexec then opts[#opts + 1] = "noexec" end
  if ro then opts[#opts + 1] = "ro" end
  return { destination = dst, type = "bind", source = src, options = opts }
end

-- Hardened defaults (docs/security.md). With the host's network /sys is a
-- bind of the host's, read-only all the way down (runc's "rro", runc >= 1.1):
-- a plain "ro" bind leaves the host's cgroup mounts below it writable. Then
-- the container's own cgroups, seen through its cgroup namespace, read-only,
-- mounted over /sys/fs/cgroup, so it must come after /sys.
local function sys_mounts(network)
  local sys
  if network == "isolated" then
    sys = { destination = "/sys", type = "sysfs", source = "sysfs",
      options = A { "nosuid", "noexec", "nodev", "ro" } }
  else
    -- sysfs cannot be mounted without an own network namespace: bind the host's.
    sys = { destination = "/sys", type = "bind", source = "/sys",
      options = A { "rbind", "nosuid", "noexec", "nodev", "ro", "rro" } }
  end
  local cgroup = { destination = "/sys/fs/cgroup", type = "cgroup", source = "cgroup",
    options = A { "nosuid", "noexec", "nodev", "relatime", "ro" } }
  return sys, cgroup
end

-- The rest of the hardened defaults, applied to a built config: a cgroup
-- namespace, the seccomp allowlist and, when the app asks, a read-only rootfs.
local function harden(cfg, app, machine)
  local ns = cfg.linux.namespaces
  ns[#ns + 1] = { type = "cgroup" }
  -- runc 1.1 mounts a cgroup v1 tree as a tmpfs holding one read-only mount
  -- per controller, and leaves that tmpfs writable: make it read-only too.
  local ro = A { table.unpack(cfg.linux.readonlyPaths) }
  ro[#ro + 1] = "/sys/fs/cgroup"
  cfg.linux.readonlyPaths = ro
  cfg.linux.seccomp = seccomp.profile(machine, cfg.process.capabilities.bounding)
  cfg.root.readonly = app.read_only_rootfs == true
end

local function resources(app)
  local r = { devices = A { { allow = false, access = "rwm" } } }
  local res = app.resources
  if type(res) == "table" then
    if res.memory then
      r.memory = { limit = res.memory, swap = res.memory }
    end
    if res.cpus then
      r.cpu = { period = 100000, quota = math.floor(res.cpus * 100000 + 0.5) }
    end
    if res.pids then r.pids = { limit = res.pids } end
  end
  return r
end

-- User namespace (see ctcli.runtime.userns): a.idmap {uid=, gid=, size=} adds the
-- namespace and maps container ids 0..size-1 onto the root's range; false
-- or nil leaves container root host root (an opted-out app).
local function add_userns(cfg, idmap)
  if not idmap then return end
  table.insert(cfg.linux.namespaces, { type = "user" })
  cfg.linux.uidMappings = A { { containerID = 0, hostID = idmap.uid, size = idmap.size } }
  cfg.linux.gidMappings = A { { containerID = 0, hostID = idmap.gid, size = idmap.size } }
  -- The Go ctcli's mapping (ctcli.userns.GO) has a second segment.
  if idmap.rest then
    local r = idmap.rest
    cfg.linux.uidMappings[2] = { containerID = r.container, hostID = r.host, size = r.size }
    cfg.linux.gidMappings[2] = { containerID = r.container, hostID = r.host, size = r.size }
  end
end

-- config(args) -> the config.json text.
-- args: paths, app (release model app), image (image.json process), rootfs, id,
-- machine (uname -m, for the seccomp architectures), idmap (the mapping the app
-- runs with, or false)
function M.config(a)
  local app, img, hp = a.app, a.image, appfs.host_paths(a.paths, a.app.name)
  local env, seen = A {}, {}
  local overrides = app.env or {}
  for _, kv in ipairs(img.env or {}) do
    local k = kv:match("^([^=]+)=")
    if k and overrides[k] == nil then env[#env + 1] = kv; seen[k] = true end
  end
  local keys = {}
  for k in pairs(overrides) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do env[#env + 1] = k .. "=" .. overrides[k] end
  if not seen.PATH and overrides.PATH == nil then
    env[#env + 1] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  end

  local mounts = A {
    { destination = "/proc", type = "proc", source = "proc", options = A { "nosuid", "noexec", "nodev" } },
    { destination = "/dev", type = "tmpfs", source = "tmpfs",
      options = A { "nosuid", "noexec", "strictatime", "mode=755", "size=65536k" } },
    { destination = "/dev/pts", type = "devpts", source = "devpts",
      options = A { "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" } },
    { destination = "/dev/shm", type = "tmpfs", source = "shm",
      options = A { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" } },
    { destination = "/dev/mqueue", type = "mqueue", source = "mqueue", options = A { "nosuid", "noexec", "nodev" } },
  }
  local namespaces = A { { type = "pid" }, { type = "ipc" }, { type = "uts" }, { type = "mount" } }
  if app.network == "isolated" then table.insert(namespaces, 2, { type = "network" }) end
  local sys, cgroup = sys_mounts(app.network)
  mounts[#mounts + 1] = sys
  mounts[#mounts + 1] = cgroup
  mounts[#mounts + 1] = bind("/etc/hosts", "/etc/hosts", true, true)
  if a.resolv_conf then mounts[#mounts + 1] = bind("/etc/resolv.conf", "/etc/resolv.conf", true, true) end
  local own = {}
  for _, p in ipairs(app.configs or {}) do own[#own + 1] = bind(hp.config .. p, p, false) end
  for _, p in ipairs(app.data or {}) do own[#own + 1] = bind(hp.data .. p, p, false) end
  if app.logs then own[#own + 1] = bind(hp.logs, app.logs, false) end
  -- Parents before children, so a nested mount is not hidden by its parent.
  table.sort(own, function(x, y)
    local dx, dy = select(2, x.destination:gsub("/", "")), select(2, y.destination:gsub("/", ""))
    if dx ~= dy then return dx < dy end
    return x.destination < y.destination
  end)
  for _, m in ipairs(own) do mounts[#mounts + 1] = m end

  local args = app.entrypoint or img.args
  local cfg = {
    ociVersion = "1.0.2-dev",
    process = {
      terminal = false,
      user = { uid = img.user and img.user.uid or 0, gid = img.user and img.user.gid or 0 },
      args = A { table.unpack(args or {}) },
      env = env,
      cwd = app.workdir or img.cwd or "/",
      capabilities = { bounding = CAPS, effective = CAPS, permitted = CAPS },
      noNewPrivileges = true,
    },
    root = { path = a.rootfs, readonly = false },
    hostname = app.name,
    mounts = mounts,
    linux = {
      cgroupsPath = "/ctcli/" .. a.id,
      resources = resources(app),
      namespaces = namespaces,
      maskedPaths = MASKED,
      readonlyPaths = READONLY,
    },
  }
  harden(cfg, app, a.machine)
  add_userns(cfg, a.idmap)
  return json.encode(cfg, true) .. "\n"
end

-- The machine's architecture (uname -m), read once: it picks the seccomp
-- architectures of every bundle.
local machine_name
local function machine()
  if not machine_name then
    local text = ct.fs.read("/proc/sys/kernel/arch")
    if not text then
      local r = ct.proc.run({ "uname", "-m" })
      text = r and r.code == 0 and r.stdout or ""
    end
    machine_name = text:match("^%s*(%S+)") or "x86_64"
  end
  return machine_name
end

-- app_config(paths, app [, idmap]) -> config.json text for app (a
-- release.json app record); idmap defaults to the mapping the app is to run
-- with (the root's range unless it opts out; none before one is allocated).
function M.app_config(paths, app, idmap)
  local store = require("ctcli.store.images")
  local info, err = store.image_info(paths, app.name, app.image.digest)
  if not info then return nil, err end
  if idmap == nil then
    local userns = require("ctcli.runtime.userns")
    local conf, cerr = require("ctcli.store.rootconf").load(paths)
    if not conf then return nil, cerr end
    idmap = userns.desired(app, conf, userns.range(paths))
  end
  -- Host paths in the bundle are real paths: runc refuses a rootfs reached
  -- through a symlink, and a root used through a symlink to it must give
  -- the same config.json (an app is unchanged when its config.json is).
  local real = ct.fs.realpath(paths.root)
  local bpaths = paths
  if real and real ~= paths.root then
    bpaths = require("ctcli.base.root").paths(real)
    bpaths.id_base = paths.id_base
  end
  local rootfs = store.rootfs(bpaths, app)
  return M.config({
    paths = bpaths, app = app, image = info.process,
    rootfs = ct.fs.realpath(rootfs) or rootfs,
    id = require("ctcli.runtime.runc").container_id(paths, app.name),
    resolv_conf = ct.fs.exists("/etc/resolv.conf"),
    machine = machine(),
    idmap = idmap,
  })
end

return M
