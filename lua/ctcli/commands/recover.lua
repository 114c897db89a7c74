-- recover: complete or undo an interrupted command (every changing command
-- also does this first). A journal that cannot be read stops every
-- changing command; --discard-journal is the operator's way past it, after
-- checking the root by hand: what the interrupted command left is kept as
-- it is.
local ct = require("ct")
local journal = require("ctcli.journal.journal")
local ui = require("ctcli.ui.console")

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "it reports in prose; 'status --json' and 'history --json' show the result",
  summary = "Complete or undo an interrupted command (others do this first, too)",
  usage = "recover [--discard-journal]",
  description = "--discard-journal drops state/journal.json without completing or undoing what it\n" ..
    "records: for a journal that cannot be read, after checking the root ('ctcli status').",
  options = {
    { "--discard-journal", help = "drop the journal unread (check the root first)" },
  },
  max_args = 0,
  needs_root = true, needs_lock = true, recovers_itself = true,
  before_recovery = function(ctx)
    if not ctx.opts.discard_journal then return true end
    if not ct.fs.lstat(ctx.paths.journal) then
      ctx.discarded = false
      return true
    end
    local pending = journal.pending(ctx.paths)
    local ok, err = journal.discard(ctx.paths)
    if not ok then return nil, err end
    ctx.discarded = pending and pending.doc.command or true
    return true
  end,
  run = function(ctx)
    if ctx.discarded then
      ui.print("discarded the journal%s; nothing was completed or undone",
        type(ctx.discarded) == "string" and (" of an interrupted '" .. ctx.discarded .. "'") or "")
    elseif ctx.discarded == false then
      ui.print("no journal to discard")
    elseif not ctx.recovered then
      ui.print("nothing to recover")
    end
    return true
  end,
}
