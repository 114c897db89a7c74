-- ctest: unit
-- An app's config files seeded from its image (appfs.prepare): a config
-- path that is a symlink in the image (nginx's sites-enabled/default, an
-- absolute or a relative one) is followed, but only inside the image's
-- tree: a link to a host path seeds the image's file of that name, or an
-- empty one; a link to a FIFO seeds an empty file and never blocks.
local ct = require("ct")
local H = require("support.helpers")
local appfs = require("ctcli.runtime.appfs")

local function octal(s) return tonumber(s, 8) end

describe("seeding configs from an image", function()
  local base, paths, img, secret

  teardown(H.cleanup)

  before_each(function()
    base = H.tmpdir()
    paths = { config = base .. "/config", data = base .. "/data", logs = base .. "/logs", tmp = base .. "/tmp" }
    assert(ct.fs.mkdir(paths.tmp, octal("700")))
    -- a host file no seed may ever copy
    secret = base .. "/host-secret"
    assert(ct.fs.write_atomic(secret, "host secret", octal("600")))
    img = base .. "/rootfs"
    local function parent(p) assert(ct.fs.mkdir(img .. p:match("^(.*)/"), octal("755"), true)) end
    local function file(p, s) parent(p) assert(ct.fs.write_atomic(img .. p, s)) end
    local function link(target, p) parent(p) assert(ct.fs.symlink(target, img .. p)) end
    file("/etc/nginx/sites-available/default", "server { listen 80; }\n")
    file("/etc/shadow", "image shadow\n")
    link("/etc/nginx/sites-available/default", "/etc/nginx/sites-enabled/default")
    link("../sites-available/default", "/etc/nginx/conf.d/rel.conf")
    link("/etc/shadow", "/etc/app/shadow.conf")
    link(secret, "/etc/app/host.conf")
    link("../../../../../../../.." .. secret, "/etc/app/up.conf")
    assert.equals(0, ct.proc.run({ "mkfifo", img .. "/etc/app/fifo" }).code)
    link("/etc/app/fifo", "/etc/app/fifo.conf")
  end)

  local function seeded(p) return ct.fs.read(paths.config .. "/web" .. p) end

  it("follows the image's symlinks inside the image, never to the host", function()
    local configs = { "/etc/nginx/sites-enabled/default", "/etc/nginx/conf.d/rel.conf", "/etc/app/shadow.conf",
      "/etc/app/host.conf", "/etc/app/up.conf", "/etc/app/fifo.conf" }
    -- A writer waits on the FIFO: a seed that opened it would read "pwned"
    -- (and without one it would block), so an empty seed shows it was not.
    local writer = assert(ct.proc.spawn({ "sh", "-c", 'echo pwned > "$0"', img .. "/etc/app/fifo" }))
    local ok, err = appfs.prepare(paths, { name = "web", configs = configs }, img)
    writer:kill(9)
    writer:wait()
    writer:close()
    assert.is_true(ok, err)
    assert.equals("server { listen 80; }\n", seeded("/etc/nginx/sites-enabled/default"))
    assert.equals("server { listen 80; }\n", seeded("/etc/nginx/conf.d/rel.conf"))
    -- /etc/shadow of the image, not of the host
    assert.equals("image shadow\n", seeded("/etc/app/shadow.conf"))
    -- host paths the image lacks, absolute or climbing out with ../: empty
    assert.equals("", seeded("/etc/app/host.conf"))
    assert.equals("", seeded("/etc/app/up.conf"))
    -- a FIFO is refused (never opened): empty
    assert.equals("", seeded("/etc/app/fifo.conf"))
    for _, p in ipairs(configs) do
      assert.equals("file", ct.fs.lstat(paths.config .. "/web" .. p).type, p)
    end
    assert.equals("host secret", ct.fs.read(secret))
  end)

  it("leaves a config already on the host as it is", function()
    assert(ct.fs.mkdir(paths.config .. "/web/etc/nginx/sites-enabled", octal("700"), true))
    assert(ct.fs.write_atomic(paths.config .. "/web/etc/nginx/sites-enabled/default", "mine"))
    assert.is_true(appfs.prepare(paths, { name = "web", configs = { "/etc/nginx/sites-enabled/default" } }, img))
    assert.equals("mine", seeded("/etc/nginx/sites-enabled/default"))
  end)
end)
