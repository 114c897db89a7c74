-- Adoption of a root the Go ctcli made, in place and with nothing stopped:
-- a backup in the Go tool's own format first (its way back), then each
-- rootfs moved (one rename) into the image store, the release written as
-- releases/<id>/, the apps' mapping recorded as the Go tool's, and
-- current-release replaced by the symlink. Running containers keep their
-- ids and pids: runc finds them in runc-root by the same ids, and a
-- container's mounts do not follow a rename of its rootfs on the host.
--
-- Journaled as "adopt"; every step is idempotent, so an interrupted
-- adoption is finished by running it again (recovery does that).
local ct = require("ct")
local apps = require("ctcli.services.apps")
local backup = require("ctcli.services.backup")
local goroot = require("ctcli.store.goroot")
local journal = require("ctcli.journal.journal")
local json = require("ctcli.base.json")
local release = require("ctcli.store.release")
local bundle = require("ctcli.runtime.bundle")
local rootmod = require("ctcli.base.root")
local report = require("ctcli.base.report")
local store = require("ctcli.store.images")
local userns = require("ctcli.runtime.userns")
local wanted = require("ctcli.store.wanted")

local M = {}

M.STEPS = { "backup", "images", "release", "state", "swap" }

-- plan(ctx) -> {gorel=, apps = {{name=, state=, pid=, key=}}, backup_dir=} | false
-- (nothing to adopt) | nil, msg. Changes nothing.
function M.plan(ctx)
  if not goroot.present(ctx.paths) then return false end
  local gorel, err = goroot.read(ctx.paths.current)
  if gorel == nil then return nil, "cannot adopt the Go ctcli's root: " .. err end
  if gorel == false then return { empty = true, apps = {} } end
  local view = goroot.view(gorel, release)
  local states = apps.states(ctx, view) or {}
  local out = { gorel = gorel, apps = {} }
  for _, name in ipairs(gorel.model.order) do
    local st = states[name]
    out.apps[#out.apps + 1] = { name = name, state = st and st.status or "stopped", pid = st and st.pid,
      key = name .. "@" .. gorel.apps[name].digest }
  end
  return out
end

-- Finishing what the journal says was begun.
local function finish_swap(paths, id)
  local t = ct.fs.readlink(paths.current)
  if t == "releases/" .. id then return true end
  local st = ct.fs.lstat(paths.current)
  if st and st.type == "dir" then
    local ok, err = ct.fs.rmtree(paths.current)
    if not ok then return nil, "cannot remove the Go ctcli's current-release: " .. tostring(err) end
  end
  return release.swap(paths, id)
end

local function write_release(ctx, gorel)
  local p = ctx.paths
  local final = release.dir(p, gorel.id)
  if ct.fs.exists(final .. "/release.json") then return true end
  local dir, err = ct.fs.mkdtemp(p.tmp .. "/adopt-XXXXXX")
  if not dir then return nil, err end
  local rel = goroot.record(gorel, release, { source = "adopted from the Go ctcli" })
  local ok, werr = goroot.write_release(gorel, dir, rel)
  for _, a in ipairs(rel.apps) do
    if not ok then break end
    -- Today's bundle; the app moves to it (and to the root's range) at its next start.
    local cfg, cerr = bundle.app_config(p, a)
    if not cfg then ok, werr = nil, cerr break end
    ok, werr = ct.fs.write_atomic(dir .. "/apps/" .. a.name .. "/config.json", cfg)
    -- runc runs `exec` from the rootfs path it recorded when the Go ctcli
    -- created the container (current-release/apps/<app>/rootfs): a link
    -- there keeps exec working until the app's next start removes it.
    if ok then
      ok, werr = ct.fs.symlink(store.dir(p, a.name, a.image.digest) .. "/rootfs", dir .. "/apps/" .. a.name .. "/rootfs")
    end
  end
  if ok then
    if ct.fs.exists(final) then ct.fs.rmtree(final) end
    ok, werr = ct.fs.rename(dir, final)
  end
  if not ok then ct.fs.rmtree(dir) return nil, werr end
  return ct.fs.fsync(p.releases)
end

