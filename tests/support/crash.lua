-- The crash matrix, shared by the crash_*_spec files: for every journaled
-- step of a command, two columns.
--  kill: CTCLI_FAULT=<command>:<step> makes ctcli SIGKILL itself there; then
--        `ctcli recover` must leave the root on exactly one whole release
--        (the old or the new), configs and data as before (or as intended),
--        nothing in tmp/, and the apps running.
--  fail: CTCLI_FAULT=<command>:<step>:fail makes the step return an error;
--        the command's own error path must leave the root exactly in the old
--        or the new state (the same root after the same command without a
--        fault), the apps that ran running, one error line naming the
--        failure, tmp/ empty and no journal (unless the error line sends the
--        operator to `ctcli recover`, which must then finish the job).
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local cli = require("ctcli.cli")
-- busted's assert and blocks are the spec file's globals, not this module's.
local assert = require("luassert")

local M = {}

local current = H.current

local function release_of(root, id)
  local text = ct.fs.read(root .. "/releases/" .. id .. "/release.json")
  return text and json.decode(text)
end

local function release_ids(root)
  local out = {}
  for _, id in ipairs(ct.fs.dir(root .. "/releases") or {}) do
    if id ~= "backups" then out[#out + 1] = id end
  end
  table.sort(out)
  return out
end

-- Every kept release is whole: its release.json, a bundle per app, and the
-- app's image in the store.
local function assert_whole_releases(root)
  for _, id in ipairs(release_ids(root)) do
    local rel = release_of(root, id)
    assert.truthy(rel, "release " .. id .. " has no release.json")
    for _, app in ipairs(rel.apps) do
      assert.truthy(ct.fs.exists(root .. "/releases/" .. id .. "/apps/" .. app.name .. "/config.json"), id .. "/" .. app.name)
      local image = root .. "/images/" .. app.name .. "@" .. app.image.digest
      assert.truthy(ct.fs.exists(image .. "/image.json"), app.name)
      -- a flat image (unpacked before the layer store) or its layers' blobs
      local info = json.decode(ct.fs.read(image .. "/image.json"))
      if info.layers then
        for _, l in ipairs(info.layers) do
          assert.truthy(ct.fs.exists(root .. "/blobs/sha256/" .. l.blob:sub(8)), app.name .. ": " .. l.blob)
        end
      else
        assert.truthy(ct.fs.exists(image .. "/rootfs"), app.name)
      end
      -- and the writable layer the release names
      if app.upper then
        assert.truthy(ct.fs.exists(root .. "/uppers/" .. app.name .. "/" .. app.upper .. "/upper.json"),
          id .. ": the upper of " .. app.name)
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

-- state(root) -> what "old" and "new" are compared on: the release
-- current-release points at (its name and version: ids hold the time),
-- how many releases are kept, config/ and data/ bytes; for the backup
-- command, how many backups (the others may keep theirs, as records).
local function state(root, sc)
  local id = current(root)
  local rel = id and release_of(root, id)
  local backups = 0
  for _, f in ipairs(ct.fs.dir(root .. "/releases/backups") or {}) do
    if f:match("%.tar%.%a+$") then backups = backups + 1 end
  end
  return table.concat({
    rel and (rel.name .. " " .. rel.version) or "no release",
    #release_ids(root) .. " releases", sc.command == "backup" and (backups .. " backups") or "", dirs_hash(root),
  }, " | ")
end

local function app_names(root)
  local id = current(root)
  local rel = id and release_of(root, id)
  local names = {}
  for _, a in ipairs(rel and rel.apps or {}) do names[#names + 1] = a.name end
  table.sort(names)
  return table.concat(names, ",")
end

local function assert_settled(root)
  assert.same({}, ct.fs.dir(root .. "/tmp"))
  assert.falsy(ct.fs.exists(root .. "/state/journal.json"))
  local st = H.json(root, { "status" })
  for _, a in ipairs(st.apps) do assert.are_not.equal("paused", a.state) end
end

-- kill_case(sc, step, matrix): the kill column (see the top).
local function kill_case(sc, step, matrix)
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
  matrix[#matrix + 1] = { sc.name, "kill", step, said }
  -- one whole release, old or new (or none for install/delete)
  assert_whole_releases(root)
  local now = current(root)
  if now then
    assert.truthy(release_of(root, now), "current-release points at a partial release")
    -- every app of the release it is on runs
    if before_running ~= "" or sc.command == "install" then
      assert.equals(app_names(root), running(root), "apps not running after " .. step)
    end
  else
    assert.truthy(sc.command == "install" or sc.command == "delete", "no release after " .. step)
    assert.equals("", running(root))
  end
  if sc.command ~= "install" and sc.command ~= "delete" then assert.truthy(now) end
  if sc.command == "backup" then
    assert.equals(before_id, now)
  elseif sc.command == "upgrade" and now ~= before_id then
    -- not the old release: then the whole new one, made from it
    assert.equals(before_id, release_of(root, now).previous, "upgrade killed at " .. step .. " left " .. now)
  end
  -- configs and data as before, or as intended
  if sc.intended then
    assert.truthy(dirs_hash(root) == before_dirs or sc.intended(root))
  elseif sc.command ~= "install" then
    assert.equals(before_dirs, dirs_hash(root))
  end
  assert_settled(root)
end

-- fail_case(sc, step, matrix, new_state): the fail column (see the top).
local function fail_case(sc, step, matrix, new_state)
  local root = H.root()
  local extra = sc.prepare(root)
  local old = state(root, sc)
  local before_id = current(root)
  local before_running = running(root)
  local fault = sc.command .. ":" .. step
  local r = H.ctcli(root, sc.argv(root, extra), { env = { CTCLI_FAULT = fault .. ":fail" } })
  assert.are_not.equal(137, r.code, r.stderr)
  local lines = {}
  for line in r.stderr:gmatch("[^\n]+") do
    if line:find("injected failure at " .. fault, 1, true) then lines[#lines + 1] = line end
  end
  local reached = #lines > 0
  assert.falsy(r.stderr:find("internal error", 1, true), r.stderr)
  local errors = 0
  for _ in r.stderr:gmatch("ctcli: error:") do errors = errors + 1 end
  assert.truthy(errors <= 1, r.stderr)
  if reached then
    -- One line says it, whether the command failed or went on with a warning.
    assert.equals(1, #lines, r.stderr)
  else
    assert.equals(sc.expect_code or 0, r.code, "not reached, yet exit " .. r.code .. ": " .. r.stderr)
  end
  if r.stderr:find("ctcli recover", 1, true) then
    local rec = H.ctcli(root, { "recover" })
    assert.equals(0, rec.code, rec.stderr)
  end
  local now_state = state(root, sc)
  local which = now_state == old and "old" or now_state == new_state and "new" or nil
  matrix[#matrix + 1] = { sc.name, "fail", step, (reached and ("exit " .. r.code) or "not reached") .. ", " ..
    tostring(which) .. " state" }
  assert.truthy(which, "neither the old nor the new state after " .. fault .. ":fail:\nold " .. old ..
    "\nnew " .. new_state .. "\nnow " .. now_state .. "\n" .. r.stderr)
  assert_whole_releases(root)
  if which == "old" then assert.equals(before_id, current(root)) end
  -- every app that ran runs (on the release it is on now)
  if before_running ~= "" then assert.equals(app_names(root), running(root), r.stderr) end
  assert_settled(root)
end

-- matrix(b, title, scenarios): a describe block (b holds busted's describe,
-- it and teardown) with both columns for every step of each scenario
-- (sc.only[column] limits the steps).
function M.matrix(b, title, scenarios)
  local describe, it, teardown = b.describe, b.it, b.teardown
  describe(title, function()
    local rows = {}
    local new_states = {}
    teardown(function()
      H.cleanup()
      -- The matrix for the closing note: command, column, step, outcome.
      local out = os.getenv("CTCLI_CRASH_MATRIX")
      local f = out and io.open(out, "a")
      if f then
        for _, row in ipairs(rows) do f:write(table.concat(row, "\t"), "\n") end
        f:close()
      end
    end)
    for _, sc in ipairs(scenarios) do
      local steps = cli.command(sc.command).steps
      -- The new state: the same command without a fault, once per scenario.
      local function new_state()
        if not new_states[sc] then
          local root = H.root()
          local extra = sc.prepare(root)
          local r = H.ctcli(root, sc.argv(root, extra))
          assert.equals(sc.expect_code or 0, r.code, r.stderr)
          new_states[sc] = state(root, sc)
        end
        return new_states[sc]
      end
      for _, column in ipairs({ "kill", "fail" }) do
        for _, step in ipairs(sc.only and sc.only[column] or steps) do
          it(sc.name .. ": " .. column .. " at " .. step, function()
            if column == "kill" then kill_case(sc, step, rows) else fail_case(sc, step, rows, new_state()) end
          end)
        end
      end
    end
  end)
end

return M
