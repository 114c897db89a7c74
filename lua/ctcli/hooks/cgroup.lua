-- Where each hook call's cgroup goes: one per call, so its time limit (and
-- its end) kills every process the hook started, a `setsid` daemon too.
-- This module decides the place and the name; ct.proc.fork_call makes the
-- cgroup, moves the child in, kills what is left and removes it.
local ct = require("ct")

local M = {}

M.DIR = "ctcli-hooks"

local MNT = "/sys/fs/cgroup"

-- own_path(controller) -> this process's cgroup in that v1 hierarchy
-- ("" for the unified one), from /proc/self/cgroup.
local function own_path(controller)
  for line in (ct.fs.read("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
    local ctls, path = line:match("^%d+:([^:]*):(.*)$")
    if ctls then
      if controller == "" and ctls == "" then return path end
      for c in ctls:gmatch("[^,]+") do
        if c == controller then return path end
      end
    end
  end
  return nil
end

-- parent() -> the directory hook cgroups are made in, or nil, why not.
-- Beneath this process's own cgroup (a systemd unit's, say), so the
-- hooks' processes stay in its accounting: the unified hierarchy (v2),
-- else v1's freezer (freezes before it kills), else v1's pids.
local function parent()
  local base, own
  if ct.fs.exists(MNT .. "/cgroup.controllers") then
    base, own = MNT, own_path("")
  else
    for _, ctl in ipairs({ "freezer", "pids" }) do
      if ct.fs.exists(MNT .. "/" .. ctl .. "/cgroup.procs") then
        base, own = MNT .. "/" .. ctl, own_path(ctl)
        break
      end
    end
  end
  if not base then return nil, "no cgroup v2, freezer or pids hierarchy mounted at " .. MNT end
  own = (own or "/"):gsub("/+$", "")
  return base .. own .. "/" .. M.DIR
end

-- sweep(dir): a ctcli killed during a hook left its cgroup, maybe with the
-- hook's processes: kill and remove the cgroups whose ctcli is gone.
local function sweep(dir)
  for _, name in ipairs(ct.fs.dir(dir) or {}) do
    local pid = tonumber(name:match("^(%d+)%-%d+$"))
    if pid and pid ~= ct.proc.getpid() and not ct.proc.alive(pid) then
      ct.proc.cgroup_kill(dir .. "/" .. name)
    end
  end
end

local state = { dir = nil, why = nil, n = 0 }

-- next() -> the path of a new cgroup for one hook call (made by
-- fork_call), or nil, why there is none.
function M.next()
  if state.dir == nil and state.why == nil then
    local dir, why = parent()
    if dir then
      local ok, err = ct.fs.mkdir(dir, 493, true)
      if ok then
        sweep(dir)
      else
        dir, why = nil, "cannot create " .. dir .. ": " .. tostring(err)
      end
    end
    state.dir, state.why = dir or false, why
  end
  if not state.dir then return nil, state.why end
  state.n = state.n + 1
  return string.format("%s/%d-%d", state.dir, ct.proc.getpid(), state.n)
end

return M
