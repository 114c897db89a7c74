-- Hooks, migrations, health checks and automatic rollback, end to end on
-- real runc. Operator hooks (<root>/hooks/<app>.lua) are written by the
-- specs; package hooks come from packages built with mkpkg.
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

local function write_hook(root, app, text)
  assert(ct.fs.write_atomic(root .. "/hooks/" .. app .. ".lua", text))
end

-- A hook file that appends "<point> <from>-><to>" to logs/<app>/seq.log
-- (logs are never restored, so the record survives rollbacks).
local RECORDER = [[
local function rec(point)
  return function(ctx)
    local path = ctx.paths.logs .. "/seq.log"
    ctx.write(path, (ctx.read(path) or "") .. point .. " " .. tostring(ctx.from_version) .. "->" ..
      tostring(ctx.to_version) .. "\n")
  end
end
local t = {}
for _, p in ipairs({ "pre_install", "post_install", "pre_upgrade", "post_upgrade", "pre_start",
  "post_start", "pre_stop", "post_stop", "pre_rollback", "post_rollback" }) do t[p] = rec(p) end
return t
]]

local function seq(root, app)
  local out = {}
  for line in (ct.fs.read(root .. "/logs/" .. app .. "/seq.log") or ""):gmatch("[^\n]+") do
    out[#out + 1] = line
  end
  return out
end

local app_state = H.app_state

describe("hooks", function()
  local v1, v2, v3
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0" })
    v3 = H.package({ "--version", "1.2.0", "--app", "web:mark=three,version=1.2.0" })
  end)
  teardown(H.cleanup)

  it("fires every point in the documented order", function()
    local root = H.root()
    write_hook(root, "web", RECORDER)
    H.ok(root, { "install", v1 })
    H.ok(root, { "stop" })
    H.ok(root, { "start" })
    H.ok(root, { "-y", "upgrade", v2 })
    H.ok(root, { "-y", "rollback" })
    assert.same({
      "pre_install nil->1.0.0", "post_install nil->1.0.0",
      "pre_stop nil->nil", "post_stop nil->nil",
      "pre_start nil->nil", "post_start nil->nil",
      "pre_upgrade 1.0.0->1.1.0", "pre_stop 1.0.0->1.1.0", "post_stop 1.0.0->1.1.0",
      "pre_start 1.0.0->1.1.0", "post_start 1.0.0->1.1.0", "post_upgrade 1.0.0->1.1.0",
      "pre_rollback 1.1.0->1.0.0", "post_rollback 1.1.0->1.0.0",
    }, seq(root, "web"))
    -- ctx.log lines land in logs/ctcli.log
  end)

  it("runs the package's hook file, then the operator's, at each point", function()
    local dir = H.tmpdir()
    local function tagged(tag)
      return string.format([[
local function rec(point)
  return function(ctx)
    local path = ctx.paths.logs .. "/order.log"
    ctx.write(path, (ctx.read(path) or "") .. point .. " %s\n")
  end
end
return { post_install = rec("post_install"), pre_stop = rec("pre_stop"), post_start = rec("post_start") }
]], tag)
    end
    assert(ct.fs.write_atomic(dir .. "/web.lua", tagged("package")))
    local pkg = H.package({ "--format", "manifest", "--app", "web:hooks=" .. dir .. "/web.lua" })
    local root = H.root()
    write_hook(root, "web", tagged("operator"))
    H.ok(root, { "install", pkg })
    H.ok(root, { "restart" })
    assert.equals(table.concat({
      "post_install package", "post_install operator",
      "pre_stop package", "pre_stop operator",
      "post_start package", "post_start operator", "",
    }, "\n"), ct.fs.read(root .. "/logs/web/order.log"))
    assert.truthy(ct.fs.exists(root .. "/current-release/hooks/web.lua"))
  end)

  it("lets a failing pre_upgrade veto the upgrade, leaving the root byte-identical", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    write_hook(root, "web", "return { pre_upgrade = function(ctx) ctx.log('checking') ctx.fail('not today') end }")
    local before = H.root_hash(root)
    local pid = app_state(root, "web").pid
    local r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("web.lua:1: not today", 1, true), r.stderr)
    assert.equals(before, H.root_hash(root))
    assert.equals(pid, app_state(root, "web").pid)
    assert.truthy(ct.fs.read(root .. "/logs/ctcli.log"):find("web pre_upgrade: checking", 1, true))
  end)

  it("reports a syntax error with its file and line before anything changes", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    write_hook(root, "web", "return {\n pre_upgrade = function(ctx)\n  if then\n end }")
    local before = H.root_hash(root)
    local r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("hooks/web.lua:3:", 1, true), r.stderr)
    assert.equals(before, H.root_hash(root))
  end)

  it("rolls back a failing post_upgrade and restores the data byte for byte", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    local db = root .. "/data/web/var/lib/web/records.db"
    assert(ct.fs.write_atomic(db, "v1 records\n"))
    write_hook(root, "web", [[
return {
  migrations = { ["0001-rewrite"] = function(ctx)
    ctx.write(ctx.paths.data .. "/var/lib/web/records.db", "rewritten by 0001\n")
  end },
  post_upgrade = function(ctx)
    if ctx.to_version == "1.1.0" then ctx.fail("smoke test failed") end
  end,
}]])
    -- The migration has no record yet for 1.0.0 data: let it run on the next upgrade only.
    local first = H.json(root, { "release-info" }).release.id
    local r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("failed at post_upgrade", 1, true), r.stderr)
    assert.truthy(r.stderr:find("web.lua:6: smoke test failed", 1, true), r.stderr)
    assert.truthy(r.stderr:find("rolled back to " .. first, 1, true), r.stderr)
    assert.equals("v1 records\n", ct.fs.read(db))
    assert.falsy(ct.fs.exists(root .. "/data/web/.ctcli/migrations.json"))
    assert.equals(first, H.json(root, { "release-info" }).release.id)
    assert.equals("running", app_state(root, "web").state)
    assert.equals("1.0.0", app_state(root, "web").version)
    assert.equals(1, #H.json(root, { "list-releases" }).releases)
  end)

  it("runs each migration once across upgrade, rollback by id, and upgrade", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    write_hook(root, "web", [[
return { migrations = {
  ["0001-a"] = function(ctx)
    local p = ctx.paths.logs .. "/migrations.log"
    ctx.write(p, (ctx.read(p) or "") .. "0001-a\n")
  end,
  ["0002-b"] = function(ctx)
    local p = ctx.paths.logs .. "/migrations.log"
    ctx.write(p, (ctx.read(p) or "") .. "0002-b\n")
  end,
} }]])
    H.ok(root, { "-y", "upgrade", v2 })
    H.ok(root, { "-y", "rollback" })
    H.ok(root, { "-y", "upgrade", v3 })
    assert.equals("0001-a\n0002-b\n", ct.fs.read(root .. "/logs/web/migrations.log"))
    local rec = H.read(root .. "/data/web/.ctcli/migrations.json")
    assert.truthy(rec:find('"0001-a"', 1, true) and rec:find('"0002-b"', 1, true))
  end)

  it("stops a runaway loop and a runaway ctx.exec at the time limit", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    H.ok(root, { "stop" })
    write_hook(root, "web", "return { pre_start = function() while true do end end }")
    local t0 = ct.time.monotonic()
    local r = H.ctcli(root, { "--hook-timeout", "1", "start" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("time limit of 1s", 1, true), r.stderr)
    assert.truthy(ct.time.monotonic() - t0 < 10)
    H.ok(root, { "stop" })
    -- a command started in the running container outlives nothing
    ct.fs.unlink(root .. "/hooks/web.lua")
    H.ok(root, { "start" })
    write_hook(root, "web", [[return { pre_stop = function(ctx) ctx.exec({ "sleep", "300" }) end }]])
    r = H.ctcli(root, { "--hook-timeout", "1", "stop" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("time limit", 1, true), r.stderr)
    local ps = ct.proc.run({ "runc", "--root", root .. "/runc-root", "ps", H.container_id(root, "web") })
    assert.equals(0, ps.code, ps.stderr)
    assert.falsy(ps.stdout:find("sleep 300", 1, true), ps.stdout)
  end)

  -- daemon_hook(point, dir, tail): a hook that starts a daemon in a session
  -- of its own (setsid, as a hook starting a host service would), which
  -- writes its pid to dir/pid and its cgroups to dir/cgroup, then runs tail.
  local function daemon_hook(point, dir, tail)
    local script = string.format("cat /proc/self/cgroup > %s/cgroup; echo $$ > %s/pid.tmp; mv %s/pid.tmp %s/pid;" ..
      " exec sleep 300", dir, dir, dir, dir)
    return string.format([[return { %s = function(ctx)
  ctx.run({ "sh", "-c", "setsid sh -c '%s' </dev/null >/dev/null 2>&1 &" })
  for _ = 1, 500 do
    if ctx.run({ "test", "-s", "%s/pid" }).code == 0 then break end
    ctx.run({ "sleep", "0.01" })
  end
  %s
end }]], point, script, dir, tail)
  end

  -- hook_cgroup(dir) -> the host path of the cgroup the daemon ran in (the
  -- unified hierarchy's, else the freezer's or the pids'), from dir/cgroup
  local function hook_cgroup(dir)
    local text = assert(H.read(dir .. "/cgroup"))
    local unified = text:match("\n?0::(/[^\n]*ctcli%-hooks/[^\n]*)")
    if unified and ct.fs.exists("/sys/fs/cgroup/cgroup.controllers") then return "/sys/fs/cgroup" .. unified end
    for _, ctl in ipairs({ "freezer", "pids" }) do
      local path = text:match("%d+:" .. ctl .. ":(/[^\n]*)")
      if path then
        assert.truthy(path:find("/ctcli-hooks/", 1, true), text)
        return "/sys/fs/cgroup/" .. ctl .. path
      end
    end
    error("the daemon was in no hook cgroup:\n" .. text)
  end

  it("kills a daemon a hook started in a new session, at its time limit and at its end", function()
    local root = H.root()
    H.ok(root, { "install", v1 })
    H.ok(root, { "stop" })
    local late = H.tmpdir()
    write_hook(root, "web", daemon_hook("pre_start", late, "while true do end"))
    local r = H.ctcli(root, { "--hook-timeout", "2", "start" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("time limit of 2s", 1, true), r.stderr)
    assert.falsy(r.stderr:find("no cgroup for hooks", 1, true), r.stderr)
    local pid = assert(tonumber(H.read(late .. "/pid")))
    assert.is_false(ct.proc.alive(pid), "the daemon outlived the hook's time limit")
    assert.is_false(ct.fs.exists(hook_cgroup(late)), "the hook's cgroup is still there")

    -- a hook that returns leaves nothing running either
    local done = H.tmpdir()
    write_hook(root, "web", daemon_hook("pre_start", done, ""))
    H.ok(root, { "start" })
    pid = assert(tonumber(H.read(done .. "/pid")))
    assert.is_false(ct.proc.alive(pid), "the daemon outlived its hook")
    assert.is_false(ct.fs.exists(hook_cgroup(done)), "the hook's cgroup is still there")
  end)

  describe("sandbox", function()
    local root
    setup(function()
      root = H.root()
      H.ok(root, { "install", "--no-start", v1 })
    end)
    local escapes = {
      ["os.execute"] = "os.execute('touch " .. "/tmp/ctcli-escape')",
      ["io.open"] = "io.open('/etc/passwd')",
      ["require"] = "require('ct')",
      ["dofile"] = "dofile('/etc/passwd')",
      ["debug"] = "debug.getinfo(1)",
      ["package"] = "package.loaded.ct.proc.run({'true'})",
      ["string.dump"] = "local d = string.dump or getmetatable('').__index.dump; d(function() end)",
      ["bytecode load"] = "assert(load('\\27Lua\\84\\0', 'x', 'b', {}))()",
      ["load without env"] = "assert(load('return io'))()",
      ["ctx metatable"] = "assert(getmetatable(ctx) == nil); local m = getmetatable(ctx.log); assert(m).x = 1",
      ["_ENV"] = "assert(_ENV.io or _ENV.require or _G.os.execute)()",
      ["write outside"] = "ctx.write('/etc/ctcli-escape', 'x')",
      ["read outside"] = "assert(ctx.read(ctx.paths.data .. '/../../../etc/passwd'))",
    }
    for name, code in pairs(escapes) do
      it("refuses " .. name, function()
        write_hook(root, "web", "return { pre_start = function(ctx) " .. code .. " end }")
        local r = H.ctcli(root, { "start", "web" })
        assert.equals(1, r.code, name .. " was not refused")
        assert.truthy(r.stderr:find("web.lua:1:", 1, true), r.stderr)
        assert.equals("stopped", app_state(root, "web").state)
        assert.falsy(ct.fs.exists("/tmp/ctcli-escape"))
        assert.falsy(ct.fs.exists("/etc/ctcli-escape"))
      end)
    end
  end)

  describe("worked examples in hooks/", function()
    local function with_example(name)
      local root = H.root()
      H.ok(root, { "install", v1 })
      assert(ct.fs.copyfile(H.src .. "/hooks/" .. name .. ".lua", root .. "/hooks/web.lua"))
      H.ok(root, { "-y", "upgrade", v2 })
      return root
    end
    it("schema-migration runs its migrations in the container, in order", function()
      local root = with_example("schema-migration")
      assert.equals("2\n", ct.fs.read(root .. "/data/web/var/lib/web/schema"))
      assert.truthy(ct.fs.read(root .. "/logs/ctcli.log"):find("schema is at version 2", 1, true))
    end)
    it("config-rewrite renames a key and keeps the operator's value", function()
      local root = with_example("config-rewrite")
      local conf = ct.fs.read(root .. "/config/web/etc/web/app.conf")
      assert.truthy(conf:find("welcome=hello from web", 1, true), conf)
      assert.falsy(conf:find("greeting=", 1, true))
    end)
    it("disk-guard lets an upgrade through when there is room", function()
      local root = with_example("disk-guard")
      assert.truthy(ct.fs.read(root .. "/logs/ctcli.log"):find("MiB free, upgrading web from 1.0.0 to 1.1.0", 1, true))
    end)
    it("smoke-test checks the new version before the upgrade commits", function()
      local root = with_example("smoke-test")
      assert.truthy(ct.fs.read(root .. "/logs/ctcli.log"):find("smoke test passed for web 1.1.0", 1, true))
    end)
  end)

  it("shows health in status and fails a start whose health check fails", function()
    local root = H.root()
    local bad = H.package({ "--version", "1.0.0", "--app", "web:health=fail" })
    local r = H.ctcli(root, { "install", bad })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("health check of web failed", 1, true), r.stderr)
    local st = app_state(root, "web")
    assert.equals("unhealthy", st.health)
    local good = H.root()
    H.ok(good, { "install", v1 })
    assert.equals("healthy", app_state(good, "web").health)
  end)
end)
