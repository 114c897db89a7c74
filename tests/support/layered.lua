-- What the layer store's specs (layers, layerbackup, storecmd) share: the
-- three-app packages on one base, the current release's apps and their
-- writable layers, the extracted layers on disk, a shell in an app.
local ct = require("ct")
local json = require("ctcli.base.json")
local H = require("support.helpers")

local M = {}

M.APPS = { "web", "api", "worker" }

-- packages() -> v1, v2: three apps on one base; in v2 web changes, api and
-- worker stay as they are (same image, same bundle).
function M.packages()
  local v1 = H.package({ "--format", "manifest", "--version", "1.0.0",
    "--app", "web:health=none", "--app", "api:health=none", "--app", "worker:health=none" })
  local v2 = H.package({ "--format", "manifest", "--version", "1.1.0", "--app", "web:health=none,version=1.1.0",
    "--app", "api:health=none,version=1.0.0", "--app", "worker:health=none,version=1.0.0" })
  return v1, v2
end

function M.release_of(root)
  return json.decode(assert(ct.fs.read(root .. "/current-release/release.json")))
end

function M.upper_of(root, app)
  for _, a in ipairs(M.release_of(root).apps) do
    if a.name == app then return a.upper end
  end
end

-- sh(root, app, script) -> the result of `ctcli exec APP sh -c SCRIPT`
function M.sh(root, app, script)
  return H.ctcli(root, { "exec", app, "sh", "-c", script })
end

-- layer_dirs(root) -> map diff hex -> its layers/<mapping>/<hex> dir, and their number.
function M.layer_dirs(root)
  local out, n = {}, 0
  for _, m in ipairs(ct.fs.dir(root .. "/layers") or {}) do
    for _, name in ipairs(ct.fs.dir(root .. "/layers/" .. m) or {}) do
      if not name:match("%.json$") then
        out[name] = root .. "/layers/" .. m .. "/" .. name
        n = n + 1
      end
    end
  end
  return out, n
end

return M
