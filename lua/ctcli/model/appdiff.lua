-- What differs for one app between two releases, and the one rule that
-- decides whether it is stopped: an app is unchanged when its image digest
-- and its generated config.json are both equal (DESIGN §3). plan, upgrade
-- and rollback all ask here, so they cannot disagree; the field diff is
-- the reason plan and the upgrade prompt give for each change.
local ct = require("ct")
local json = require("ctcli.base.json")

local M = {}

-- same(old_app, new_app, old_cfg, new_cfg) -> boolean: the rule itself.
-- A config.json that could not be read or generated is not equal.
function M.same(old_app, new_app, old_cfg, new_cfg)
  if not old_app or not new_app then return false end
  if old_app.image.digest ~= new_app.image.digest then return false end
  return old_cfg ~= nil and new_cfg ~= nil and old_cfg == new_cfg
end

local function bundle_config(rel, name)
  return ct.fs.read(rel.dir .. "/apps/" .. name .. "/config.json")
end

-- between(a, b, name) -> boolean: whether the app is unchanged between two
-- placed releases (each has its config.json in its own bundle).
function M.between(a, b, name)
  return M.same(a.by_name[name], b.by_name[name], bundle_config(a, name), bundle_config(b, name))
end

-- ---- the field diff --------------------------------------------------------

local function equal(x, y)
  if x == y then return true end
  if type(x) ~= "table" or type(y) ~= "table" then
    -- json.null and an absent value say the same thing here.
    return (x == nil or x == json.null) and (y == nil or y == json.null)
  end
  for k, v in pairs(x) do
    if not equal(v, y[k]) then return false end
  end
  for k, v in pairs(y) do
    if x[k] == nil and not equal(nil, v) then return false end
  end
  return true
end

local function short(v)
  if v == nil or v == json.null then return "none" end
  if type(v) == "table" then
    -- An argv reads best as its words.
    local words = #v > 0
    for _, w in ipairs(v) do if type(w) ~= "string" then words = false end end
    return words and ("[" .. table.concat(v, " ") .. "]") or json.encode(v)
  end
  local s = tostring(v)
  if s:match("^sha256:%x+$") then return s:sub(1, 19) end
  if s:match("^%x+$") and #s == 40 then return s:sub(1, 12) end -- a commit
  return s
end

local function arrow(a, b) return short(a) .. " -> " .. short(b) end

