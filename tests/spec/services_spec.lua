-- Real Debian services run by ctcli: PostgreSQL 15, Redis and nginx from
-- Debian packages (images made by tests/support/mkdebimg, cached), packed by
-- tests/support/mksvcpkg, on the host's network on ports above 1024 picked
-- per run. One root goes through install, writes, backup, more writes, an
-- upgrade that changes Redis only, a rollback to the backup, stop and
-- delete --purge; each step checks what the services themselves answer.
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

local MKSVCPKG = H.src .. "/tests/support/mksvcpkg"
local PSQL = "/usr/lib/postgresql/15/bin/psql"
local PROBE_TIMEOUT = 0.5 -- seconds an HTTP probe may take before it counts as failed

-- listening() -> set of the TCP ports something listens on (IPv4 and IPv6)
local function listening()
  local used = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for port, st in (ct.fs.read(f) or ""):gmatch("%x+:(%x+) %x+:%x+ (%x%x)") do
      if st == "0A" then used[tonumber(port, 16)] = true end
    end
  end
  return used
end

-- ports() -> three free ports: CTCLI_TEST_PORT_BASE and the two after it,
-- else a random free triple, so parallel runs on one host do not collide.
local function ports()
  local base = tonumber(os.getenv("CTCLI_TEST_PORT_BASE") or "")
  if base then return { base, base + 1, base + 2 } end
  math.randomseed(ct.proc.getpid(), math.floor(ct.time.now() * 1000))
  for _ = 1, 100 do
    base = 20000 + 3 * math.random(0, 10000)
    local used = listening()
    if not (used[base] or used[base + 1] or used[base + 2]) then return { base, base + 1, base + 2 } end
  end
  error("no three free ports found")
end

