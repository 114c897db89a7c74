-- exec APP CMD...: run a command inside the app's container (runc exec);
-- in a temporary container when the app is not running, as the Go tool did.
local ct = require("ct")
local apps = require("ctcli.services.apps")
local common = require("ctcli.services.common")
local release = require("ctcli.store.release")
local runtools = require("ctcli.runtime.tools")
local root = require("ctcli.base.root")
local runtime = require("ctcli.runtime.runc")
local tempdir = require("ctcli.base.tempdir")

-- EXIT: docker's statuses for a command that did not run (DESIGN §6).
local NOT_RUN, NOT_EXECUTABLE, NOT_FOUND = 125, 126, 127

-- runc_log() -> path of a fresh file for runc's own errors, cleanup. Not
-- in the root's tmp/: exec of a running app holds no lock.
local function runc_log()
  local base = os.getenv("TMPDIR")
  local dir = ct.fs.mkdtemp(((base and base ~= "") and base or "/tmp") .. "/ctcli-exec-XXXXXX")
  if not dir then return nil, function() end end
  return dir .. "/runc.log", function() ct.fs.rmtree(dir) end
end

-- outcome(code, log, app, argv) -> status | nil, msg, status: the command's
-- own status, unless runc logged that it could not start it (runtime reads
-- runc's log), with docker's statuses for that.
local function outcome(code, log, app, argv)
  local status, why, kind = runtime.command_status(code, log)
  if status then return status end
  local cmd = argv[1]
  if kind == "not-found" then
    return nil, string.format("%s: command not found in %s (not on its PATH, or no such file)", cmd, app), NOT_FOUND
  elseif kind == "not-executable" then
    return nil, string.format("%s: not executable in %s", cmd, app), NOT_EXECUTABLE
  end
  return nil, "runc could not run the command in " .. app .. ": " .. why, NOT_RUN
end

-- temporary(...): the lock and the bundle dir are held by `<close>` (gone on
-- any return or error), and let go as soon as the container is deleted.
local function temporary(ctx, rel, app, argv)
  local lock <close>, lerr = root.lock(ctx.paths, "exec")
  if not lock then return nil, lerr end
  local tmp <close>, err = tempdir.make(ctx.paths.tmp .. "/exec-XXXXXX")
  if not tmp then return nil, err end
  local dir = tmp.path
  local ok, werr = apps.prepare_files(ctx.paths, app)
  if ok then ok, werr = runtime.temporary(release.bundle_dir(rel, app.name), dir, argv, ct.term.isatty(0)) end
  if not ok then return nil, werr end
  local rt = runtime.rt(ctx.paths, runtools.of(rel))
  local id = runtime.temporary_id(ctx.paths, app.name, "exec")
  -- Our own stdin, stdout and stderr (a pipe or a terminal), as runc exec
  -- gets them when the app runs.
  local log, drop = runc_log()
  local code, rerr = runtime.run_tty(rt, dir, id, { log = log })
  runtime.delete(rt, id)
  runtime.temporary_done(dir)
  tmp:remove()
  lock:release()
  if not code then drop() return nil, rerr end
  local status, why, ecode = outcome(code, log, app.name, argv)
  drop()
  return status, why, ecode
end

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "its output is the command's own, run in the container",
  summary = "Run a command in an app's container (a temporary one when it is stopped)",
  usage = "exec APP CMD [ARG...]",
  description = "Runs CMD with runc exec in the running container of APP, with a terminal\n" ..
    "when stdin is one. When APP is not running, CMD runs in a temporary container\n" ..
    "of the app's image with its configs and data. The command's exit status\n" ..
    "becomes ctcli's; as docker's, 125 when ctcli or runc fails, 126 when CMD\n" ..
    "is not executable, 127 when it is not found.",
  -- Accepted as docker's habits (`exec -it APP sh`): stdin is always passed,
  -- and a terminal is made exactly when stdin is one.
  options = {
    { "-i", "--interactive", help = "keep stdin open (always so; accepted as docker's)" },
    { "-t", "--tty", help = "a terminal for CMD (made when stdin is one; accepted as docker's)" },
  },
  min_args = 2,
  rest_after = 1,
  failure_code = NOT_RUN,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "exec")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, { ctx.args[1] })
    if not list then return nil, serr end
    local app = list[1]
    local argv = { table.unpack(ctx.args, 2) }
    local states, lerr = apps.states(ctx, rel)
    if not states then return nil, lerr end
    local st = states[app.name]
    if st and st.status == "running" then
      local tools = runtools.of(rel)
      local log, drop = runc_log()
      local code, xerr = runtime.exec_tty(runtime.rt(ctx.paths, tools),
        runtime.container_id(ctx.paths, app.name), argv, { log = log })
      if not code then drop() return nil, xerr end
      local status, why, ecode = outcome(code, log, app.name, argv)
      drop()
      return status, why, ecode
    end
    return temporary(ctx, rel, app, argv)
  end,
}