-- keyed(old, new) -> "+A, -B, ~C": the keys of two maps that come, go or change.
local function keyed(old, new)
  old, new = type(old) == "table" and old or {}, type(new) == "table" and new or {}
  local keys, seen = {}, {}
  for _, t in ipairs({ old, new }) do
    for k in pairs(t) do
      if not seen[k] then seen[k] = true keys[#keys + 1] = tostring(k) end
    end
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local a, b = old[k], new[k]
    if a == nil then out[#out + 1] = "+" .. k
    elseif b == nil then out[#out + 1] = "-" .. k
    elseif not equal(a, b) then out[#out + 1] = "~" .. k end
  end
  return table.concat(out, ", ")
end

-- valued(old, new) -> "+memory=64M, ~cpus 1 -> 2": keyed, with the values
-- (for settings such as limits; env says keys only, its values may be secret).
local function valued(old, new)
  old, new = type(old) == "table" and old or {}, type(new) == "table" and new or {}
  local out = {}
  for part in keyed(old, new):gmatch("[^,%s]+") do
    local sign, k = part:sub(1, 1), part:sub(2)
    if sign == "+" then out[#out + 1] = part .. "=" .. short(new[k])
    elseif sign == "-" then out[#out + 1] = part
    else out[#out + 1] = part .. " " .. arrow(old[k], new[k]) end
  end
  return table.concat(out, ", ")
end

-- listed(old, new) -> "+x, -y": the members of two lists that come or go
-- (a list whose members only moved says "order").
local function listed(old, new)
  old, new = type(old) == "table" and old or {}, type(new) == "table" and new or {}
  local function key(v) return type(v) == "table" and json.encode(v) or tostring(v) end
  local in_old, in_new, out = {}, {}, {}
  for _, v in ipairs(old) do in_old[key(v)] = true end
  for _, v in ipairs(new) do in_new[key(v)] = true end
  for _, v in ipairs(new) do if not in_old[key(v)] then out[#out + 1] = "+" .. key(v) end end
  for _, v in ipairs(old) do if not in_new[key(v)] then out[#out + 1] = "-" .. key(v) end end
  if #out == 0 then return "order" end
  return table.concat(out, ", ")
end

-- The model's fields in the order a reader wants them, each with the label
-- the reason uses and how its change is told.
local FIELDS = {
  { "version", "version", arrow },
  { "entrypoint", "entrypoint", arrow },
  { "env", "env", keyed },
  { "workdir", "workdir", arrow },
  { "configs", "mounts: configs", listed },
  { "data", "mounts: data", listed },
  { "logs", "mounts: logs", arrow },
  { "resources", "limits", valued },
  { "healthcheck", "healthcheck", valued },
  { "stop_signal", "stop signal", arrow },
  { "stop_timeout", "stop timeout", arrow },
  { "hook_timeout", "hook timeout", arrow },
  { "migrations", "migrations", listed },
  { "depends_on", "depends on", listed },
  { "network", "network", arrow },
  { "read_only_rootfs", "read-only rootfs", arrow },
  { "user_namespace", "user namespace", arrow },
  { "restart", "restart policy", valued },
  { "journald", "journald", arrow },
  { "commit", "commit", arrow },
  { "built_at", "built at", arrow },
}

-- config_paths(a, b) -> the dotted paths (two levels deep) where two
-- config.json texts differ: what changed when no model field did (a newer
-- ctcli's defaults, the user namespace the app moved to).
local function config_paths(a_text, b_text)
  local a, b = json.decode(a_text or "") or {}, json.decode(b_text or "") or {}
  local out = {}
  local function walk(x, y, prefix, depth)
    local keys, seen = {}, {}
    for _, t in ipairs({ type(x) == "table" and x or {}, type(y) == "table" and y or {} }) do
      for k in pairs(t) do
        if not seen[k] then seen[k] = true keys[#keys + 1] = tostring(k) end
      end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local xv = type(x) == "table" and (x[k] or x[tonumber(k)]) or nil
      local yv = type(y) == "table" and (y[k] or y[tonumber(k)]) or nil
      if not equal(xv, yv) then
        local p = prefix == "" and k or (prefix .. "." .. k)
        if depth < 2 and type(xv) == "table" and type(yv) == "table" and #xv == 0 and #yv == 0 then
          walk(xv, yv, p, depth + 1)
        else
          out[#out + 1] = p
        end
      end
    end
  end
  walk(a, b, "", 1)
  return out
end

-- The fields a bundle's config.json is generated from (bundle.lua), by label.
local IN_CONFIG = {
  image = true, entrypoint = true, env = true, workdir = true, ["mounts: configs"] = true,
  ["mounts: data"] = true, ["mounts: logs"] = true, limits = true, network = true,
  ["read-only rootfs"] = true, ["user namespace"] = true,
}

-- reasons(old_app, new_app, extra) -> array of {field=, detail=}: what
-- differs, field by field. extra: old_hooks, new_hooks (the package hook
-- files' text), old_cfg, new_cfg (config.json texts, when known).
function M.reasons(old_app, new_app, extra)
  extra = extra or {}
  local out = json.array()
  if not old_app or not new_app then return out end
  if old_app.image.digest ~= new_app.image.digest then
    out[#out + 1] = { field = "image", detail = arrow(old_app.image.digest, new_app.image.digest) }
  end
  for _, f in ipairs(FIELDS) do
    local key, label, tell = f[1], f[2], f[3]
    if not equal(old_app[key], new_app[key]) then
      out[#out + 1] = { field = label, detail = tell(old_app[key], new_app[key]) }
    end
  end
  if extra.old_hooks ~= extra.new_hooks then
    local detail = not extra.old_hooks and "added" or not extra.new_hooks and "removed" or "hook file changed"
    out[#out + 1] = { field = "hooks", detail = detail }
  end
  -- Only when no field that config.json is made of explains a different one.
  local explained = false
  for _, r in ipairs(out) do
    if IN_CONFIG[r.field] then explained = true end
  end
  if not explained and extra.old_cfg and extra.new_cfg and extra.old_cfg ~= extra.new_cfg then
    out[#out + 1] = { field = "config.json", detail = table.concat(config_paths(extra.old_cfg, extra.new_cfg), ", ") }
  end
  return out
end

-- text(reasons) -> "image sha256:… -> sha256:…; env +FOO"
function M.text(reasons)
  local parts = {}
  for _, r in ipairs(reasons) do
    parts[#parts + 1] = r.detail ~= "" and (r.field .. " " .. r.detail) or r.field
  end
  return table.concat(parts, "; ")
end

return M