describe("real services (PostgreSQL 15, Redis, nginx from Debian)", function()
  local root, port, v1, v2, backup_path

  local function sh(app, script)
    local r = H.ctcli(root, { "exec", app, "/bin/sh", "-c", script }, { timeout = 60 })
    if r.code ~= 0 then
      error(string.format("exec in %s exited %d: %s%s", app, r.code, r.stdout, r.stderr), 2)
    end
    return r.stdout
  end

  local function sql(query)
    local r = H.ctcli(root, { "exec", "postgres", PSQL, "-h", "127.0.0.1", "-p", tostring(port.pg),
      "-U", "postgres", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query }, { timeout = 60 })
    if r.code ~= 0 then error("psql exited " .. r.code .. ": " .. r.stdout .. r.stderr, 2) end
    return (r.stdout:gsub("%s+$", ""))
  end

  local function redis(...)
    local argv = { "exec", "redis", "redis-cli", "-h", "127.0.0.1", "-p", tostring(port.redis) }
    for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
    local r = H.ctcli(root, argv, { timeout = 60 })
    if r.code ~= 0 then error("redis-cli exited " .. r.code .. ": " .. r.stdout .. r.stderr, 2) end
    return (r.stdout:gsub("%s+$", ""))
  end

  -- http(path) -> body, fetched from the host as any client would (busybox
  -- 1.35's wget crashes with -T: the run's timeout bounds it instead)
  local function http(path)
    local r = assert(ct.proc.run({ "busybox", "wget", "-q", "-O", "-",
      string.format("http://127.0.0.1:%d%s", port.nginx, path) }, { timeout = 30 }))
    if r.code ~= 0 then return nil, r.stderr end
    return r.stdout
  end

  -- table t's row count and a digest of every row
  local function rows()
    return sql("SELECT count(*) || ' ' || md5(coalesce(string_agg(id || '=' || v, ',' ORDER BY id), '')) FROM t")
  end

  local function pids()
    local out = {}
    for _, a in ipairs(H.json(root, { "status" }).apps) do
      assert.equals("running", a.state, a.name)
      out[a.name] = a.pid
    end
    return out
  end

  setup(function()
    local p = ports()
    port = { pg = p[1], redis = p[2], nginx = p[3] }
    local dir = H.tmpdir()
    local function build(out, ...)
      local argv = { MKSVCPKG, "--out", out, "--images", dir .. "/images", "--workdir", dir,
        "--ports", table.concat(p, ",") }
      for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
      -- A cold cache builds three Debian roots: minutes.
      local r = assert(ct.proc.run(argv, { timeout = 1500 }))
      if r.code ~= 0 then error("mksvcpkg failed: " .. r.stderr) end
      return out
    end
    v1 = build(dir .. "/svc-1.tar.zst", "--version", "1.0.0")
    -- The same images; only Redis's environment differs.
    v2 = build(dir .. "/svc-2.tar.zst", "--version", "1.1.0", "--env", "redis:SERVICE_MARK=redis-two",
      "--app-version", "postgres:1.0.0", "--app-version", "nginx:1.0.0")
    root = H.root()
  end)
  teardown(H.cleanup)

  it("installs the three services, healthy, each on its port as its own user", function()
    H.ok(root, { "install", v1 }, { timeout = 600 })
    local p = pids()
    assert.truthy(p.postgres and p.redis and p.nginx)
    for _, app in ipairs({ "postgres", "redis", "nginx" }) do
      assert.equals("healthy", H.app_state(root, app).health, app)
    end
    -- initdb ran as postgres on the data path ctcli bound
    assert.truthy(ct.fs.exists(root .. "/data/postgres/var/lib/postgresql/15/main/PG_VERSION"))
    assert.equals("postgres", sql("SELECT current_user"))
    -- the container's init (the service itself) runs as the package's user
    for app, user in pairs({ postgres = "postgres", redis = "redis", nginx = "www-data" }) do
      assert.equals(user, sh(app, "stat -c %U /proc/1"):match("%S+"), app)
    end
    assert.equals("hello from nginx\n", http("/"))
    assert.equals("PONG", redis("PING"))
  end)

  local before_backup
  it("backs up after rows, keys and a served file were written", function()
    sql("CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL)")
    sql("INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 2000) AS i")
    assert.equals("OK", redis("SET", "alpha", "one"))
    assert.equals("OK", redis("SET", "beta", "two"))
    sh("nginx", "echo 'before the backup' >/srv/www/probe.txt")
    assert.equals("before the backup\n", http("/probe.txt"))
    before_backup = rows()
    assert.truthy(before_backup:match("^2000 %x+$"), before_backup)

    local info = H.json(root, { "backup" })
    assert.is_true(info.data)
    assert.truthy(ct.fs.exists(info.path))
    backup_path = info.path
    -- the services kept serving through the backup's pause
    assert.equals("PONG", redis("PING"))
    assert.equals(before_backup, rows())
  end)

  it("upgrades Redis alone: the other services keep their processes, every service its data", function()
    sql("INSERT INTO t SELECT i, 'later' FROM generate_series(2001, 2500) AS i")
    sql("UPDATE t SET v = 'changed' WHERE id <= 10")
    assert.equals("OK", redis("SET", "gamma", "three"))
    assert.equals("1", redis("DEL", "alpha"))
    sh("nginx", "echo 'after the backup' >/srv/www/probe.txt")
    local after = rows()
    assert.truthy(after:match("^2500 "), after)

    local before = pids()
    -- nginx, unchanged, answers all along: probed every 10 ms while the
    -- upgrade backs up, stops, swaps and starts Redis.
    local up = assert(ct.proc.spawn({ H.bin, "--root", root, "-y", "upgrade", v2 },
      { stdout = "null", stderr = "null", env_add = { CTCLI_SUBID_DIR = H.subid_dir() } }))
    -- A probe that takes longer than PROBE_TIMEOUT fails: a frozen nginx
    -- delays answers rather than refusing them.
    local probes, failed, slowest = 0, {}, 0
    local code
    repeat
      local t0 = ct.time.monotonic()
      local r = ct.proc.run({ "busybox", "wget", "-q", "-O", "-", string.format("http://127.0.0.1:%d/", port.nginx) },
        { timeout = PROBE_TIMEOUT })
      slowest = math.max(slowest, ct.time.monotonic() - t0)
      probes = probes + 1
      if not (r and r.code == 0 and r.stdout == "hello from nginx\n") then
        failed[#failed + 1] = r and (r.timed_out and "timed out" or (tostring(r.code) .. " " .. r.stderr)) or "no answer"
      end
      code = up:wait(0.01)
    until code
    up:close()
    assert.equals(0, code)
    assert.is_true(probes >= 10, probes .. " probes")
    assert.same({}, failed, string.format("%d of %d probes failed (slowest %.3f s)", #failed, probes, slowest))
    local now = pids()
    assert.equals(before.postgres, now.postgres)
    assert.equals(before.nginx, now.nginx)
    assert.are_not.equal(before.redis, now.redis)
    assert.equals("1.1.0", H.app_state(root, "redis").version)
    assert.truthy(H.wait_for(function()
      local log = H.log_of(root, "redis")
      return log:find("(redis-two)", 1, true)
    end, 10))
    -- Redis restarted from its append-only file
    assert.equals("three", redis("GET", "gamma"))
    assert.equals("", redis("GET", "alpha"))
    assert.equals(after, rows())
    assert.equals("after the backup\n", http("/probe.txt"))
  end)

  it("rolls back to the backup: rows, keys and files as they were", function()
    H.ok(root, { "-y", "rollback", backup_path }, { timeout = 600 })
    pids()
    assert.equals("1.0.0", H.app_state(root, "redis").version)
    assert.truthy(H.wait_for(function() return http("/probe.txt") == "before the backup\n" end, 30))
    assert.equals(before_backup, rows())
    assert.equals("one", redis("GET", "alpha"))
    assert.equals("two", redis("GET", "beta"))
    assert.equals("", redis("GET", "gamma"))
    -- and they take writes again
    sql("INSERT INTO t VALUES (9999, 'after the rollback')")
    assert.equals("OK", redis("SET", "delta", "four"))
  end)

  it("stops the services and deletes the root's release with --purge", function()
    H.ok(root, { "stop" }, { timeout = 120 })
    for _, a in ipairs(H.json(root, { "status" }).apps) do assert.equals("stopped", a.state, a.name) end
    assert.is_nil(http("/"))
    H.ok(root, { "-y", "delete", "--purge" }, { timeout = 120 })
    assert.same({}, H.running(root))
    assert.falsy(ct.fs.exists(root .. "/data/postgres"))
    assert.falsy(ct.fs.exists(root .. "/current-release"))
    local used = listening()
    assert.falsy(used[port.pg] or used[port.redis] or used[port.nginx])
  end)
end)
