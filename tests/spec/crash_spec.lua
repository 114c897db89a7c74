-- Fault injection over every journaled step: CTCLI_FAULT=<command>:<step>
-- makes ctcli SIGKILL itself there; then `ctcli recover` must leave the root
-- on exactly one whole release (the old or the new), configs and data as
-- before (or as intended), nothing in tmp/, and the apps running.
local ct = require("ct")
local json = require("ctcli.json")
local H = require("support.helpers")
local cli = require("ctcli.cli")

H.need_root()

local current = H.current

local function release_of(root, id)
  local text = ct.fs.read(root .. "/releases/" .. id .. "/release.json")
  return text and json.decode(text)
end

-- Every kept release is whole: its release.json, a bundle per app, and the
-- app's image in the store.
local function assert_whole_releases(root)
  for _, id in ipairs(ct.fs.dir(root .. "/releases") or {}) do
    if id ~= "backups" then
      local rel = release_of(root, id)
      assert.truthy(rel, "release " .. id .. " has no release.json")
      for _, app in ipairs(rel.apps) do
        assert.truthy(ct.fs.exists(root .. "/releases/" .. id .. "/apps/" .. app.name .. "/config.json"), id .. "/" .. app.name)
        assert.truthy(ct.fs.exists(root .. "/images/" .. app.name .. "@" .. app.image.digest .. "/rootfs"), app.name)
      end
    end
  end
end

local function running(root)
  return table.concat(H.running(root), ",")
end

-- The fixture apps append to starts.log each time they start: that is the
-- apps' own writing, not ctcli's, so it is left out of the comparison.
local function dirs_hash(root)
  return H.tree_hash(root .. "/config") .. "/" .. H.tree_hash(root .. "/data", {
    ["web/var/lib/web/starts.log"] = true, ["db/var/lib/db/starts.log"] = true,
  })
end

describe("a kill at every journaled step", function()
  local v1, v2
  local matrix = {}
  setup(function()
    v1 = H.package({ "--version", "1.0.0", "--app", "web:mark=one,health=none", "--app", "db:health=none" })
    v2 = H.package({ "--version", "1.1.0", "--app", "web:mark=two,version=1.1.0,health=none", "--app", "db:health=none" })
  end)
  teardown(function()
    H.cleanup()
    -- The matrix for the closing note: command, step, what recovery said.
    local f = io.open((os.getenv("CTCLI_CRASH_MATRIX") or "/dev/null"), "w")
    if f then
      for _, row in ipairs(matrix) do f:write(table.concat(row, "\t"), "\n") end
      f:close()
    end
  end)

  local scenarios = {
    { name = "install", command = "install",
      prepare = function() return nil end,
      argv = function() return { "install", v1 } end },
    { name = "upgrade", command = "upgrade",
      prepare = function(root) H.ok(root, { "install", v1 }) end,
      argv = function() return { "-y", "upgrade", v2 } end },
    { name = "upgrade that fails and rolls back", command = "upgrade",
      only = { "migrate", "start", "post_upgrade", "rollback", "finish" },
      prepare = function(root)
        H.ok(root, { "install", v1 })
        assert(ct.fs.write_atomic(root .. "/hooks/web.lua",
          "return { post_upgrade = function(ctx) ctx.fail('smoke test failed') end }"))
      end,
      argv = function() return { "-y", "upgrade", v2 } end },
    { name = "rollback", command = "rollback",
      prepare = function(root) H.ok(root, { "install", v1 }) H.ok(root, { "-y", "upgrade", v2 }) end,
      argv = function() return { "-y", "rollback" } end },
    { name = "rollback ARCHIVE", command = "rollback",
      prepare = function(root)
        H.ok(root, { "install", v1 })
        assert(ct.fs.write_atomic(root .. "/data/web/var/lib/web/records", "backed up\n"))
        local b = H.json(root, { "backup" })
        assert(ct.fs.write_atomic(root .. "/data/web/var/lib/web/records", "changed since\n"))
        return b.path
      end,
      argv = function(_, archive) return { "-y", "rollback", archive } end,
      intended = function(root) return ct.fs.read(root .. "/data/web/var/lib/web/records") == "backed up\n" end },
    { name = "delete", command = "delete",
      prepare = function(root) H.ok(root, { "install", v1 }) end,
      argv = function() return { "-y", "delete" } end },
    { name = "backup", command = "backup",
      prepare = function(root) H.ok(root, { "install", v1 }) end,
      argv = function() return { "backup" } end },
  }

  for _, sc in ipairs(scenarios) do
    local steps = cli.command(sc.command).steps
    for _, step in ipairs(sc.only or steps) do
      it(sc.name .. " killed at " .. step, function()
        local root = H.root()
        local extra = sc.prepare(root)
        local before_id = current(root)
        local before_dirs = dirs_hash(root)
        local before_running = running(root)
        local r = H.ctcli(root, sc.argv(root, extra), { env = { CTCLI_FAULT = sc.command .. ":" .. step } })
        local killed = r.code == 137
        local rec = H.ctcli(root, { "recover" })
        assert.equals(0, rec.code, rec.stderr)
        local said = killed and (rec.stderr:match("%): (.-)$") or "?"):gsub("\n", "") or ("not reached (exit " .. r.code .. ")")
        matrix[#matrix + 1] = { sc.name, step, said }
        -- one whole release, old or new (or none for install/delete)
        assert_whole_releases(root)
        local now = current(root)
        if now then
          assert.truthy(release_of(root, now), "current-release points at a partial release")
          -- every app of the release it is on runs
          local rel = release_of(root, now)
          local names = {}
          for _, a in ipairs(rel.apps) do names[#names + 1] = a.name end
          table.sort(names)
          if before_running ~= "" or sc.command == "install" then
            assert.equals(table.concat(names, ","), running(root), "apps not running after " .. step)
          end
        else
          assert.truthy(sc.command == "install" or sc.command == "delete", "no release after " .. step)
          assert.equals("", running(root))
        end
        if sc.command ~= "install" and sc.command ~= "delete" then assert.truthy(now) end
        if sc.command == "backup" or (sc.command == "upgrade" and now == before_id) then
          assert.equals(before_id, now)
        end
        -- configs and data as before, or as intended
        if sc.intended then
          assert.truthy(dirs_hash(root) == before_dirs or sc.intended(root))
        elseif sc.command ~= "install" then
          assert.equals(before_dirs, dirs_hash(root))
        end
        assert.same({}, ct.fs.dir(root .. "/tmp"))
        assert.falsy(ct.fs.exists(root .. "/state/journal.json"))
        local st = H.json(root, { "status" })
        for _, a in ipairs(st.apps) do assert.are_not.equal("paused", a.state) end
      end)
    end
  end
end)
