-- A root reached through another path (a symlink to it) finds the same
-- containers: ids are made from the absolute root recorded in
-- state/id-base, never from the path a command was given.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

H.need_root()

-- runc_ids(root) -> set of id -> status of the containers in runc-root (runc itself)
local function runc_ids(root)
  local r = assert(ct.proc.run({ "runc", "--root", root .. "/runc-root", "list", "--format", "json" }))
  assert.equals(0, r.code, r.stderr)
  local out = {}
  for _, c in ipairs(json.decode(r.stdout ~= "" and r.stdout or "[]") or {}) do out[c.id] = c.status end
  return out
end

local function app_state(root, name)
  for _, a in ipairs(H.json(root, { "status" }).apps) do
    if a.name == name then return a end
  end
end

-- real_root() -> a fresh, initialised root at a path with no symlink in it
-- (so that its realpath is itself, whatever TMPDIR is)
local function real_root()
  local root = assert(ct.fs.realpath(H.tmpdir())) .. "/root"
  H.ok(root, { "init" })
  H.roots = H.roots or {}
  H.roots[#H.roots + 1] = root
  return root
end

-- link_to(root) -> a fresh symlink (in another temp dir) pointing at root
local function link_to(root)
  local link = H.tmpdir() .. "/via-link"
  assert(ct.fs.symlink(root, link))
  return link
end

describe("rootpath", function()
  local pkg
  setup(function()
    pkg = H.package({ "--format", "manifest", "--version", "1.0.0", "--app", "web:mark=web-one" })
  end)
  teardown(H.cleanup)

  it("records the absolute root as given at init as the container id base", function()
    local root = H.root()
    assert.equals(root .. "\n", ct.fs.read(root .. "/state/id-base"))
    -- a root made through a symlink keeps the path it was given, as ids always were
    local dir = assert(ct.fs.realpath(H.tmpdir()))
    assert(ct.fs.mkdir(dir .. "/real", 493))
    assert(ct.fs.symlink(dir .. "/real", dir .. "/link"))
    H.ok(dir .. "/link/r", { "init" })
    assert.equals(dir .. "/link/r\n", ct.fs.read(dir .. "/real/r/state/id-base"))
  end)

  it("finds, stops and starts the same container through a symlink to the root", function()
    local root = real_root()
    H.ok(root, { "install", pkg })
    local id = ct.hash.md5(root) .. "-web"
    assert.equals(id, H.container_id(root, "web"))
    assert.equals("running", runc_ids(root)[id])

    local link = link_to(root)
    local st = app_state(link, "web")
    assert.equals("running", st.state)
    assert.equals(id, st.container)
    assert.equals(app_state(root, "web").pid, st.pid)

    H.ok(link, { "stop", "web" })
    assert.equals("stopped", app_state(link, "web").state)
    assert.is_nil(runc_ids(root)[id])

    H.ok(link, { "start", "web" })
    local ids = runc_ids(root)
    assert.equals("running", ids[id])
    -- no container made from the link's own path
    assert.is_nil(ids[ct.hash.md5(link) .. "-web"])
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equals(1, n)
    assert.equals(root .. "\n", ct.fs.read(root .. "/state/id-base"))
  end)

  it("gives a root made before the record one that keeps its running container's id", function()
    local root = real_root()
    H.ok(root, { "install", pkg })
    local id = ct.hash.md5(root) .. "-web"
    assert.equals("running", runc_ids(root)[id])
    -- an older ctcli's root: no record, its app running
    assert(ct.fs.unlink(root .. "/state/id-base"))

    local link = link_to(root)
    -- a reader takes no lock and writes nothing, yet finds the container
    local st = app_state(link, "web")
    assert.equals("running", st.state)
    assert.equals(id, st.container)
    assert.is_false(ct.fs.exists(root .. "/state/id-base"))

    -- the next changing command records the root the running container's id was made from
    H.ok(link, { "start", "web" })
    assert.equals(root .. "\n", ct.fs.read(root .. "/state/id-base"))
    assert.equals("running", runc_ids(root)[id])
    H.ok(link, { "stop", "web" })
    assert.is_nil(runc_ids(root)[id])
    H.ok(link, { "start", "web" })
    assert.equals("running", runc_ids(root)[id])
    assert.is_nil(runc_ids(root)[ct.hash.md5(link) .. "-web"])
  end)

  it("refuses a root whose id base record is damaged, saying what to write", function()
    local root = H.root()
    assert(ct.fs.write_atomic(root .. "/state/id-base", "relative/path\n"))
    local r = H.ctcli(root, { "status" })
    assert.equals(1, r.code)
    assert.truthy(r.stderr:find("state/id-base does not hold an absolute path", 1, true), r.stderr)
  end)
end)
