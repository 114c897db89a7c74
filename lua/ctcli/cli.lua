-- The front end: global options, the command registry, parsing, help, the
-- root and its lock, and the one place that prints an error and picks the
-- exit status (0 done, 1 failed, 2 usage).
local ct = require("ct")
local history = require("ctcli.history")
local ui = require("ctcli.ui")

local cli = {}

-- Registered commands, in the order help lists them. A name here is a
-- module lua/ctcli/commands/<name>.lua.
cli.COMMANDS = {
  "init", "install", "upgrade",
  "delete", "start", "stop", "restart", "status", "logs", "exec", "backup", "rollback", "release-info", "list-releases", "recover",
  "adopt", "history",
  "validate", "pack", "keygen", "sign", "verify", "plan", "inspect", "convert",
  "enable", "disable", "rotate-logs", "reset", "images", "prune",

  "help", "version", "completion",
}

cli.GLOBAL_OPTIONS = {
  { "--root", arg = "DIR", help = "the root directory (default $CTCLI_ROOT, then the current directory)" },
  { "-y", "--yes", help = "answer yes to every question" },
  { "--json", help = "machine-readable output" },
  { "--no-color", help = "no colors (also when NO_COLOR is set)" },
  { "-v", "--verbose", help = "more detail; tracebacks on internal errors" },
  { "--hook-timeout", arg = "SECONDS", type = "number", help = "time limit of one hook (default 60)" },
  { "--wait", arg = "SECONDS", optional_arg = true, default_arg = "86400", type = "number",
    help = "when another ctcli holds the root, wait for it (up to SECONDS) instead of failing" },
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

local distance = require("ctcli.text").distance

-- suggest(word, candidates) -> the closest candidate, or nil.
function cli.suggest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if c:sub(1, #word) == word and #word >= 2 then d = math.min(d, 1) end
    if d <= math.max(2, #word // 3) and (not best_d or d < best_d) then
      best, best_d = c, d
    end
  end
  return best
end

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

local function convert(spec, name, value)
  if spec.type == "number" then
    local n = tonumber(value)
    if not n or n < 0 then
      return nil, usage_error(string.format("%s expects a non-negative number, got '%s'", name, value))
    end
    return n
  end
  return value
end

-- parse(argv) -> globals, command name, command options, positional args.
-- Global options are accepted before and after the command name.
function cli.parse(argv)
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
          if spec.optional_arg and (argv[i + 1] == nil or not tonumber(argv[i + 1])) then
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
    i = i + 1
  end
  return { globals = globals, name = name, command = cmd, opts = opts, args = pos }
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
    out[#out + 1] = "Run 'ctcli help COMMAND' for one command's usage and options."
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

local function resolve_root(globals)
  local root = globals.root or os.getenv("CTCLI_ROOT")
  if not root or root == "" then root = "." end
  return require("ctcli.root").absolute(root)
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
  local nargs = #parsed.args
  local min, max = cmd.min_args or 0, cmd.max_args
  if nargs < min or (max and nargs > max) then
    error(usage_error(string.format("'%s' expects %s", parsed.name, cmd.usage and ("ctcli " .. cmd.usage) or "other arguments"),
      "run 'ctcli help " .. parsed.name .. "'"))
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
  }
  parsed.ctx = ctx
  if cmd.needs_root then
    local rootmod = require("ctcli.root")
    local paths, err = rootmod.open(ctx.root)
    if not paths then return nil, err end
    ctx.paths = paths
    if cmd.needs_lock then
      history.begin(ctx, parsed.name)
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
      local fine, serr = require("ctcli.statecheck").run(paths)
      if not fine then lock:release() return nil, serr end
      if cmd.before_recovery then
        local done, derr = cmd.before_recovery(ctx)
        if not done then lock:release() return nil, derr end
      end
      local note, rerr = require("ctcli.recovery").run(ctx)
      if rerr then lock:release() return nil, rerr end
      if note then
        io.stderr:write("ctcli: ", note, "\n")
        ctx.recovered = note
      end
      -- A root the Go ctcli made is adopted by the first changing command.
      if not cmd.adopts_itself then
        local adopt = require("ctcli.adopt")
        local res, aerr = history.adopting(ctx, adopt.run)
        if res == nil then lock:release() return nil, aerr end
        if res then io.stderr:write("ctcli: ", adopt.summary(ctx, res), "\n") end
      end
    end
  end
  history.running(ctx)
  local ok, err, code = cmd.run(ctx)
  if ctx.lock then ctx.lock:release() end
  if ok == nil or ok == false then return nil, err, code end
  return type(ok) == "number" and ok or 0
end

function cli.main(argv)
  local verbose = false
  for _, a in ipairs(argv) do
    if a == "-v" or a == "--verbose" then verbose = true end
  end
  local parsed, perr = cli.parse(argv)
  if not parsed then
    io.stderr:write("ctcli: ", perr.msg, "\n")
    if perr.hint then io.stderr:write("hint: ", perr.hint, "\n") end
    return 2
  end
  parsed.argv = argv
  local ok, status, err, code = xpcall(run, function(e)
    if getmetatable(e) == UsageError then return e end
    return { bug = true, msg = tostring(e), trace = debug.traceback(tostring(e), 2) }
  end, parsed)
  io.stdout:flush()
  history.finish(parsed.ctx, ok, status, err, code)
  if not ok then
    if getmetatable(status) == UsageError then
      io.stderr:write("ctcli: ", status.msg, "\n")
      if status.hint then io.stderr:write("hint: ", status.hint, "\n") end
      return 2
    end
    if verbose then
      io.stderr:write("ctcli: internal error: ", status.trace, "\n")
    else
      io.stderr:write("ctcli: internal error: ", (status.msg:gsub("\n.*", "")),
        " (run with -v for a traceback)\n")
    end
    return 1
  end
  if status == nil then
    io.stderr:write("ctcli: error: ", tostring(err):gsub("\n+$", ""), "\n")
    return code or 1
  end
  return status
end

cli.usage_error = usage_error

return cli
