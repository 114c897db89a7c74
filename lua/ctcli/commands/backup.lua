-- backup [--ignore-data] [--gzip]: one archive of the current release,
-- config/ and data/ under releases/backups/.
local backup = require("ctcli.services.backup")
local common = require("ctcli.services.common")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local ui = require("ctcli.ui.console")

return {
  summary = "Back up the current release, configs and data into releases/backups/",
  usage = "backup [--ignore-data] [--gzip]",
  description = "Writes releases/backups/<time>-<release>.tar.zst (multi-threaded zstd; --gzip\n" ..
    "for .tar.gz) and its backup-info.json beside it. The archive holds the\n" ..
    "release, each image's blobs, each app's writable layer, config/ and, unless\n" ..
    "--ignore-data, data/. The release and images are written while every app\n" ..
    "runs; then each running app is paused only while its own writable layer,\n" ..
    "config and data are read, one at a time, so they are consistent.",
  options = {
    { "--ignore-data", help = "leave data/ out" },
    { "--gzip", help = "write a .tar.gz instead of .tar.zst" },
  },
  max_args = 0,
  needs_root = true, needs_lock = true,
  -- The journaled steps, in order (CTCLI_FAULT=backup:<step> kills ctcli there,
  -- backup:<step>:fail makes the step fail).
  steps = { "archive", "finish" },
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "backup")
    if not rel then return nil, err end
    local j, jerr = journal.begin(ctx.paths, "backup", { release = rel.id }, ctx.steps, ctx.report)
    if not j then return nil, jerr end
    local stepped, step_err = j:step("archive")
    if not stepped then j:finish() return nil, step_err end
    local info, berr = backup.create(ctx, rel, {
      data = not ctx.opts.ignore_data, gzip = ctx.opts.gzip, journal = j, reason = "manual",
    })
    if not info then j:finish() return nil, berr end
    local done, ferr = j:finish()
    if not done then return nil, "backed up " .. rel.id .. " to " .. info.path .. ", but " .. ferr end
    if ctx.json then
      json.print(json.backup(info))
    else
      ui.print("backed up %s to %s (%s%s)", rel.id, info.path, ui.bytes(info.bytes or 0),
        info.data and "" or ", without data")
    end
    return true
  end,
}
