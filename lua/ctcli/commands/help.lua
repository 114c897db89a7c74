-- help [COMMAND]: the command list, or one command's usage and options.
return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "help is text for people",
  summary = "Show the commands, or one command's usage and options",
  usage = "help [COMMAND | exit-codes]",
  max_args = 1,
  run = function(ctx)
    local name = ctx.args[1]
    if name == "exit-codes" then
      io.stdout:write(require("ctcli.base.exit_codes").text(), "\n")
      return true
    end
    local cli = ctx.registry
    local text = cli.help_text(name)
    if not text then
      local hint = cli.suggest(name, cli.COMMANDS)
      error(cli.usage_error("unknown command '" .. name .. "'",
        hint and ("did you mean '" .. hint .. "'?") or "run 'ctcli help' for the list of commands"))
    end
    io.stdout:write(text, "\n")
    return true
  end,
}
