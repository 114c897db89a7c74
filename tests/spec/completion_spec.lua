-- ctest: unit
-- `ctcli completion bash|zsh`: the scripts parse, and a real bash completion
-- run (COMP_WORDS, COMP_CWORD, the function, COMPREPLY) offers the registry's
-- commands, options, files and the root's app names.
local ct = require("ct")
local H = require("support.helpers")

-- complete(script, words, cword) -> the COMPREPLY words
local function complete(script, words, cword, cwd)
  local quoted = {}
  for _, w in ipairs(words) do quoted[#quoted + 1] = "'" .. w:gsub("'", "'\\''") .. "'" end
  local prog = table.concat({
    "source " .. script,
    "COMP_WORDS=(" .. table.concat(quoted, " ") .. ")",
    "COMP_CWORD=" .. cword,
    "COMP_LINE=\"${COMP_WORDS[*]}\"",
    "_ctcli",
    "printf '%s\\n' \"${COMPREPLY[@]}\"",
  }, "\n")
  local r = assert(ct.proc.run({ "bash", "--norc", "-c", prog }, { timeout = 60, cwd = cwd }))
  assert.equals(0, r.code, r.stderr)
  local out = {}
  for w in r.stdout:gmatch("[^\n]+") do out[#out + 1] = w end
  table.sort(out)
  return out, r.stderr
end

local function has(list, word)
  for _, w in ipairs(list) do if w == word then return true end end
  return false
end

describe("ctcli completion", function()
  local cli = require("ctcli.cli")
  local dir, script

  before_each(function()
    dir = H.tmpdir()
    script = dir .. "/ctcli.bash"
    assert(ct.fs.write_atomic(script, H.ok(nil, { "completion", "bash" })))
  end)
  after_each(H.cleanup)

  it("prints bash that bash -n accepts, and zsh naming every command", function()
    local r = assert(ct.proc.run({ "bash", "-n", script }))
    assert.equals(0, r.code, r.stderr)
    local zsh = H.ok(nil, { "completion", "zsh" })
    assert.truthy(zsh:find("^#compdef ctcli\n"))
    assert.truthy(zsh:find("compdef _ctcli ctcli", 1, true))
    for _, name in ipairs(cli.COMMANDS) do
      assert.truthy(zsh:find("'" .. name .. ":", 1, true), name .. " missing from the zsh script")
    end
    -- zsh is installed by scripts/install-deps.sh: the check always runs.
    local zpath = dir .. "/_ctcli"
    assert(ct.fs.write_atomic(zpath, zsh))
    local z = assert(ct.proc.run({ "zsh", "-n", zpath }))
    assert.equals(0, z.code, z.stderr)
  end)

  it("refuses an unknown shell with a usage error", function()
    local r = H.ctcli(nil, { "completion", "fish" })
    assert.equals(2, r.code)
    assert.truthy(r.stderr:find("unknown shell 'fish'", 1, true))
    assert.equals(2, H.ctcli(nil, { "completion" }).code)
  end)

  it("completes every registered command, generated from cli.COMMANDS", function()
    local all = complete(script, { H.bin, "" }, 1)
    assert.equals(#cli.COMMANDS, #all)
    for _, name in ipairs(cli.COMMANDS) do assert.truthy(has(all, name), name) end
    local re = complete(script, { H.bin, "re" }, 1)
    local want = {}
    for _, name in ipairs(cli.COMMANDS) do
      if name:sub(1, 2) == "re" then want[#want + 1] = name end
    end
    table.sort(want)
    assert.same(want, re)
    assert.truthy(has(re, "release-info"))
    -- after global options and their values
    local after = complete(script, { H.bin, "--root", "/x", "-y", "up" }, 4)
    assert.same({ "upgrade" }, after)
  end)

  it("completes global options and each command's own options", function()
    local g = complete(script, { H.bin, "--" }, 1)
    for _, spec in ipairs(cli.GLOBAL_OPTIONS) do
      for _, s in ipairs(spec) do
        if s:sub(1, 2) == "--" then assert.truthy(has(g, s), s) end
      end
    end
    local up = complete(script, { H.bin, "upgrade", "--" }, 2)
    for _, spec in ipairs(cli.command("upgrade").options) do
      assert.truthy(has(up, spec[1]), spec[1])
    end
    assert.truthy(has(up, "--json"))
    local logs = complete(script, { H.bin, "--json", "logs", "--ta" }, 3)
    assert.same({ "--tail" }, logs)
    -- an option's value is not completed as a command or an option
    assert.same({}, complete(script, { H.bin, "logs", "--tail", "" }, 3))
  end)

  it("completes files for a package, shells for completion, commands for help", function()
    ct.fs.write_atomic(dir .. "/app-1.2.tar.gz", "x")
    local files = complete(script, { H.bin, "install", "app-" }, 2, dir)
    assert.same({ "app-1.2.tar.gz" }, files)
    assert.same({ "bash" }, complete(script, { H.bin, "completion", "b" }, 2))
    -- --root takes a directory
    assert(ct.fs.mkdir(dir .. "/root-a"))
    assert.same({ "root-a" }, complete(script, { H.bin, "--root", "ro" }, 2, dir))
    assert.same({ "rollback" }, complete(script, { H.bin, "help", "rol" }, 2))
  end)

  it("completes app names from the root's status", function()
    -- installing unpacks images as root; off root only this case is left out
    local id = ct.proc.run({ "id", "-u" })
    if not (id and id.stdout:match("^0\n")) then
      if os.getenv("CI") == "true" then error("this spec needs root, and CI=true allows no skips") end
      pending("app names: installing a package needs root")
      return
    end
    local root = H.root()
    local pkg = H.package({ "--format", "manifest", "--app", "web", "--app", "worker" })
    H.ok(root, { "-y", "install", "--no-start", pkg })
    for _, cmd in ipairs({ "start", "stop", "restart", "logs", "exec" }) do
      assert.same({ "web", "worker" }, complete(script, { H.bin, "--root", root, cmd, "" }, 4), cmd)
    end
    assert.same({ "worker" }, complete(script, { H.bin, "--root=" .. root, "stop", "--force", "wo" }, 4))
    -- exec: after the app comes the app's own command line, not app names
    assert.is_false(has(complete(script, { H.bin, "--root", root, "exec", "web", "" }, 5, dir), "worker"))
    -- $CTCLI_ROOT is honoured by ctcli itself
    local r = assert(ct.proc.run({ "bash", "--norc", "-c",
      "source " .. script .. "; COMP_WORDS=('" .. H.bin .. "' start w); COMP_CWORD=2; _ctcli; " ..
      "printf '%s\\n' \"${COMPREPLY[@]}\"" }, { env_add = { CTCLI_ROOT = root } }))
    assert.equals("web\nworker\n", r.stdout)
  end)
end)

describe("the man page ctcli(1)", function()
  local cli = require("ctcli.cli")

  it("is built from the declarations: .TH, every command, every option", function()
    local build = os.getenv("CTCLI_BUILD_DIR") or "build"
    local page = assert(ct.fs.read(build .. "/ctcli.1"), "ctcli.1 was not built")
    assert.truthy(page:find('\n.TH CTCLI 1 "[%d-]+" "ctcli ' .. ct.version:gsub("%p", "%%%0") .. '"'))
    for _, section in ipairs({ "NAME", "SYNOPSIS", "GLOBAL OPTIONS", "COMMANDS", "EXIT STATUS" }) do
      assert.truthy(page:find("\n.SH " .. section .. "\n", 1, true), section)
    end
    for _, name in ipairs(cli.COMMANDS) do
      assert.truthy(page:find("\n.SS " .. name:gsub("%-", "\\-") .. "\n", 1, true), name .. " missing")
      for _, spec in ipairs(cli.command(name).options or {}) do
        assert.truthy(page:find("\\fB" .. spec[1]:gsub("%-", "\\-") .. "\\fR", 1, true), name .. " " .. spec[1])
      end
    end
    -- groff (the man page formatter of man-db) reports no warning on it
    -- (groff-base is installed by scripts/install-deps.sh: the check always runs)
    local r = assert(ct.proc.run({ "groff", "-man", "-ww", "-z", build .. "/ctcli.1" }))
    assert.equals(0, r.code)
    assert.equals("", r.stderr)
  end)

  it("is the same page the generator prints, and reproducible with SOURCE_DATE_EPOCH", function()
    local build = os.getenv("CTCLI_BUILD_DIR") or "build"
    local run = function()
      return assert(ct.proc.run({ build .. "/ctcli-lua", H.src .. "/tools/genman.lua" },
        { env_add = { SOURCE_DATE_EPOCH = "0" } }))
    end
    local a, b = run(), run()
    assert.equals(0, a.code, a.stderr)
    assert.equals(a.stdout, b.stdout)
    assert.truthy(a.stdout:find('"1970-01-01"', 1, true))
    local built = assert(ct.fs.read(build .. "/ctcli.1"))
    assert.equals((built:gsub('"%d+%-%d+%-%d+"', "DATE", 1)), (a.stdout:gsub('"%d+%-%d+%-%d+"', "DATE", 1)))
  end)
end)
