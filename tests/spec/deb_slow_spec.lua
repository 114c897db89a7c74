-- The Debian package: scripts/build-deb.sh (cpack -G DEB) builds it, apt
-- installs it into a fresh Debian 12 root (tests/support/debroot, from
-- mmdebstrap), where ctcli runs from /usr/bin, and the demo package installs
-- and runs its apps. Label "slow": a Release build and, on a cold cache, a
-- minute of mmdebstrap and the mirror.
local ct = require("ct")
local H = require("support.helpers")

local debroot = H.src .. "/tests/support/debroot"

local function have(cmd)
  local r = ct.proc.run({ "sh", "-c", "command -v " .. cmd })
  return r and r.code == 0
end

local function run(argv, timeout)
  return assert(ct.proc.run(argv, { timeout = timeout or 600, env_add = { DEBIAN_FRONTEND = "noninteractive" } }))
end

local function ok(argv, timeout)
  local r = run(argv, timeout)
  if r.code ~= 0 then
    error(string.format("%s exited %d:\n%s%s", table.concat(argv, " "), r.code, r.stdout, r.stderr), 2)
  end
  return r.stdout
end

describe("the .deb", function()
  local dir, deb, root, version

  -- inroot(argv, pivot) -> result of argv run in the Debian root
  local function inroot(argv, pivot)
    local a = { debroot, "run" }
    if pivot then a[#a + 1] = "--pivot" end
    a[#a + 1] = root
    for _, x in ipairs(argv) do a[#a + 1] = x end
    return run(a)
  end

  lazy_setup(function()
    H.need_root()
    for _, cmd in ipairs({ "cpack", "dpkg-shlibdeps", "mmdebstrap", "unshare", "pivot_root" }) do
      if not have(cmd) then
        if os.getenv("CI") == "true" then error(cmd .. " is missing (scripts/install-deps.sh)") end
        io.stderr:write("SKIP: " .. cmd .. " is not installed (scripts/install-deps.sh)\n")
        os.exit(77)
      end
    end
    dir = H.tmpdir()
    deb = ok({ "nice", H.src .. "/scripts/build-deb.sh", dir .. "/build" }, 1200):gsub("%s+$", "")
    version = assert(ct.fs.read(H.src .. "/CMakeLists.txt")):match("project%(ctcli VERSION ([%d.]+)")
    root = dir .. "/debian"
    ok({ debroot, "make", root })
    -- The roots ctcli makes inside, for H.cleanup to kill their containers by id.
    H.roots = { root .. "/tmp/r" }
  end)
  lazy_teardown(H.cleanup)

  it("is named and versioned from the project, and depends on runc, umoci and the libraries", function()
    assert.equals(dir .. "/build/ctcli_" .. version .. "-1_amd64.deb", deb)
    local f = {}
    for _, k in ipairs({ "Package", "Version", "Depends", "Architecture" }) do
      f[k] = ok({ "dpkg-deb", "-f", deb, k }):gsub("%s+$", "")
    end
    assert.equals("ctcli", f.Package)
    assert.equals(version .. "-1", f.Version)
    assert.equals("amd64", f.Architecture)
    for _, dep in ipairs({ "runc (>= 1.1)", "umoci", "libnettle8", "libzstd1", "liblzma5", "libacl1", "libc6" }) do
      assert.truthy(f.Depends:find(dep, 1, true), dep .. " in " .. f.Depends)
    end
    -- Lua, lua-cjson, libarchive (its xar support would load libxml2 and
    -- ICU at every start), hogweed and gmp are linked in: no dependency on them
    for _, linked in ipairs({ "lua", "libarchive", "libxml2", "libhogweed", "libgmp" }) do
      assert.falsy(f.Depends:find(linked, 1, true), f.Depends)
    end
  end)

  it("installs with apt into a fresh Debian 12 root, where ctcli version and init run", function()
    assert(ct.fs.write_atomic(root .. "/tmp/ctcli.deb", assert(ct.fs.read(deb))))
    -- The package's Depends from Debian's mirror, and systemd (its Recommends,
    -- which the units need; nothing else recommended).
    local r = inroot({ "sh", "-c",
      "apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/ctcli.deb systemd" })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    ok({ debroot, "save-debs", root })
    r = inroot({ "dpkg-query", "-W", "-f", "${Version} ${Status}\n", "ctcli", "runc", "umoci" })
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(version .. "-1 install ok installed", 1, true), r.stdout)
    local _, n = r.stdout:gsub("install ok installed", "")
    assert.equals(3, n)

    r = inroot({ "ctcli", "version" })
    assert.equals(0, r.code, r.stderr)
    assert.equals("ctcli " .. version .. "\n", r.stdout)
    r = inroot({ "sh", "-c", "command -v ctcli" })
    assert.equals("/usr/bin/ctcli\n", r.stdout)
    r = inroot({ "ctcli", "--root", "/tmp/r", "init" })
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(ct.fs.exists(root .. "/tmp/r/.ctcli-init"))
  end)

  it("puts the man page, completions, schema, docs and units where Debian looks for them", function()
    for _, path in ipairs({
      "/usr/share/man/man1/ctcli.1",
      "/usr/share/bash-completion/completions/ctcli",
      "/usr/share/zsh/vendor-completions/_ctcli",
      "/usr/share/ctcli/release.schema.json",
      "/usr/share/doc/ctcli/README.md",
      "/usr/share/doc/ctcli/docs/operations.md",
      "/lib/systemd/system/ctcli@.service",
      "/lib/systemd/system/ctcli-rotate-logs@.service",
      "/lib/systemd/system/ctcli-rotate-logs@.timer",
    }) do
      local st = ct.fs.stat(root .. path)
      assert.truthy(st and st.type == "file", path)
    end
    -- the completion is the installed binary's own
    local r = inroot({ "ctcli", "completion", "bash" })
    assert.equals(r.stdout, ct.fs.read(root .. "/usr/share/bash-completion/completions/ctcli"))
    -- the units run the installed binary on the instance's root path
    local unit = ct.fs.read(root .. "/lib/systemd/system/ctcli@.service")
    assert.truthy(unit:find('ExecStart=/usr/bin/ctcli --root "%f" start --boot', 1, true), unit)
    assert.truthy(unit:find('ExecStop=/usr/bin/ctcli --root "%f" stop --keep-wanted', 1, true), unit)
    assert.truthy(ct.fs.read(root .. "/lib/systemd/system/ctcli-rotate-logs@.service")
      :find('ExecStart=/usr/bin/ctcli --root "%f" --wait 600 rotate-logs', 1, true))
    -- systemd's own check of the instances for /tmp/r, with the root's systemd
    r = inroot({ "systemd-analyze", "verify", "ctcli@tmp-r.service", "ctcli-rotate-logs@tmp-r.service",
      "ctcli-rotate-logs@tmp-r.timer" })
    assert.equals(0, r.code, r.stdout .. r.stderr)
  end)

  it("runs the demo package's apps in the root (pivoted into: a chroot gets no user namespace)", function()
    -- The demo package, as scripts/demo.sh builds it, with the build's ctcli.
    local work = H.tmpdir()
    ok({ H.mkpkg, "--format", "manifest", "--out", work .. "/images.tar.gz", "--version", "1.0.0",
      "--app", "web:mark=demo-web", "--app", "worker:heartbeat=2", "--workdir", work })
    assert(ct.fs.mkdir(work .. "/src"))
    ok({ "cp", "-r", H.src .. "/manifests/demo/manifest.json", H.src .. "/manifests/demo/hooks", work .. "/src/" })
    ok({ "tar", "-xzf", work .. "/images.tar.gz", "-C", work .. "/src", "images" })
    H.ok(nil, { "pack", work .. "/src", "-o", root .. "/tmp/demo.tar.zst" })

    -- In a chroot the kernel refuses the user namespace runc needs for the
    -- apps (unshare(2): EPERM for a chrooted caller), so install cannot
    -- start them there; the same root as a mount namespace's root can.
    local r = inroot({ "unshare", "--user", "true" })
    assert.not_equals(0, r.code)
    assert.truthy(r.stderr:find("Operation not permitted", 1, true), r.stderr)
    r = inroot({ "unshare", "--user", "true" }, true)
    assert.equals(0, r.code, r.stderr)

    r = inroot({ "ctcli", "--root", "/tmp/r", "-y", "install", "/tmp/demo.tar.zst" }, true)
    assert.equals(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("started web, worker", 1, true), r.stdout)
    r = inroot({ "ctcli", "--root", "/tmp/r", "--json", "status" }, true)
    assert.equals(0, r.code, r.stderr)
    local st = assert(require("ctcli.base.json").decode(r.stdout))
    local states = {}
    for _, a in ipairs(st.apps) do states[a.name] = a.state end
    assert.same({ web = "running", worker = "running" }, states)
    r = inroot({ "ctcli", "--root", "/tmp/r", "exec", "web", "cat", "/app/mark" }, true)
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("demo-web", 1, true), r.stdout)
    r = inroot({ "ctcli", "--root", "/tmp/r", "-y", "delete" }, true)
    assert.equals(0, r.code, r.stdout .. r.stderr)
    r = run({ "runc", "--root", root .. "/tmp/r/runc-root", "list", "-q" }, 30)
    assert.equals("", r.stdout)
  end)
end)
