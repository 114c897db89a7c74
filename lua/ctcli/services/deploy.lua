-- The slow half of install and upgrade, done before any app stops: open the
-- package, bring the images the store lacks into it (their blobs, the
-- layers it lacks), build the release directory (with the apps' uppers).
local ct = require("ct")
local packages = require("ctcli.services.packages")
local release = require("ctcli.store.release")
local releases = require("ctcli.services.releases")
local report = require("ctcli.base.report")
local store = require("ctcli.store.images")
local tempdir = require("ctcli.base.tempdir")
local userns = require("ctcli.runtime.userns")

local M = {}

-- unpack(ctx, pkg) -> true | nil, msg: images missing from the store.
function M.unpack(ctx, pkg)
  local jobs = {}
  local uc, uerr = userns.context(ctx.paths)
  if not uc then return nil, uerr end
  for _, app in ipairs(pkg.release.apps) do
    if not store.has(ctx.paths, app.name, app.image.digest) then
      jobs[#jobs + 1] = {
        name = app.name, digest = app.image.digest, ref = app.image.ref,
        layout = pkg.dir .. "/" .. app.image.layout,
        idmap = userns.desired(app, uc.conf, uc.range), sha256 = pkg.sha256,
      }
    end
  end
  local rep = report.of(ctx.report)
  if #jobs > 0 then
    local names = {}
    for _, job in ipairs(jobs) do names[#names + 1] = job.name end
    rep.step("unpacking %d image%s: %s", #jobs, #jobs == 1 and "" or "s", table.concat(names, ", "))
  else
    rep.step("unpacking: every image is in the store already")
  end
  -- ctcli extracts the layers itself (ctcli.store.layers): umoci is not needed here.
  return store.unpack_all(ctx.paths, rep, jobs, function(job)
    rep.step("unpacked %s (%s)", job.name, job.digest:sub(8, 19))
  end)
end

-- build(ctx, pkg, journal, previous) -> staged release placed in releases/ | nil, msg
function M.build(ctx, pkg, journal, previous)
  local ok, err = journal:step("unpack")
  if not ok then return nil, err end
  ok, err = M.unpack(ctx, pkg)
  if not ok then return nil, err end
  ok, err = journal:step("stage")
  if not ok then return nil, err end
  report.of(ctx.report).step("building the release")
  local staged, serr = releases.stage(ctx.paths, pkg, {
    previous = previous, source = pkg.file and pkg.file:match("[^/]+$"), signer = pkg.signer,
  })
  if not staged then return nil, serr end
  journal:set("release", staged.id)
  ok, err = journal:step("place")
  if not ok then ct.fs.rmtree(staged.dir) return nil, err end
  ok, err = release.place(ctx.paths, staged)
  if not ok then ct.fs.rmtree(staged.dir) return nil, err end
  return release.load(ctx.paths, staged.id)
end

-- open(ctx, file, journal) -> pkg | nil, msg. `local pkg <close> = ...`
-- removes its temp dir when the caller's scope ends (pkg.cleanup).
function M.open(ctx, file, journal)
  local ok, err = journal:step("extract")
  if not ok then return nil, err end
  local pkg, perr = packages.open(ctx.paths, file, ctx.report)
  return tempdir.closing(pkg), perr
end

return M
