-- Progress you can trust (issue 16 item 3): one line per step of a changing
-- command on stderr, in the order the steps run; -q silences them, -v adds
-- the hooks as they run, each health attempt and every runc call; --json
-- keeps stdout one JSON document; bars only on a terminal, and they reach
-- 100 %. Real packages, real runc, a real pseudo-terminal (script(1)).
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

local HOOKS = [[
return {
  pre_upgrade = function(ctx) ctx.log("pre_upgrade says hello") end,
  post_upgrade = function() end,
  migrations = { ["0001-a"] = function() end },
}
]]

-- in_order(text, lines): each line is found after the one before it;
-- fails naming the first one missing.
local function in_order(text, lines)
  local at = 1
  for _, want in ipairs(lines) do
    local s, e = text:find(want, at, true)
    assert(s, string.format("'%s' missing (in order) from:\n%s", want, text))
    at = e + 1
  end
end

local function has(s, want) return s:find(want, 1, true) ~= nil end

-- no_step_lines(out): none of the words a step line is made of.
local function no_step_lines(out, what)
  for _, w in ipairs({ "extracting", "unpacking", "stopping", "starting", "swapping", "migrations:", "health " }) do
    assert.falsy(has(out, w), what .. " holds a step line ('" .. w .. "'):\n" .. out)
  end
end

