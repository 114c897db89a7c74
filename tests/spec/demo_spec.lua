-- manifests/demo packs into the README's demo package, which installs and
-- runs (scripts/demo.sh does the same steps).
local ct = require("ct")
local H = require("support.helpers")

H.need_root()

describe("the demo release in manifests/demo", function()
  teardown(H.cleanup)

  it("validates, packs reproducibly and installs with its apps running", function()
    local images = H.package({ "--format", "manifest", "--app", "web:mark=demo-web", "--app", "worker:heartbeat=2" })
    local src = H.tmpdir() .. "/src"
    assert(ct.fs.copytree(H.src .. "/manifests/demo", src))
    ct.fs.unlink(src .. "/README.md")
    assert(ct.archive.extract(images, src, { only = { images = true } }))
    H.ok(nil, { "validate", src })
    local out = H.tmpdir()
    H.ok(nil, { "pack", src, "-o", out .. "/a.tar.zst" })
    H.ok(nil, { "pack", src, "-o", out .. "/b.tar.zst" })
    assert.equals(ct.hash.sha256_file(out .. "/a.tar.zst"), ct.hash.sha256_file(out .. "/b.tar.zst"))
    local root = H.root()
    H.ok(root, { "install", out .. "/a.tar.zst" })
    local st = H.json(root, { "status" })
    assert.equals("ctcli demo", st.release.name)
    for _, a in ipairs(st.apps) do assert.equals("running", a.state, a.name) end
    assert.truthy(ct.fs.read(root .. "/logs/ctcli.log"):find("web post_install: web 1.0.0 installed", 1, true))
  end)
end)
