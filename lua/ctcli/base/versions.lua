-- Version order and the downgrade rule (the anti-rollback half of supply
-- chain safety): an upgrade to an older release is named as such and
-- refused unless the operator asks for it. `rollback` (every form), the
-- automatic rollback and the restore of a Go backup never ask here: they
-- go back on purpose.
local M = {}

-- parse(s) -> {nums = {...}, pre = {...} | nil} | nil. Semver-ish: an
-- optional "v", dot-separated numbers (any count), an optional "-pre.release",
-- "+build" ignored.
function M.parse(s)
  if type(s) ~= "string" then return nil end
  local core, pre = s:gsub("%+.*$", ""):match("^[vV]?(%d+[%d%.]*)%-?(.*)$")
  if not core or core:match("%.%.") or core:match("%.$") then return nil end
  local nums = {}
  for n in core:gmatch("%d+") do nums[#nums + 1] = tonumber(n) end
  local v = { nums = nums }
  if pre ~= "" then
    -- "1.2.3-rc.1"; a core followed by anything but "-" is not a version.
    if not s:gsub("%+.*$", ""):match("^[vV]?[%d%.]+%-") then return nil end
    v.pre = {}
    for part in pre:gmatch("[^%.]+") do v.pre[#v.pre + 1] = tonumber(part) or part end
  end
  return v
end

local function cmp_pre(a, b)
  -- A release sorts after its pre-releases.
  if not a and not b then return 0 end
  if not a then return 1 end
  if not b then return -1 end
  for i = 1, math.max(#a, #b) do
    local x, y = a[i], b[i]
    if x == nil then return -1 end
    if y == nil then return 1 end
    if x ~= y then
      local nx, ny = type(x) == "number", type(y) == "number"
      if nx and ny then return x < y and -1 or 1 end
      if nx ~= ny then return nx and -1 or 1 end -- numbers before words (semver)
      return x < y and -1 or 1
    end
  end
  return 0
end

-- compare(a, b) -> -1 | 0 | 1, or nil when either is not a version.
-- Missing numbers count as 0 ("1.2" == "1.2.0").
function M.compare(a, b)
  local x, y = M.parse(a), M.parse(b)
  if not x or not y then return nil end
  for i = 1, math.max(#x.nums, #y.nums) do
    local p, q = x.nums[i] or 0, y.nums[i] or 0
    if p ~= q then return p < q and -1 or 1 end
  end
  return cmp_pre(x.pre, y.pre)
end

-- time(s) -> seconds since the epoch of an RFC 3339 time, or nil.
M.time = require("ctcli.base.clock").epoch

-- downgrade(cur, model, format) -> nil | {what = "...", apps = {...}}: whether
-- going from the current release cur to the release model is a downgrade.
-- A manifest package's release version is lower; a legacy package's app
-- has a lower imageTag (where both parse as versions), else an older builtAt.
-- What cannot be compared is not a downgrade.
function M.downgrade(cur, model, format)
  if not cur then return nil end
  if format ~= "legacy" then
    if M.compare(model.version, cur.version) == -1 then
      return { what = string.format("release version %s is lower than the installed %s",
        tostring(model.version), tostring(cur.version)), apps = {} }
    end
    return nil
  end
  local lower = {}
  for _, app in ipairs(model.apps) do
    local old = cur.by_name[app.name]
    if old then
      local c = M.compare(app.version, old.version)
      if c == -1 then
        lower[#lower + 1] = string.format("%s %s < %s", app.name, app.version, old.version)
      elseif c == nil then
        local a, b = M.time(app.built_at), M.time(old.built_at)
        if a and b and a < b then
          lower[#lower + 1] = string.format("%s built %s, before the installed %s", app.name, app.built_at, old.built_at)
        end
      end
    end
  end
  if #lower == 0 then return nil end
  return { what = "older apps: " .. table.concat(lower, "; "), apps = lower }
end

return M