describe("progress", function()
  local v1, v2, script
  setup(function()
    local work = H.tmpdir()
    assert(ct.fs.write_atomic(work .. "/web.lua", HOOKS))
    v1 = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web", "--app", "db:health=none" })
    v2 = H.package({ "--format", "manifest", "--version", "1.1.0",
      "--app", "web:mark=two,version=1.1.0,hooks=" .. work .. "/web.lua,migrations=0001-a",
      "--app", "db:health=none,version=1.0.0" })
    local r = ct.proc.run({ "sh", "-c", "command -v script" })
    script = r and r.code == 0 and r.stdout:gsub("%s+$", "") or nil
  end)
  teardown(H.cleanup)

  it("tells each step of install, upgrade and rollback on stderr, in order, and keeps stdout the result", function()
    local root = H.root()
    local r = H.ctcli(root, { "-y", "install", v1 })
    assert.equals(0, r.code, r.stderr)
    local first = H.current(root)
    in_order(r.stderr, {
      "extracting " .. v1:match("[^/]+$"), "unpacking 2 images: web, db", "building the release",
      "swapping to release " .. first, "install: backup web, db", "migrations: none pending",
      "starting web", "starting db", "health web: ok after 1 attempt",
    })
    assert.falsy(has(r.stderr, "health db"), "db has no health check:\n" .. r.stderr)
    no_step_lines(r.stdout, "install's stdout")

    r = H.ctcli(root, { "-y", "upgrade", v2 })
    assert.equals(0, r.code, r.stderr)
    local second = H.current(root)
    assert.are_not.equal(first, second)
    -- pre_upgrade runs after the plan and before anything is unpacked.
    in_order(r.stderr, {
      "extracting " .. v2:match("[^/]+$"), "web pre_upgrade: pre_upgrade says hello",
      "unpacking 1 image: web", "unpacked web", "building the release",
      "upgrade: backup web", "stopping web", "swapping to release " .. second,
      "migrations: 1 ran (web: 0001-a)", "starting web", "health web: ok after 1 attempt",
    })
    -- db is unchanged: never stopped nor started, nor in the backup.
    assert.falsy(has(r.stderr, "stopping db") or has(r.stderr, "starting db") or has(r.stderr, "backup web, db"),
      r.stderr)
    no_step_lines(r.stdout, "upgrade's stdout")
    assert.truthy(has(r.stdout, "upgraded to " .. second), r.stdout)

    r = H.ctcli(root, { "-y", "rollback" })
    assert.equals(0, r.code, r.stderr)
    assert.equals(first, H.current(root))
    in_order(r.stderr, { "stopping web", "swapping to release " .. first, "starting web", "health web: ok after" })
    no_step_lines(r.stdout, "rollback's stdout")
  end)

  it("prints no step line with -q (an error still prints)", function()
    local root = H.root()
    for _, args in ipairs({ { "-q", "-y", "install", v1 }, { "-q", "-y", "upgrade", v2 }, { "-q", "-y", "rollback" },
                            { "-q", "stop" }, { "-q", "start" }, { "-q", "backup" } }) do
      local r = H.ctcli(root, args)
      assert.equals(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
      assert.equals("", r.stderr, table.concat(args, " ") .. " printed on stderr")
    end
    local r = H.ctcli(root, { "-q", "-y", "install", v1 })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:match("^ctcli: error: release .* is installed"), r.stderr)
  end)

  it("adds the hooks as they run, each health attempt and every runc call with -v", function()
    local root = H.root()
    H.ok(root, { "-y", "install", v1 })
    local r = H.ctcli(root, { "-v", "-y", "upgrade", v2 })
    assert.equals(0, r.code, r.stderr)
    local id = H.container_id(root, "web")
    in_order(r.stderr, {
      "step upgrade:extract at ",
      "hook pre_upgrade of web (",
      "step upgrade:stop at ", "stopping web",
      "runc: ", " --root " .. root .. "/runc-root kill " .. id .. " TERM (",
      "migration 0001-a of web: ran",
      "starting web", " create --bundle " .. root .. "/releases/", id .. " (by its monitor) (",
      " exec " .. id .. " /bin/sh -c test -f /var/lib/web/starts.log (",
      "health web: attempt 1 of 3: ok", "health web: ok after 1 attempt",
      "hook post_upgrade of web (",
      "step upgrade:end at ",
    })
    -- Without -v none of them.
    r = H.ctcli(root, { "-y", "rollback" })
    assert.equals(0, r.code, r.stderr)
    for _, w in ipairs({ "runc: ", "step rollback:", "attempt 1 of", "hook " }) do
      assert.falsy(has(r.stderr, w), "without -v: " .. w .. "\n" .. r.stderr)
    end
  end)

  it("keeps stdout one JSON document with --json, the steps on stderr", function()
    local root = H.root()
    for _, args in ipairs({ { "--json", "-y", "install", v1 }, { "--json", "-y", "upgrade", v2 },
                            { "--json", "-y", "rollback" } }) do
      local r = H.ctcli(root, args)
      assert.equals(0, r.code, r.stderr)
      local doc = json.decode(r.stdout)
      assert.equals("table", type(doc), table.concat(args, " ") .. ": not JSON:\n" .. r.stdout)
      assert.truthy(doc.release, r.stdout)
      assert.truthy(has(r.stderr, "swapping to release "), r.stderr)
    end
  end)

  it("draws bars that reach 100 % on a terminal, and none in a pipe", function()
    assert(script, "script(1) (util-linux) is needed for a pseudo-terminal")
    local root = H.root()
    local quote = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
    local cmd = table.concat({ quote(H.bin), "--root", quote(root), "-y", "install", quote(v1) }, " ")
    local r = assert(ct.proc.run({ script, "-qfec", cmd, "/dev/null" },
      { env_add = { CTCLI_SUBID_DIR = H.subid_dir() }, timeout = 300 }))
    assert.equals(0, r.code, r.stdout .. r.stderr)
    local out = r.stdout
    for _, label in ipairs({ "extracting", "unpacking", "backup" }) do
      -- The bar's last drawing (the one before its line ends) is full.
      local last
      for frame in out:gmatch("\r\27%[K(" .. label .. " %[[#.]+%][^\r\n]*)") do last = frame end
      assert(last, "no " .. label .. " bar on the terminal:\n" .. out)
      assert.truthy(last:match("^" .. label .. " %[#+%] 100%% "), "the " .. label .. " bar ends at: " .. last)
    end
    -- The step lines are there too, each on a line of its own.
    assert.truthy(out:find("\nunpacking 2 images: web, db\r?\n"), out)

    -- The same in a pipe: step lines only.
    local piped = H.root()
    local p = H.ctcli(piped, { "-y", "install", v1 })
    assert.equals(0, p.code, p.stderr)
    assert.truthy(has(p.stderr, "unpacking 2 images: web, db"), p.stderr)
    assert.falsy(has(p.stderr, "\r") or has(p.stderr, "\27[") or has(p.stderr, "%"), "a bar in a pipe:\n" .. p.stderr)
  end)
end)
