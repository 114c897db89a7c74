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

-- An Exec line: ctcli, --root and the arguments; root_word is already a
-- word of the line (a quoted path, or "%f" in a template).
local function exec(ctcli, root_word, args)
  local w = { word(ctcli), "--root", root_word }
  for _, a in ipairs(args) do w[#w + 1] = word(a) end
  return table.concat(w, " ")
end

-- build(u) -> array of {name=, text=}, the units of one root or the
-- templates of every root. u: ctcli, root_word, root_text (for
-- descriptions), main (the boot unit's name), timer_name(suffix, ext),
-- mounts (a RequiresMountsFor= line or ""), header, timer_unit (whether a
-- timer names its service: a template's instance finds it by name), watch.
local function build(u)
  local main = u.main
  local list = {}
  list[#list + 1] = { name = main, text = table.concat({
    u.header,
    "[Unit]",
    "Description=ctcli apps of " .. u.root_text,
    "Wants=network-online.target",
    "After=network-online.target local-fs.target",
    u.mounts .. "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    "ExecStart=" .. exec(u.ctcli, u.root_word, { "start", "--boot" }),
    "ExecStop=" .. exec(u.ctcli, u.root_word, { "stop", "--keep-wanted" }),
    "TimeoutStartSec=30min",
    "TimeoutStopSec=10min",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  }, "\n"):gsub("\n\n\n", "\n\n") }
  local function timer(suffix, what, args, timer_lines)
    local svc = u.timer_name(suffix, "service")
    list[#list + 1] = { name = svc, text = table.concat({
      u.sub_header,
      "[Unit]",
      "Description=ctcli " .. what .. " in " .. u.root_text,
      "After=" .. u.after_main,
      "",
      "[Service]",
      "Type=oneshot",
      -- While another command holds the root (an upgrade), wait for it.
      "ExecStart=" .. exec(u.ctcli, u.root_word, { "--wait", "600", table.unpack(args) }),
      "TimeoutStartSec=30min",
      "",
    }, "\n") }
    local lines = {
      u.sub_header,
      "[Unit]",
      "Description=ctcli " .. what .. " in " .. u.root_text .. " (timer)",
      "",
      "[Timer]",
    }
    for _, l in ipairs(timer_lines) do lines[#lines + 1] = l end
    if u.timer_unit then lines[#lines + 1] = "Unit=" .. svc end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "[Install]"
    lines[#lines + 1] = "WantedBy=timers.target"
    lines[#lines + 1] = ""
    list[#list + 1] = { name = u.timer_name(suffix, "timer"), text = table.concat(lines, "\n") }
  end
  timer("rotate-logs", "log rotation", { "rotate-logs" }, { "OnCalendar=daily", "Persistent=true" })
  if u.watch then
    local s = math.max(1, math.floor(u.watch))
    timer("watch", "restart of exited apps", { "start", "--restart-exited" },
      { "OnActiveSec=" .. s .. "s", "OnUnitActiveSec=" .. s .. "s", "AccuracySec=1s" })
  end
  return list
end

-- units(opts) -> array of {name=, text=}. opts: root, ctcli (absolute), watch (seconds|nil)
function M.units(opts)
  local base = M.base(opts.root)
  return build({
    ctcli = opts.ctcli, root_word = word(opts.root), root_text = opts.root,
    main = base .. ".service", after_main = base .. ".service",
    timer_name = function(suffix, ext) return base .. "-" .. suffix .. "." .. ext end,
    mounts = opts.root:match("^[%w/._-]+$") and ("RequiresMountsFor=" .. opts.root .. "\n") or "",
    header = "# Written by 'ctcli enable'; 'ctcli --root ROOT disable' removes it.",
    sub_header = "# Written by 'ctcli enable'.",
    timer_unit = true, watch = opts.watch,
  })
end

-- templates(ctcli) -> array of {name=, text=}: the template units a system
-- install ships (ctcli@.service, ctcli-rotate-logs@.{service,timer}), whose
-- instance is a root path escaped as `systemd-escape --path` does and whose
-- Exec lines run ctcli (the installed binary's absolute path). The same
-- units as 'enable' writes for one root, with %f (the unescaped instance
-- path) as the root.
function M.templates(ctcli)
  local enable = "systemctl enable --now %s@$(systemd-escape --path ROOT).%s"
  return build({
    ctcli = ctcli, root_word = '"%f"', root_text = "%f",
    main = "ctcli@.service", after_main = "ctcli@%i.service",
    timer_name = function(suffix, ext) return "ctcli-" .. suffix .. "@." .. ext end,
    mounts = "RequiresMountsFor=%f\n",
    header = "# Installed with ctcli; for the root ROOT: " .. enable:format("ctcli", "service"),
    sub_header = "# Installed with ctcli; for the root ROOT: " .. enable:format("ctcli-rotate-logs", "timer"),
    timer_unit = false,
  })
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
