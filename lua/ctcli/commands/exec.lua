-- exec APP CMD...: run a command inside the app's container (runc exec);
-- in a temporary container when the app is not running, as the Go tool did.
local ct = require("ct")
local apps = require("ctcli.apps")
local common = require("ctcli.common")
local json = require("ctcli.json")
local release = require("ctcli.release")
local root = require("ctcli.root")
local runtime = require("ctcli.runtime")

local function temporary(ctx, rel, app, argv)
  local lock, lerr = root.lock(ctx.paths, "exec")
  if not lock then return nil, lerr end
  local dir, err = ct.fs.mkdtemp(ctx.paths.tmp .. "/exec-XXXXXX")
  if not dir then lock:release() return nil, err end
  local text = ct.fs.read(release.bundle_dir(rel, app.name) .. "/config.json")
  local cfg = text and json.decode(text)
  if not cfg then ct.fs.rmtree(dir) lock:release() return nil, "cannot read the bundle of " .. app.name end
  local tty = ct.term.isatty(0)
  cfg.process.args = json.array(argv)
  cfg.process.terminal = tty
  local ok, werr = apps.prepare_files(ctx.paths, app)
  if ok then ok, werr = ct.fs.write_atomic(dir .. "/config.json", json.encode(cfg, true)) end
  if not ok then ct.fs.rmtree(dir) lock:release() return nil, werr end
  local tools = release.tools(rel)
  local id = runtime.container_id(ctx.paths, app.name) .. "-exec-" .. ct.proc.getpid()
  -- Our own stdin, stdout and stderr (a pipe or a terminal), as runc exec
  -- gets them when the app runs.
  local code, rerr = ct.oci.run_tty(runtime.rt(ctx.paths, tools), dir, id)
  ct.proc.run({ tools.runc, "--root", ctx.paths.runc_root, "delete", "--force", id }, { timeout = 30 })
  ct.fs.rmtree(dir)
  lock:release()
  if not code then return nil, rerr end
  return code
end

return {
  summary = "Run a command in an app's container (a temporary one when it is stopped)",
  usage = "exec APP CMD [ARG...]",
  description = "Runs CMD with runc exec in the running container of APP, with a terminal\n" ..
    "when stdin is one. When APP is not running, CMD runs in a temporary container\n" ..
    "of the app's image with its configs and data. The command's exit status\n" ..
    "becomes ctcli's.",
  min_args = 2,
  rest_after = 1,
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
      local tools = release.tools(rel)
      local code, xerr = ct.oci.exec_tty(runtime.rt(ctx.paths, tools),
        runtime.container_id(ctx.paths, app.name), argv)
      if not code then return nil, xerr end
      return code
    end
    return temporary(ctx, rel, app, argv)
  end,
}