-- The state an adopted root starts with: each app in the Go tool's mapping,
-- and the apps that run now wanted (what boot and `start` restore).
local function write_state(ctx, gorel)
  local p = ctx.paths
  local view = goroot.view(gorel, release)
  view.dir = release.dir(p, gorel.id)
  local states = apps.states(ctx, view) or {}
  local running = {}
  for _, name in ipairs(gorel.model.order) do
    local m, merr = userns.recorded(p, name)
    if m == nil then return nil, merr end
    if not userns.is_go(m) then
      local ok, err = userns.record(p, name, userns.GO)
      if not ok then return nil, err end
    end
    local st = states[name]
    if st and st.status == "running" then running[#running + 1] = name end
  end
  if #running > 0 then return wanted.mark(p, running, true) end
  return true
end

-- resume(ctx, j) -> {release=, backup=} | nil, msg: runs (or finishes) the
-- adoption journaled in j.
function M.resume(ctx, j)
  local p = ctx.paths
  local d = j.doc.data
  if not goroot.present(p) then
    -- Past the removal of current-release/: only the symlink is left to make.
    if not d.release then return nil, "the journal of the adoption names no release" end
    local ok, err = j:step("swap")
    if ok then ok, err = finish_swap(p, d.release) end
    if not ok then return nil, err end
    return { release = d.release, backup = d.backup }
  end
  local gorel, err = goroot.read(p.current)
  if gorel == nil then return nil, "cannot adopt the Go ctcli's root: " .. err end
  -- The directories this ctcli needs and the Go tool never made (state/
  -- has the journal already): images/, tmp/, releases/backups/, ...
  local ok
  ok, err = rootmod.init(p.root)
  if ok == nil then return nil, err end
  if gorel == false then
    -- Go's init, nothing installed: the empty directory goes.
    ok, err = j:step("swap")
    if ok then ok, err = ct.fs.rmdir(p.current) end
    if not ok then return nil, err end
    return { release = false }
  end
  if not d.backup then
    ok, err = j:step("backup")
    if not ok then return nil, err end
    local b, berr = backup.create_go(ctx, goroot.view(gorel, release), gorel.info, { journal = j })
    if not b then return nil, "the backup in the Go ctcli's format failed: " .. tostring(berr) end
    j:set("backup", b)
    d.backup = b
  end
  j:set("release", gorel.id)
  local rep = report.of(ctx.report)
  rep.step("adopt: moving each app's rootfs into images/")
  ok, err = j:step("images")
  for _, name in ipairs(gorel.model.order) do
    if not ok then break end
    ok, err = goroot.place_image(p.images, gorel, name)
  end
  if ok then ok, err = j:step("release") end
  if ok then rep.step("adopt: writing release %s", gorel.id) ok, err = write_release(ctx, gorel) end
  if ok then ok, err = j:step("state") end
  if ok then ok, err = write_state(ctx, gorel) end
  if ok then ok, err = j:step("swap") end
  if ok then rep.step("swapping to release %s", gorel.id) ok, err = finish_swap(p, gorel.id) end
  if not ok then return nil, err end
  return { release = gorel.id, backup = d.backup }
end

-- run(ctx) -> result of resume | false (not a Go root) | nil, msg.
function M.run(ctx)
  if not goroot.present(ctx.paths) then return false end
  local j, err = journal.begin(ctx.paths, "adopt", {}, M.STEPS, ctx.report)
  if not j then return nil, err end
  local res, rerr = M.resume(ctx, j)
  if not res then
    -- Left journaled: the next command finishes it (every step is idempotent).
    return nil, "adopting the Go ctcli's root failed: " .. tostring(rerr) ..
      "; nothing was stopped, and the next changing command (or 'ctcli recover') finishes the adoption"
  end
  j:finish()
  return res
end

-- summary(res) -> one line for the operator.
function M.summary(ctx, res)
  if res.release == false then return "adopted the Go ctcli's empty root " .. ctx.root end
  return string.format("adopted the Go ctcli's root %s as release %s; running apps kept running; " ..
    "the way back for the Go ctcli: rollback of %s", ctx.root, res.release, json.encode(res.backup):sub(2, -2))
end

return M
