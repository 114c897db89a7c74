-- The difference between the current release and a package: per app
-- added / changed / removed / unchanged (the rule is appdiff's), each with
-- the field diff that says why.
local ct = require("ct")
local appdiff = require("ctcli.model.appdiff")
local release = require("ctcli.store.release")
local bundle = require("ctcli.runtime.bundle")
local store = require("ctcli.store.images")

local M = {}

local function hook_text(dir, rel_path)
  return dir and rel_path and ct.fs.read(dir .. "/" .. rel_path) or nil
end

-- diff(paths, cur, model [, base]) -> array of {name, change, old=, new=,
-- reasons=}; base is the extracted package (where model's hook files are).
function M.diff(paths, cur, model, base)
  local out = {}
  local new_by = {}
  for _, app in ipairs(model.apps) do new_by[app.name] = app end
  for _, app in ipairs(model.apps) do
    local old = cur and cur.by_name[app.name]
    local change, reasons
    if not old then
      change = "added"
    else
      local old_cfg = ct.fs.read(release.bundle_dir(cur, app.name) .. "/config.json")
      -- With the old app's writable layer: an unchanged app keeps it.
      local probe = setmetatable({ upper = old.upper }, { __index = app })
      local new_cfg = store.has(paths, app.name, app.image.digest) and bundle.app_config(paths, probe) or nil
      change = appdiff.same(old, app, old_cfg, new_cfg) and "unchanged" or "changed"
      reasons = appdiff.reasons(old, app, {
        old_cfg = old_cfg, new_cfg = new_cfg,
        old_hooks = hook_text(cur.dir, old.hooks), new_hooks = hook_text(base, app.hooks),
      })
    end
    out[#out + 1] = { name = app.name, change = change, old = old, new = app, reasons = reasons }
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

-- noop(diff, cur, model) -> true when the package is the current release
-- again: the same apps, none changed in any field or hook, and the same
-- release name and version. Upgrading to it would change nothing.
function M.noop(diff, cur, model)
  if not cur or cur.name ~= model.name or cur.version ~= model.version then return false end
  for _, d in ipairs(diff) do
    if d.change ~= "unchanged" or #d.reasons > 0 then return false end
  end
  return true
end

-- print(diff, ui): one line per app, through the command's ui
-- (ctcli.ui.console): a service never prints by itself.
function M.print(diff, ui)
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
  -- Why, per app: the field diff (an unchanged app's fields that differ
  -- without stopping it, e.g. its hooks, are told too).
  local why = {}
  for _, d in ipairs(diff) do
    if d.reasons and #d.reasons > 0 then
      why[#why + 1] = string.format("  %s%s: %s", d.name,
        d.change == "unchanged" and " (kept running)" or "", appdiff.text(d.reasons))
    end
  end
  if #why > 0 then
    ui.print("why:")
    for _, line in ipairs(why) do ui.print("%s", line) end
  end
end

function M.to_json(diff)
  local json = require("ctcli.base.json")
  local out = json.array()
  for _, d in ipairs(diff) do
    out[#out + 1] = {
      name = d.name, change = d.change,
      old_version = d.old and d.old.version or json.null, new_version = d.new and d.new.version or json.null,
      -- image: the reference, digest: the sha256, as in every --json document
      old_image = d.old and (d.old.image.name or d.old.image.ref) or json.null,
      new_image = d.new and (d.new.image.name or d.new.image.ref) or json.null,
      old_digest = d.old and d.old.image.digest or json.null, new_digest = d.new and d.new.image.digest or json.null,
      reasons = d.reasons or json.array(),
    }
  end
  return out
end

return M
