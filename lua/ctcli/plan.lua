-- The difference between the current release and a package: per app
-- added / changed / removed / unchanged. An app is unchanged when its image
-- digest and its generated config.json are both equal.
local ct = require("ct")
local release = require("ctcli.release")
local store = require("ctcli.store")
local ui = require("ctcli.ui")

local M = {}

-- diff(paths, cur, model) -> array of {name, change, old=, new=}
function M.diff(paths, cur, model)
  local out = {}
  local new_by = {}
  for _, app in ipairs(model.apps) do new_by[app.name] = app end
  for _, app in ipairs(model.apps) do
    local old = cur and cur.by_name[app.name]
    local change
    if not old then
      change = "added"
    elseif old.image.digest ~= app.image.digest then
      change = "changed"
    else
      local old_cfg = ct.fs.read(release.bundle_dir(cur, app.name) .. "/config.json")
      -- With the old app's writable layer: an unchanged app keeps it.
      local probe = setmetatable({ upper = old.upper }, { __index = app })
      local new_cfg = store.has(paths, app.name, app.image.digest) and release.app_config(paths, probe)
      change = (old_cfg and new_cfg and old_cfg == new_cfg) and "unchanged" or "changed"
    end
    out[#out + 1] = { name = app.name, change = change, old = old, new = app }
  end
  if cur then
    for _, old in ipairs(cur.apps) do
      if not new_by[old.name] then
        out[#out + 1] = { name = old.name, change = "removed", old = old }
      end
    end
  end
  return out
end

-- print(diff): one line per app.
function M.print(diff)
  local rows = {}
  local colors = { added = "green", changed = "yellow", removed = "red", unchanged = "dim" }
  for _, d in ipairs(diff) do
    rows[#rows + 1] = {
      d.name, ui.paint(colors[d.change], d.change),
      d.old and d.old.version or "-", d.new and d.new.version or "-",
      d.old and ui.image_label(d.old.image) or "-", d.new and ui.image_label(d.new.image) or "-",
    }
  end
  ui.table({ "APP", "CHANGE", "OLD VERSION", "NEW VERSION", "OLD IMAGE", "NEW IMAGE" }, rows)
end

function M.to_json(diff)
  local json = require("ctcli.json")
  local out = json.array()
  for _, d in ipairs(diff) do
    out[#out + 1] = {
      name = d.name, change = d.change,
      old_version = d.old and d.old.version or json.null, new_version = d.new and d.new.version or json.null,
      -- image: the reference, digest: the sha256, as in every --json document
      old_image = d.old and (d.old.image.name or d.old.image.ref) or json.null,
      new_image = d.new and (d.new.image.name or d.new.image.ref) or json.null,
      old_digest = d.old and d.old.image.digest or json.null, new_digest = d.new and d.new.image.digest or json.null,
    }
  end
  return out
end

return M
