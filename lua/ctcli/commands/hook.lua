-- hook test APP HOOK: one hook of one app in its real sandbox, against a
-- copy of the app's dirs (or the live ones, read-only); see hooktest.lua.
local hooktest = require("ctcli.services.hooktest")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local ui = require("ctcli.ui.console")

return {
  summary = "Try a hook: run one hook of an app in its sandbox and show what it did",
  usage = "hook test APP HOOK [--release ID] [--live]",
  description = "Runs HOOK (a hook point such as pre_upgrade, or migration:ID) of APP from the\n" ..
    "current release (or --release ID) in the sandbox an upgrade runs it in: the same\n" ..
    "ctx, time limit and cgroup. By default the hook works on a copy of the app's\n" ..
    "config/, data/ and logs/ made in the root's tmp/ (removed afterwards), and a\n" ..
    "ctx.exec runs in a temporary container of that copy; with --live it reads the\n" ..
    "live dirs and ctx.write is refused (ctx.exec then runs in the live container).\n" ..
    "Commands a hook runs with ctx.run run on the host for real in both modes.\n" ..
    "Prints the hook's ctx.log lines, the commands it ran and their statuses, the\n" ..
    "files it wrote and every file that differs in the copy.\n" ..
    "Exit status 0 when the hook ran and succeeded, 1 otherwise.",
  options = {
    { "--release", arg = "ID", help = "the release whose hook files to use (default: the current one)" },
    { "--live", help = "run against the live config/data/logs, refusing writes, instead of a copy" },
  },
  min_args = 3, max_args = 3,
  needs_root = true, needs_lock = true,
  check = function(_, args)
    if args[1] ~= "test" then return nil, "'hook' knows one subcommand: test (got '" .. tostring(args[1]) .. "')" end
    return hooktest.point_ok(args[3])
  end,
  run = function(ctx)
    local name, point = ctx.args[2], ctx.args[3]
    local rel, err
    if ctx.opts.release then
      rel, err = release.load(ctx.paths, ctx.opts.release)
    else
      rel, err = release.current(ctx.paths)
      if not rel and not err then err = "no release is installed" end
    end
    if not rel then return nil, err end
    local report, rerr = hooktest.run(ctx, rel, name, point, { live = ctx.opts.live })
    if not report then return nil, rerr end
    if ctx.json then
      json.print(report)
    else
      hooktest.print(report, ui)
    end
    if not report.ok then
      if ctx.json then return 1 end
      return nil, report.error
    end
    return true
  end,
}
