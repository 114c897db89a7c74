-- `cmake --install` of the build into a temp prefix: the binary, man page,
-- completions, schema, docs and systemd template units where Debian's tools
-- look for them, the units naming the installed binary. (The .deb made of
-- the same rules: deb_slow_spec.lua.)
local ct = require("ct")
local H = require("support.helpers")

describe("cmake --install", function()
  local prefix

  lazy_setup(function()
    local build = assert(os.getenv("CTCLI_BUILD_DIR"), "CTCLI_BUILD_DIR is not set (run through ctest)")
    prefix = H.tmpdir() .. "/prefix"
    local r = assert(ct.proc.run({ "cmake", "--install", build, "--prefix", prefix }, { timeout = 300 }))
    assert(r.code == 0, r.stdout .. r.stderr)
  end)
  lazy_teardown(H.cleanup)

  local function file(rel)
    local st = ct.fs.stat(prefix .. "/" .. rel)
    assert.truthy(st and st.type == "file", rel)
    return assert(ct.fs.read(prefix .. "/" .. rel))
  end

  it("installs the binary, man page, schema, docs and examples", function()
    local r = assert(ct.proc.run({ prefix .. "/bin/ctcli", "version" }))
    assert.equals(0, r.code, r.stderr)
    assert.truthy(r.stdout:match("^ctcli %d+%.%d+%.%d+\n$"), r.stdout)
    assert.truthy(file("share/man/man1/ctcli.1"):find(".TH CTCLI 1", 1, true))
    assert.equals(ct.fs.read(H.src .. "/manifests/release.schema.json"), file("share/ctcli/release.schema.json"))
    assert.equals(ct.fs.read(H.src .. "/README.md"), file("share/doc/ctcli/README.md"))
    for _, rel in ipairs({ "docs/operations.md", "docs/manifest.md", "examples/manifests/full.json",
      "examples/hooks/smoke-test.lua" }) do
      file("share/doc/ctcli/" .. rel)
    end
  end)

  it("installs the completions the installed binary generates, where bash-completion and zsh look", function()
    for shell, rel in pairs({ bash = "share/bash-completion/completions/ctcli",
      zsh = "share/zsh/vendor-completions/_ctcli" }) do
      local r = assert(ct.proc.run({ prefix .. "/bin/ctcli", "completion", shell }))
      assert.equals(0, r.code, r.stderr)
      assert.equals(r.stdout, file(rel), rel)
    end
    assert.truthy(file("share/zsh/vendor-completions/_ctcli"):match("^#compdef ctcli\n"))
  end)

  it("installs systemd template units that run the installed binary and pass systemd-analyze verify", function()
    local bin = prefix .. "/bin/ctcli"
    local dir = prefix .. "/lib/systemd/system"
    local main = file("lib/systemd/system/ctcli@.service")
    assert.truthy(main:find('\nExecStart=' .. bin .. ' --root "%f" start --boot\n', 1, true), main)
    assert.truthy(main:find('\nExecStop=' .. bin .. ' --root "%f" stop --keep-wanted\n', 1, true), main)
    assert.truthy(main:find("\nRequiresMountsFor=%f\n", 1, true), main)
    local rot = file("lib/systemd/system/ctcli-rotate-logs@.service")
    assert.truthy(rot:find('\nExecStart=' .. bin .. ' --root "%f" --wait 600 rotate-logs\n', 1, true), rot)
    assert.truthy(rot:find("\nAfter=ctcli@%i.service\n", 1, true), rot)
    assert.truthy(file("lib/systemd/system/ctcli-rotate-logs@.timer"):find("\nOnCalendar=daily\n", 1, true))
    -- instances for a root path systemd-escape must escape
    local esc = assert(ct.proc.run({ "systemd-escape", "--path", "/srv/my shop" })).stdout:gsub("%s+$", "")
    local r = assert(ct.proc.run({ "systemd-analyze", "verify", "ctcli@" .. esc .. ".service",
      "ctcli-rotate-logs@" .. esc .. ".service", "ctcli-rotate-logs@" .. esc .. ".timer" },
      { cwd = dir, timeout = 60 }))
    assert.equals(0, r.code, r.stdout .. r.stderr)
  end)
end)
