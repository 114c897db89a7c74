-- The front end: global options, the command registry, parsing, help, the
-- root and its lock, and the one place that prints an error and picks the
-- exit status (cli.EXIT; docs/exit-codes.md, `ctcli help exit-codes`).
local ct = require("ct")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")

local cli = {}

-- The exit statuses (DESIGN §6 "Settled — exit codes"). exec passes the
-- app's own status instead, with docker's 125/126/127 for its own failures.
cli.EXIT = {
  ok = 0,
  failed = 1,      -- the command failed or refused; the message says why
  usage = 2,       -- a parse or value error, found before anything ran
  cancelled = 3,   -- a "no" at a prompt, or a prompt with no terminal and no -y
  internal = 70,   -- a bug in ctcli (sysexits' EX_SOFTWARE): a traceback with -v
  exec_failed = 125, exec_not_executable = 126, exec_not_found = 127,
}

-- Registered commands, in the order help lists them. A name here is a
-- module lua/ctcli/commands/<name>.lua.
cli.COMMANDS = {
  "init", "install", "upgrade", "stage",
  "delete", "start", "stop", "restart", "status", "logs", "exec", "backup", "rollback", "release-info", "list-releases", "recover",
  "adopt", "events", "history",
  "validate", "pack", "keygen", "sign", "verify", "plan", "inspect", "convert", "hook",
  "enable", "disable", "rotate-logs", "reset", "diff", "images", "prune",

  "help", "version", "completion",
}

cli.GLOBAL_OPTIONS = {
  { "--root", arg = "DIR", help = "the root directory (default $CTCLI_ROOT, then the current directory)" },
  { "-y", "--yes", help = "answer yes to every question" },
  { "--json", help = "machine-readable output: one JSON document (docs/json.md), errors too" },
  { "--pretty", help = "with --json, indented even when stdout is not a terminal" },
  { "--no-color", help = "no colors (also when NO_COLOR is set)" },
  { "-v", "--verbose", help = "more detail (hooks as they run, health attempts, runc calls); tracebacks on internal errors" },
  { "-q", "--quiet", help = "no step lines or bars on stderr (errors and warnings still print)" },
  { "--hook-timeout", arg = "SECONDS", type = "number", above = 0, help = "time limit of one hook (default 60)" },
  -- An optional value: the next word is taken only when it is a number
  -- (or given as --wait=SECONDS), so it never swallows the command.
  { "--wait", arg = "SECONDS", optional_arg = true, default_arg = "86400", type = "number", above = 0,
    help = "when another ctcli holds the root, wait for it (up to SECONDS, default a day) instead of failing" },
  { "-h", "--help", help = "show help" },
}

local UsageError = {}
UsageError.__index = UsageError
local function usage_error(msg, hint)
  return setmetatable({ msg = msg, hint = hint }, UsageError)
end

local loaded = {}
function cli.command(name)
  if loaded[name] then return loaded[name] end
  for _, n in ipairs(cli.COMMANDS) do
    if n == name then
      local mod = require("ctcli.commands." .. name:gsub("-", "_"))
      mod.name = name
      loaded[name] = mod
      return mod
    end
  end
  return nil
end

-- suggest(word, candidates) -> the closest candidate, or nil (ctcli.base.text),
-- loaded on a mistyped word only.
function cli.suggest(word, candidates)
  return require("ctcli.base.text").suggest(word, candidates)
end

-- The history is written by the commands that take the lock
-- (history.begin); a reader leaves nothing to record and never loads it.
local function history() return require("ctcli.store.history") end

-- option_key("--hook-timeout") -> "hook_timeout"
local function option_key(spec)
  local long = spec[2] or spec[1]
  for _, s in ipairs(spec) do
    if s:sub(1, 2) == "--" then long = s end
  end
  return (long:gsub("^%-+", ""):gsub("-", "_"))
end

local function find_option(specs, word)
  for _, spec in ipairs(specs) do
    for _, s in ipairs(spec) do
      if s == word then return spec end
    end
  end
end

local function option_names(specs)
  local names = {}
  for _, spec in ipairs(specs) do
    for _, s in ipairs(spec) do names[#names + 1] = s end
  end
  return names
end

-- What a typed option expects, for its error message: "a whole number of at least 1".
local function expects(spec)
  if spec.expects then return spec.expects end
  local what = spec.integer and "a whole number" or "a number"
  if spec.above then
    what = what .. " above " .. spec.above
  elseif spec.min then
    what = what .. " of at least " .. spec.min
  else
    what = spec.integer and "a whole number of at least 0" or "a non-negative number"
  end
  if spec.max then what = what .. " and at most " .. spec.max end
  return what
end

-- convert(spec, name, value) -> the value | nil, usage error. An option
-- declares its type and range (type = "number", integer, min/above, max)
-- or a parse function (value -> converted | nil), so every value error is
-- a usage error found before anything runs.
local function convert(spec, name, value)
  local v
  if spec.parse then
    v = spec.parse(value)
  elseif spec.type == "number" then
    v = tonumber(value)
    if v and (v ~= v or v == math.huge or (spec.integer and math.type(v) ~= "integer" and v ~= math.floor(v)) or
      (spec.above and v <= spec.above) or v < (spec.min or 0) or (spec.max and v > spec.max)) then
      v = nil
    end
    if v and spec.integer then v = math.tointeger(v) end
  else
    return value
  end
  if v == nil then
    return nil, usage_error(string.format("%s expects %s, got '%s'", name, expects(spec), value))
  end
  return v
end

-- parse(argv) -> globals, command name, command options, positional args.
-- Global options are accepted before and after the command name.
function cli.parse(argv)
  argv = table.move(argv, 1, #argv, 1, {}) -- combined flags are split in place
  local globals, opts, pos = {}, {}, {}
  local name, cmd
  local i = 1
  local only_args = false
  while i <= #argv do
    local a = argv[i]
    if only_args or a == "-" or a:sub(1, 1) ~= "-" then
      if not name then
        name = a
        cmd = cli.command(name)
        if not cmd then
          local hint = cli.suggest(name, cli.COMMANDS)
          return nil, usage_error("unknown command '" .. name .. "'",
            hint and ("did you mean '" .. hint .. "'?") or "run 'ctcli help' for the list of commands")
        end
      else
        pos[#pos + 1] = a
        -- exec's command line is the app's argv: everything after the app is its own.
        if cmd.rest_after and #pos >= cmd.rest_after then only_args = true end
      end
    elseif a == "--" then
      only_args = true
    else
      local word, value = a:match("^(%-%-[^=]+)=(.*)$")
      word = word or a
      local spec = find_option(cli.GLOBAL_OPTIONS, word)
      local target = globals
      if not spec and cmd then
        spec = find_option(cmd.options or {}, word)
        target = opts
      end
      -- Short flags together (`exec -it`, as docker): each a known flag
      -- that takes no value.
      if not spec and word:match("^%-%a%a+$") then
        local split = {}
        for c in word:sub(2):gmatch(".") do
          local s = find_option(cli.GLOBAL_OPTIONS, "-" .. c) or (cmd and find_option(cmd.options or {}, "-" .. c))
          if not s or s.arg then split = nil break end
          split[#split + 1] = "-" .. c
        end
        if split then
          for k = #split, 1, -1 do table.insert(argv, i + 1, split[k]) end
          goto next_word
        end
      end
      if not spec then
        local cands = option_names(cli.GLOBAL_OPTIONS)
        if cmd then
          for _, n in ipairs(option_names(cmd.options or {})) do cands[#cands + 1] = n end
        end
        local hint = cli.suggest(word, cands)
        return nil, usage_error("unknown option '" .. word .. "'" .. (name and (" for '" .. name .. "'") or ""),
          hint and ("did you mean '" .. hint .. "'?") or
          ("run 'ctcli help" .. (name and (" " .. name) or "") .. "' for the options"))
      end
      local key = option_key(spec)
      if spec.arg then
        if not value then
          local nxt = argv[i + 1]
          if spec.optional_arg and (nxt == nil or nxt:sub(1, 1) == "-" or not convert(spec, word, nxt)) then
            -- Before the command, a word that is neither a value nor a
            -- command is a value gone wrong (`--wait abc status`), not the command.
            if nxt and not name and nxt:sub(1, 1) ~= "-" and not cli.command(nxt) then
              local _, verr = convert(spec, word, nxt)
              verr.hint = "the value is optional: " .. word .. "=" .. spec.arg .. ", or " .. word .. " alone"
              return nil, verr
            end
            value = spec.default_arg
          else
            i = i + 1
            value = argv[i]
            if value == nil then
              return nil, usage_error(word .. " needs a value (" .. spec.arg .. ")")
            end
          end
        end
        local v, err = convert(spec, word, value)
        if v == nil then return nil, err end
        if spec.multiple then
          target[key] = target[key] or {}
          table.insert(target[key], v)
        else
          target[key] = v
        end
      else
        if value then
          return nil, usage_error(word .. " takes no value")
        end
        target[key] = true
      end
    end
    ::next_word::
    i = i + 1
  end
  local parsed = { globals = globals, name = name, command = cmd, opts = opts, args = pos }
  if cmd and not globals.help and not opts.help then
    local ok, err = cli.check(parsed)
    if not ok then return nil, err end
  end
  return parsed
end

-- check(parsed) -> true | nil, usage error: what the declarations say
-- beyond one word at a time (the number of arguments, the options a
-- command requires, the command's own check), before anything runs.
function cli.check(parsed)
  local cmd, name = parsed.command, parsed.name
  -- A command whose output is not a document says so rather than print
  -- text a JSON reader would choke on.
  if parsed.globals.json and cmd.no_json then
    return nil, usage_error(string.format("'%s' has no --json output: %s", name, cmd.no_json),
      "run it without --json (docs/json.md lists the commands that have it)")
  end
  local nargs = #parsed.args
  local min, max = cmd.min_args or 0, cmd.max_args
  if nargs < min or (max and nargs > max) then
    return nil, usage_error(string.format("'%s' expects %s", name, cmd.usage and ("ctcli " .. cmd.usage) or "other arguments"),
      "run 'ctcli help " .. name .. "'")
  end
  for _, spec in ipairs(cmd.options or {}) do
    if spec.required and parsed.opts[option_key(spec)] == nil then
      return nil, usage_error(string.format("'%s' needs %s %s: %s", name, spec[#spec], spec.arg, spec.help),
        "run 'ctcli help " .. name .. "'")
    end
  end
  if cmd.check then
    local ok, msg, hint = cmd.check(parsed.opts, parsed.args)
    if not ok then return nil, usage_error(msg, hint or ("run 'ctcli help " .. name .. "'")) end
  end
  return true
end

local function format_options(specs)
  local lines = {}
  local rows = {}
  local width = 0
  for _, spec in ipairs(specs) do
    local names = table.concat(spec, ", ")
    if spec.arg then names = names .. (spec.optional_arg and (" [" .. spec.arg .. "]") or (" " .. spec.arg)) end
    rows[#rows + 1] = { names, spec.help or "" }
    width = math.max(width, #names)
  end
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s  %s", r[1], r[2])
  end
  return table.concat(lines, "\n")
end

function cli.help_text(name)
  if not name then
    local out = {
      "ctcli " .. ct.version .. " — release manager for containerized apps on bare-metal hosts",
      "",
      "Usage: ctcli [global options] <command> [args]",
      "",
      "Commands:",
    }
    local width = 0
    for _, n in ipairs(cli.COMMANDS) do width = math.max(width, #n) end
    for _, n in ipairs(cli.COMMANDS) do
      out[#out + 1] = string.format("  %-" .. width .. "s  %s", n, cli.command(n).summary)
    end
    out[#out + 1] = ""
    out[#out + 1] = "Global options:"
    out[#out + 1] = format_options(cli.GLOBAL_OPTIONS)
    out[#out + 1] = ""
    out[#out + 1] = "Run 'ctcli help COMMAND' for one command's usage and options,"
    out[#out + 1] = "'ctcli help exit-codes' for what each exit status means."
    return table.concat(out, "\n")
  end
  local cmd = cli.command(name)
  if not cmd then return nil end
  local out = {
    "Usage: ctcli " .. (cmd.usage or name),
    "",
    cmd.summary,
  }
  if cmd.description then
    out[#out + 1] = ""
    out[#out + 1] = cmd.description
  end
  if cmd.options and #cmd.options > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Options:"
    out[#out + 1] = format_options(cmd.options)
  end
  out[#out + 1] = ""
  out[#out + 1] = "Global options: see 'ctcli help'."
  return table.concat(out, "\n")
end

-- resolve_root(globals) -> the root directory named by --root, then
-- $CTCLI_ROOT, then ".", made absolute (not resolving symlinks): "//", "/./",
-- ".." and a trailing "/" normalised. Here rather than in ctcli.store.root,
-- so a command that opens no root (version, help) does not load the store.
local function resolve_root(globals)
  local path = globals.root or os.getenv("CTCLI_ROOT")
  if not path or path == "" then path = "." end
  if path:sub(1, 1) ~= "/" then
    local cwd = os.getenv("PWD")
    local real = ct.fs.realpath(".")
    path = (real or cwd or ".") .. "/" .. path
  end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. table.concat(parts, "/")
end

-- run(parsed) -> exit status; may raise on a bug.
local function run(parsed)
  local g = parsed.globals
  ui.setup({ json = g.json, verbose = g.verbose, no_color = g.no_color })
  local cmd = parsed.command
  if not cmd or g.help or parsed.opts.help then
    local text = cli.help_text(parsed.name)
    io.stdout:write(text, "\n")
    return 0
  end

  local ctx = {
    root = resolve_root(g),
    yes = g.yes or false,
    json = g.json or false,
    verbose = g.verbose or false,
    hook_timeout = g.hook_timeout,
    opts = parsed.opts,
    args = parsed.args,
    argv = parsed.argv,
    -- the journal's step names for this command (journal.begin)
    steps = cmd.steps,
    -- the commands, their options and help (help and completion read it)
    registry = cli,
    -- Where the layers below tell their steps (ctcli.base.report): stderr.
    report = require("ctcli.ui.report").new({ quiet = g.quiet, verbose = g.verbose, tty = ct.term.isatty(2) }),
  }
  parsed.ctx = ctx
  if cmd.needs_root then
    local rootmod = require("ctcli.base.root")
    local paths, err = rootmod.open(ctx.root)
    if not paths then return nil, err end
    ctx.paths = paths
    local needs_lock = cmd.needs_lock
    -- A reader may need the lock for one of its options (images --verify).
    if type(needs_lock) == "function" then needs_lock = needs_lock(parsed.opts, parsed.args) end
    if needs_lock then
      history().begin(ctx, parsed.name)
      local lock, lerr = rootmod.lock(paths, parsed.name, g.wait)
      if not lock then return nil, lerr end
      ctx.lock = lock
      -- A root made by an older ctcli gets today's directory modes.
      local tight, terr = rootmod.tighten(paths)
      if not tight then lock:release() return nil, terr end
      -- A root made before the id base was recorded gets its record now,
      -- keeping the ids of the containers that run (see root.record_id_base).
      local based, berr = rootmod.record_id_base(paths)
      if not based then lock:release() return nil, berr end
      -- Nothing acts on state it cannot read: a state file or a journal
      -- that is broken stops the command here, before recovery too
      -- (`recover --discard-journal` drops an unreadable journal, once
      -- everything else reads).
      local fine, serr = require("ctcli.services.statecheck").run(paths)
      if not fine then lock:release() return nil, serr end
      if cmd.before_recovery then
        local done, derr = cmd.before_recovery(ctx)
        if not done then lock:release() return nil, derr end
      end
      local note, rerr = require("ctcli.services.recovery").run(ctx)
      if rerr then lock:release() return nil, rerr end
      if note then
        io.stderr:write("ctcli: ", note, "\n")
        ctx.recovered = note
      end
      -- A root the Go ctcli made is adopted by the first changing command.
      if not cmd.adopts_itself then
        local adopt = require("ctcli.services.adopt")
        local res, aerr = history().adopting(ctx, adopt.run)
        if res == nil then lock:release() return nil, aerr end
        if res then io.stderr:write("ctcli: ", adopt.summary(ctx, res), "\n") end
      end
    end
  end
  if ctx.history then history().running(ctx) end
  local ok, err, code = cmd.run(ctx)
  if ctx.lock then ctx.lock:release() end
  if ok == nil or ok == false then return nil, err, code end
  return type(ok) == "number" and ok or 0
end

-- asked(argv, words...) -> whether one of the global flags is on the
-- command line, read before parsing so a usage error knows too (the words
-- after "--" are an app's own).
local function asked(argv, ...)
  for _, a in ipairs(argv) do
    if a == "--" then return false end
    for i = 1, select("#", ...) do
      if a == select(i, ...) then return true end
    end
  end
  return false
end

-- fail(as_json, line, msg, hint): every failure is one line on stderr (and a
-- hint); with --json it is also the error document on stdout, so a reader of
-- stdout always gets JSON (docs/json.md: {"format": 1, "error": ...}).
local function fail(as_json, line, msg, hint)
  io.stderr:write(line, "\n")
  if hint then io.stderr:write("hint: ", hint, "\n") end
  if as_json then
    json.print({ error = msg, hint = hint })
    io.stdout:flush()
  end
end

function cli.main(argv)
  local verbose = asked(argv, "-v", "--verbose")
  local as_json = asked(argv, "--json")
  json.pretty = asked(argv, "--pretty") or ct.term.isatty(1)
  local parsed, perr = cli.parse(argv)
  if not parsed then
    fail(as_json, "ctcli: " .. perr.msg, perr.msg, perr.hint)
    return cli.EXIT.usage
  end
  as_json = parsed.globals.json or false
  parsed.argv = argv
  local ok, status, err, code = xpcall(run, function(e)
    if getmetatable(e) == UsageError then return e end
    return { bug = true, msg = tostring(e), trace = debug.traceback(tostring(e), 2) }
  end, parsed)
  io.stdout:flush()
  if parsed.ctx and parsed.ctx.history then history().finish(parsed.ctx, ok, status, err, code) end
  if not ok then
    if getmetatable(status) == UsageError then
      fail(as_json, "ctcli: " .. status.msg, status.msg, status.hint)
      return cli.EXIT.usage
    end
    local msg = "internal error: " .. status.msg:gsub("\n.*", "") .. " (a bug in ctcli; run with -v for a traceback)"
    fail(as_json, "ctcli: " .. (verbose and ("internal error: " .. status.trace) or msg), msg)
    -- exec's own failures are all 125 (docker's), so a script can tell them
    -- from the app's status; elsewhere a bug has its own code.
    return parsed.command and parsed.command.failure_code or cli.EXIT.internal
  end
  if status == nil then
    local msg = tostring(err):gsub("\n+$", "")
    fail(as_json, code == cli.EXIT.cancelled and ("ctcli: " .. msg) or ("ctcli: error: " .. msg), msg)
    return code or parsed.command and parsed.command.failure_code or cli.EXIT.failed
  end
  return status
end

cli.usage_error = usage_error

return cli
