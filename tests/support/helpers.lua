-- Shared by the specs: temp roots, running the real ctcli binary, building
-- real packages with mkpkg (cached per spec run), hashing a tree, and
-- cleaning up every container a root started, by id.
local ct = require("ct")
local json = require("ctcli.base.json")

local H = {}

H.bin = os.getenv("CTCLI_BIN") or "ctcli"
H.src = os.getenv("CTCLI_SOURCE_DIR") or "."
H.mkpkg = H.src .. "/tests/support/mkpkg"
H.mkgoroot_bin = H.src .. "/tests/support/mkgoroot"

local tmpbase = os.getenv("TMPDIR")
if not tmpbase or tmpbase == "" then tmpbase = "/tmp" end

local made = {}

-- tmpdir() -> a fresh directory removed by H.cleanup()
function H.tmpdir()
  local d = assert(ct.fs.mkdtemp(tmpbase .. "/ctcli-spec-XXXXXX"))
  -- Searchable by all: a root's apps run as ids of its range, which must
  -- reach the root's images through the directories above it.
  assert(ct.fs.chmod(d, 457))
  made[#made + 1] = d
  return d
end

-- appender(path) -> a ct.fs.File appending to path (created 0644), to give
-- ct.proc.spawn as stdout or stderr.
function H.appender(path)
  local dir = assert(ct.fs.opendir(path:match("^(.*)/[^/]+$")))
  local f = assert(dir:open(path:match("[^/]+$"), { write = true, create = true, append = true, mode = 420 }))
  dir:close()
  return f
end

-- count(t) -> how many keys t has.
function H.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- append(path, data) -> true | nil, msg: data added at the end of the file.
function H.append(path, data)
  local f <close> = H.appender(path)
  return f:write(data)
end

-- need_root(): a spec that runs containers; skipped off root, never under CI.
function H.need_root()
  local r = ct.proc.run({ "id", "-u" })
  if r and r.stdout:match("^0") then return true end
  if os.getenv("CI") == "true" then error("these specs need root, and CI=true allows no skips") end
  io.stderr:write("SKIP: these specs run runc containers and need root\n")
  os.exit(77)
end

local subid
-- subid_dir() -> where this spec's roots allocate their id ranges
function H.subid_dir()
  subid = subid or os.getenv("CTCLI_SUBID_DIR") or H.tmpdir()
  return subid
end

-- ctcli(root, args..., opts) -> result {code, stdout, stderr}
function H.ctcli(root, args, opts)
  opts = opts or {}
  local argv = { H.bin }
  if root then argv[#argv + 1] = "--root"; argv[#argv + 1] = root end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  -- Never the host's /etc/subuid: ctest sets a directory per spec, else one here.
  local env = { CTCLI_SUBID_DIR = H.subid_dir() }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local r = assert(ct.proc.run(argv, {
    stdin = opts.stdin, env_add = env, timeout = opts.timeout or 300, cwd = opts.cwd,
  }))
  return r
end

-- ok(root, args) -> stdout; fails the spec with ctcli's stderr otherwise.
function H.ok(root, args, opts)
  local r = H.ctcli(root, args, opts)
  if r.code ~= 0 then
    error(string.format("ctcli %s exited %d:\n%s%s", table.concat(args, " "), r.code, r.stdout, r.stderr), 2)
  end
  return r.stdout
end

function H.json(root, args)
  local out = H.ok(root, { "--json", table.unpack(args) })
  return assert(json.decode(out))
end

-- root() -> a fresh, initialised root
function H.root()
  local r = H.tmpdir() .. "/root"
  H.ok(r, { "init" })
  H.roots = H.roots or {}
  H.roots[#H.roots + 1] = r
  return r
end

local pkg_cache = {}
local pkg_dir

-- package(args) -> path of a package built by mkpkg with these arguments
-- (built once per spec file).
function H.package(args)
  local key = table.concat(args, " ")
  if pkg_cache[key] then return pkg_cache[key] end
  pkg_dir = pkg_dir or H.tmpdir()
  local out = string.format("%s/pkg-%d.tar.gz", pkg_dir, #made + (function()
    local n = 0
    for _ in pairs(pkg_cache) do n = n + 1 end
    return n
  end)())
  local argv = { H.mkpkg, "--out", out, "--workdir", pkg_dir }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(ct.proc.run(argv, { timeout = 300 }))
  if r.code ~= 0 then error("mkpkg failed: " .. r.stderr) end
  pkg_cache[key] = out
  return out
end

-- tree_hash(dir, skip) -> one hash of every path, type, mode and content
-- under dir (symlink targets too); skip is a set of relative paths to leave out.
function H.tree_hash(dir, skip)
  skip = skip or {}
  local parts = {}
  local function walk(rel)
    local path = rel == "" and dir or (dir .. "/" .. rel)
    local st = ct.fs.lstat(path)
    if not st then return end
    local line = rel .. "|" .. st.type .. "|" .. string.format("%o", st.mode)
    if st.type == "file" then
      line = line .. "|" .. ct.hash.sha256_file(path)
    elseif st.type == "link" then
      line = line .. "|" .. ct.fs.readlink(path)
    end
    parts[#parts + 1] = line
    if st.type == "dir" then
      for _, name in ipairs(ct.fs.dir(path) or {}) do
        local child = rel == "" and name or (rel .. "/" .. name)
        if not skip[child] then walk(child) end
      end
    end
  end
  walk("")
  return ct.hash.sha256(table.concat(parts, "\n")), parts
end

-- The parts of a root that ctcli changes while running apps, left out when
-- comparing a root before and after a command that must change nothing
-- (the history records every attempt, a refused or cancelled one too).
-- state/runs: the monitors write their logs and records there while apps run.
H.VOLATILE = { ["runc-root"] = true, ["logs"] = true, ["state/lock"] = true, ["state/history.jsonl"] = true,
  ["state/runs"] = true }

function H.root_hash(root)
  return H.tree_hash(root, H.VOLATILE)
end

-- app_state(root, name) -> the app's entry of `status --json`
function H.app_state(root, name)
  for _, a in ipairs(H.json(root, { "status" }).apps) do
    if a.name == name then return a end
  end
end

-- current(root) -> the id current-release points at, or nil
function H.current(root)
  local t = ct.fs.readlink(root .. "/current-release")
  return t and t:match("([^/]+)$")
end

-- running(root) -> sorted names of the apps whose containers run (from runc itself)
function H.running(root)
  local r = ct.proc.run({ "runc", "--root", root .. "/runc-root", "list", "--format", "json" })
  local out = {}
  for _, c in ipairs(json.decode(r.stdout ~= "" and r.stdout or "[]") or {}) do
    if c.status == "running" then out[#out + 1] = c.id:match("^%x+%-(.+)$") end
  end
  table.sort(out)
  return out
end

-- container_id(root, app) -> the id ctcli gives the app's container: md5 of
-- the base recorded in state/id-base (of root itself before one is recorded).
function H.container_id(root, app)
  local rec = ct.fs.read(root .. "/state/id-base")
  local base = rec and rec:match("^(/[^\n]*)") or root
  return ct.hash.md5(base) .. "-" .. app
end

-- mkgoroot(args) -> stdout of tests/support/mkgoroot (roots and backups as
-- the Go ctcli makes them); fails the spec when it fails.
function H.mkgoroot(args)
  local argv = { H.mkgoroot_bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(ct.proc.run(argv, { timeout = 300 }))
  if r.code ~= 0 then
    error(string.format("mkgoroot %s exited %d:\n%s%s", table.concat(args, " "), r.code, r.stdout, r.stderr), 2)
  end
  return r.stdout
end

-- The Go roots this spec made, for H.goroot_cleanup: {root, ids}.
local goroots = {}

-- goroot(dir, pkg, opts) -> root, ids: a root made and installed as the Go
-- ctcli does it (dir, or a fresh one when nil; pkg a legacy package).
-- opts.start: true (every app) or a list of apps to start, as `ctcli start`;
-- opts.id, opts.created_at: release-info.json's values. ids maps each
-- started app to its container id (md5 of the root, then the app).
function H.goroot(dir, pkg, opts)
  opts = opts or {}
  local root = dir or (H.tmpdir() .. "/goroot")
  local entry = { root = root, ids = {} }
  goroots[#goroots + 1] = entry
  H.mkgoroot({ "init", root })
  local install = { "install", root, pkg }
  if opts.id then install[#install + 1] = "--id"; install[#install + 1] = opts.id end
  if opts.created_at then install[#install + 1] = "--created-at"; install[#install + 1] = opts.created_at end
  H.mkgoroot(install)
  if opts.start then H.goroot_start(root, opts.start ~= true and opts.start or nil) end
  return root, entry.ids
end

-- goroot_start(root, apps) -> ids: `ctcli start` of the Go tool (all apps
-- when apps is empty); the containers are cleaned up with the root.
function H.goroot_start(root, apps)
  apps = apps or {}
  local entry
  for _, e in ipairs(goroots) do if e.root == root then entry = e end end
  if not entry then
    entry = { root = root, ids = {} }
    goroots[#goroots + 1] = entry
  end
  local names = #apps > 0 and apps or assert(ct.fs.dir(root .. "/current-release/apps"))
  -- Recorded before the start: a start that fails half way still leaves
  -- containers to clean up.
  for _, app in ipairs(names) do entry.ids[app] = ct.hash.md5(root) .. "-" .. app end
  local args = { "start", root }
  for _, app in ipairs(apps) do args[#args + 1] = app end
  H.mkgoroot(args)
  return entry.ids
end

-- gobackup(root, opts) -> {dir, archive, uid, info}: `ctcli backup` of the
-- Go tool (opts.ignore_data: --ignore-data; opts.uid, opts.date: its values).
function H.gobackup(root, opts)
  opts = opts or {}
  local args = { "backup", root }
  if opts.ignore_data then args[#args + 1] = "--ignore-data" end
  if opts.uid then args[#args + 1] = "--uid"; args[#args + 1] = opts.uid end
  if opts.date then args[#args + 1] = "--date"; args[#args + 1] = opts.date end
  local out = H.mkgoroot(args)
  local archive = assert(out:match("tar %-czvf (%S+)"), "no archive named in: " .. out)
  local dir, uid = archive:match("^(.*)/([^/]+)%.tar%.gz$")
  local text = assert(ct.fs.read(dir .. "/backup-info.json"))
  return { dir = dir, archive = archive, uid = uid, info = assert(json.decode(text)), text = text }
end

-- goroot_exec(root, app, argv, user) -> result {code, stdout, stderr}: argv
-- run in the app's running Go container (`runc exec`, as the container's
-- user "UID[:GID]" when given: ids 1... are host 100000...).
function H.goroot_exec(root, app, argv, user)
  local runc = root .. "/current-release/runc.amd64"
  local cmd = { runc, "--root", root .. "/runc-root", "exec" }
  if user then cmd[#cmd + 1] = "--user"; cmd[#cmd + 1] = user end
  cmd[#cmd + 1] = ct.hash.md5(root) .. "-" .. app
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  return assert(ct.proc.run(cmd, { timeout = 60 }))
end

-- log_of(root, app) -> the app's output as its monitor recorded it (the text
-- of the stdout and stderr records of state/runs/<app>/*.log, oldest first).
function H.log_of(root, app)
  local dir = root .. "/state/runs/" .. app
  local names = {}
  for _, n in ipairs(ct.fs.dir(dir) or {}) do
    if n:match("^%d+%.log$") then names[#names + 1] = n end
  end
  table.sort(names)
  names[#names + 1] = "current.log"
  local out = {}
  for _, n in ipairs(names) do
    for line in (ct.fs.read(dir .. "/" .. n) or ""):gmatch("[^\n]+") do
      local stream, text = line:match("^%S+ (%S+) [FP] ?(.*)$")
      if stream == "stdout" or stream == "stderr" then out[#out + 1] = text .. "\n" end
    end
  end
  return table.concat(out)
end

-- kill_monitors(root): SIGKILL to each monitor of the root's apps (their pids
-- from state/runs/<app>/state.json, checked to be monitors): a monitor still
-- alive would restart the container a cleanup kills.
function H.kill_monitors(root)
  for _, app in ipairs(ct.fs.dir(root .. "/state/runs") or {}) do
    local st = json.decode(ct.fs.read(root .. "/state/runs/" .. app .. "/state.json") or "null")
    if type(st) == "table" and math.type(st.monitor_pid) == "integer" and st.monitor_pid > 1 then
      local cmd = ct.fs.read("/proc/" .. st.monitor_pid .. "/cmdline") or ""
      if cmd:find("__ctcli-monitor__", 1, true) then ct.proc.kill(st.monitor_pid, ct.proc.signals.KILL) end
    end
  end
end

-- goroot_cleanup(): kills and deletes the containers H.goroot and
-- H.goroot_start made, by id, with the release's runc (the host's when the
-- root no longer has one) and the root's runc-root.
function H.goroot_cleanup()
  for _, e in ipairs(goroots) do
    H.kill_monitors(e.root)
    local runc = e.root .. "/current-release/runc.amd64"
    if not ct.fs.exists(runc) then runc = "runc" end
    local rr = e.root .. "/runc-root"
    for _, id in pairs(e.ids) do
      ct.proc.run({ runc, "--root", rr, "kill", id, "KILL" }, { timeout = 30 })
      ct.proc.run({ runc, "--root", rr, "delete", "--force", id }, { timeout = 30 })
    end
  end
  goroots = {}
end

-- mounts(root) -> the mount points under root (/proc/self/mountinfo), as
-- the layer store's rootfs mounts (uppers/<app>/<id>/merged) show.
function H.mounts(root)
  local real = ct.fs.realpath(root) or root
  local out = {}
  for line in (ct.fs.read("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local mp = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    mp = mp and mp:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end)
    if mp and (mp:sub(1, #real + 1) == real .. "/" or mp:sub(1, #root + 1) == root .. "/") then out[#out + 1] = mp end
  end
  return out
end

-- unmount_all(root): every mount under root gone (a reboot; a spec's cleanup).
function H.unmount_all(root)
  for _, mp in ipairs(H.mounts(root)) do ct.fs.umount(mp, { detach = true }) end
end

-- cleanup(): kills and deletes every container of the roots this spec
-- made (by id, from each root's runc-root; Go roots by the ids they were
-- given), then removes the temp dirs.
function H.cleanup()
  H.goroot_cleanup()
  for _, root in ipairs(H.roots or {}) do
    H.kill_monitors(root)
    local rr = root .. "/runc-root"
    local r = ct.proc.run({ "runc", "--root", rr, "list", "-q" }, { timeout = 30 })
    if r and r.code == 0 then
      for id in r.stdout:gmatch("%S+") do
        ct.proc.run({ "runc", "--root", rr, "kill", id, "KILL" }, { timeout = 30 })
        ct.proc.run({ "runc", "--root", rr, "delete", "--force", id }, { timeout = 30 })
      end
    end
    -- The apps' rootfs mounts (the layer store) before their trees go.
    H.unmount_all(root)
  end
  H.roots = {}
  for i = #made, 1, -1 do ct.fs.rmtree(made[i]) end
  made = {}
  pkg_cache = {}
  pkg_dir = nil
end

-- wait_for(fn, seconds) -> fn's first truthy result, or nil after seconds
function H.wait_for(fn, seconds)
  local deadline = ct.time.monotonic() + (seconds or 5)
  repeat
    local v = fn()
    if v then return v end
    ct.time.sleep(0.05)
  until ct.time.monotonic() > deadline
  return nil
end

function H.read(path)
  return ct.fs.read(path)
end

return H
