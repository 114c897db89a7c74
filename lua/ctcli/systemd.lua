-- systemd units for a root: the boot unit (start --boot / stop), a daily
-- rotate-logs timer and, with --watch, a timer restarting exited apps. The
-- names come from the root path escaped as `systemd-escape --path` does, so
-- several roots on one host get their own units.
local ct = require("ct")

local M = {}

M.UNIT_DIR = "/etc/systemd/system"

-- escape_path("/srv/my app") -> "srv-my\x20app" (systemd-escape --path).
function M.escape_path(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg ~= "." then parts[#parts + 1] = seg end
  end
  if #parts == 0 then return "-" end
  local s = table.concat(parts, "/")
  local out = {}
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == "/" then
      out[#out + 1] = "-"
    elseif c:match("[%w:_]") or (c == "." and i > 1) then
      out[#out + 1] = c
    else
      out[#out + 1] = string.format("\\x%02x", c:byte())
    end
  end
  return table.concat(out)
end

-- base(root) -> "ctcli-<escaped root>"
function M.base(root)
  return "ctcli-" .. M.escape_path(root)
end

-- A word of an Exec line: quoted when it needs to be; % and $ doubled so
-- systemd expands neither.
local function word(s)
  s = s:gsub("%%", "%%%%"):gsub("%$", "$$")
  if s:match("^[%w/._:@+=,-]+$") then return s end
  return '"' .. s:gsub("\\", "\\\\"):gsub('"', '\\"') .. '"'
end

local function exec(ctcli, root, args)
  local w = { word(ctcli), "--root", word(root) }
  for _, a in ipairs(args) do w[#w + 1] = word(a) end
  return table.concat(w, " ")
end

-- units(opts) -> array of {name=, text=}. opts: root, ctcli (absolute), watch (seconds|nil)
function M.units(opts)
  local base = M.base(opts.root)
  local main = base .. ".service"
  local mounts = opts.root:match("^[%w/._-]+$") and ("RequiresMountsFor=" .. opts.root .. "\n") or ""
  local list = {}
  list[#list + 1] = { name = main, text = table.concat({
    "# Written by 'ctcli enable'; 'ctcli --root ROOT disable' removes it.",
    "[Unit]",
    "Description=ctcli apps of " .. opts.root,
    "Wants=network-online.target",
    "After=network-online.target local-fs.target",
    mounts .. "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    "ExecStart=" .. exec(opts.ctcli, opts.root, { "start", "--boot" }),
    "ExecStop=" .. exec(opts.ctcli, opts.root, { "stop", "--keep-wanted" }),
    "TimeoutStartSec=30min",
    "TimeoutStopSec=10min",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  }, "\n"):gsub("\n\n\n", "\n\n") }
  local function timer(suffix, what, args, timer_lines)
    local svc = base .. "-" .. suffix .. ".service"
    list[#list + 1] = { name = svc, text = table.concat({
      "# Written by 'ctcli enable'.",
      "[Unit]",
      "Description=ctcli " .. what .. " in " .. opts.root,
      "After=" .. main,
      "",
      "[Service]",
      "Type=oneshot",
      -- While another command holds the root (an upgrade), wait for it.
      "ExecStart=" .. exec(opts.ctcli, opts.root, { "--wait", "600", table.unpack(args) }),
      "TimeoutStartSec=30min",
      "",
    }, "\n") }
    local lines = {
      "# Written by 'ctcli enable'.",
      "[Unit]",
      "Description=ctcli " .. what .. " in " .. opts.root .. " (timer)",
      "",
      "[Timer]",
    }
    for _, l in ipairs(timer_lines) do lines[#lines + 1] = l end
    lines[#lines + 1] = "Unit=" .. svc
    lines[#lines + 1] = ""
    lines[#lines + 1] = "[Install]"
    lines[#lines + 1] = "WantedBy=timers.target"
    lines[#lines + 1] = ""
    list[#list + 1] = { name = base .. "-" .. suffix .. ".timer", text = table.concat(lines, "\n") }
  end
  timer("rotate-logs", "log rotation", { "rotate-logs" }, { "OnCalendar=daily", "Persistent=true" })
  if opts.watch then
    local s = math.max(1, math.floor(opts.watch))
    timer("watch", "restart of exited apps", { "start", "--restart-exited" },
      { "OnActiveSec=" .. s .. "s", "OnUnitActiveSec=" .. s .. "s", "AccuracySec=1s" })
  end
  return list
end

-- available() -> true when systemd runs this host (PID 1).
function M.available()
  local st = ct.fs.stat("/run/systemd/system")
  return st ~= nil and st.type == "dir"
end

-- installed(root) -> names of this root's unit files present in UNIT_DIR.
function M.installed(root, dir)
  dir = dir or M.UNIT_DIR
  local base = M.base(root)
  local out = {}
  for _, name in ipairs(ct.fs.dir(dir) or {}) do
    if name == base .. ".service" or
      (name:sub(1, #base + 1) == base .. "-" and (name:match("%.service$") or name:match("%.timer$"))) then
      local rest = name:sub(#base + 2)
      if name == base .. ".service" or rest:match("^rotate%-logs%.") or rest:match("^watch%.") then
        out[#out + 1] = name
      end
    end
  end
  return out
end

-- systemctl(args) -> true | nil, msg
function M.systemctl(args)
  local argv = { "systemctl" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r, err = ct.proc.run(argv, { timeout = 300 })
  if not r then return nil, "systemctl: " .. tostring(err) end
  if r.code ~= 0 then
    return nil, table.concat(argv, " ") .. ": " .. (r.stderr ~= "" and r.stderr or r.stdout):gsub("%s+$", "")
  end
  return true
end

return M
