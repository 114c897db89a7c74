-- What the staged-upgrade specs (staged_spec, crash_staged_spec) share:
-- reading a root's releases and staged ones, and the check that a root is
-- settled after a stage, a cutover or a kill in either.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")
local assert = require("luassert")

local M = {}

-- image_ok(root, app, digest): the store holds the image whole (its record;
-- a layered one's blobs and layout, from which its layers are remade).
function M.image_ok(root, app, digest)
  return require("ctcli.store.images").has(require("ctcli.base.root").paths(root), app, digest)
end

function M.release_json(root, id)
  return json.decode(ct.fs.read(root .. "/releases/" .. id .. "/release.json") or "null")
end

function M.version_of(root)
  local rel = M.release_json(root, H.current(root))
  return rel and rel.version
end

function M.staged_ids(root)
  local out = {}
  for _, n in ipairs(ct.fs.dir(root .. "/releases/staged") or {}) do
    if not n:match("^%.") then out[#out + 1] = n end
  end
  return out
end

function M.installed(pkg)
  local root = H.root()
  H.ok(root, { "-y", "install", pkg })
  return root
end

-- The root reads and is settled: no journal, nothing in tmp/ or in a
-- staging work dir, every kept release whole with its images, the apps of
-- the current release running.
function M.assert_consistent(root)
  assert.falsy(ct.fs.exists(root .. "/state/journal.json"))
  assert.same({}, ct.fs.dir(root .. "/tmp"))
  H.ok(root, { "list-releases" })
  local st = H.json(root, { "status" })
  for _, a in ipairs(st.apps) do assert.equals("running", a.state, a.name) end
  for _, id in ipairs(ct.fs.dir(root .. "/releases") or {}) do
    if id ~= "backups" and id ~= "staged" then
      local rel = assert(M.release_json(root, id), "release " .. id .. " has no release.json")
      for _, app in ipairs(rel.apps) do
        assert.truthy(M.image_ok(root, app.name, app.image.digest), id)
      end
    end
  end
end

return M
