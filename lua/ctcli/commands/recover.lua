-- recover: complete or undo an interrupted command (every changing command
-- also does this first).
local ui = require("ctcli.ui")

return {
  summary = "Complete or undo an interrupted command (others do this first, too)",
  usage = "recover",
  max_args = 0,
  needs_root = true, needs_lock = true, recovers_itself = true,
  run = function(ctx)
    if not ctx.recovered then ui.print("nothing to recover") end
    return true
  end,
}
