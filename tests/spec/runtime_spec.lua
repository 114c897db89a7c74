-- Container state read from runc's state files agrees with `runc list`
-- for running, paused, created and stopped containers.
local ct = require("ct")
local H = require("support.helpers")
local runtime = require("ctcli.runtime.runc")

H.need_root()

describe("container state without spawning runc", function()
  teardown(H.cleanup)

  it("matches runc list in every state", function()
    local root = H.root()
    H.ok(root, { "install", H.package({ "--app", "a:health=none", "--app", "b:health=none",
      "--app", "c:health=none", "--app", "d:health=none" }) })
    local rt = { runc = "runc", root = root .. "/runc-root" }
    local id = function(app) return H.container_id(root, app) end
    assert.equals(0, ct.proc.run({ "runc", "--root", rt.root, "pause", id("b") }).code)
    -- c: its init killed from outside (the container stays, stopped)
    local st = runtime.state(rt, id("c"))
    ct.proc.kill(st.pid, ct.proc.signals.KILL)
    assert.truthy(H.wait_for(function() return not runtime.alive(st.pid) end, 20))
    -- d: created but never started
    H.ok(root, { "stop", "d" })
    local logs = assert(ct.fs.opendir(H.tmpdir()))
    local log = assert(logs:open("d.log", { write = true, create = true, append = true }))
    logs:close()
    -- its rootfs (the overlay runtime mounts before runc create; stop took it down)
    local paths = require("ctcli.base.root").paths(root)
    local rel = assert(require("ctcli.store.release").current(paths))
    assert(require("ctcli.runtime.overlay").ensure(paths, rel.by_name.d))
    -- runc create as the monitor runs it: its output on the log
    local r = ct.proc.run({ "runc", "--root", rt.root, "create", "--bundle", root .. "/current-release/apps/d", id("d") },
      { stdout = log, stderr = log, timeout = 60 })
    log:close()
    assert.equals(0, r.code)
    local fast = assert(runtime.list(rt))
    local slow = assert(runtime.runc_list(rt))
    local want = { a = "running", b = "paused", c = "stopped", d = "created" }
    for app, status in pairs(want) do
      assert.equals(status, slow[id(app)].status, app)
      assert.equals(slow[id(app)].status, fast[id(app)].status, app)
      if status ~= "stopped" then assert.equals(slow[id(app)].pid, fast[id(app)].pid, app) end
    end
    ct.proc.run({ "runc", "--root", rt.root, "resume", id("b") })
  end)
end)
