-- The root's history: state/history.jsonl, one JSON object per changing
-- command, appended when the command ends (docs/operations.md, "History").
-- It lives in state/, which no upgrade, rollback or restore replaces, so it
-- covers the root's whole life; logs/ctcli.log stays the prose transcript.
--
-- A line is written with one O_APPEND write and fsynced before the command
-- returns. A crash can still leave the last line cut short: readers skip a
-- line that does not decode (and say so), and the next writer starts on a
-- fresh line, so one torn write never costs a second entry.
local ct = require("ct")
local json = require("ctcli.base.json")

local M = {}

M.FORMAT = 1
M.FILE = "history.jsonl"
M.MODE = 416 -- 0640: command lines may name paths an operator keeps to root

-- DESIGN §6: exit status 3 is a cancelled command (a "no", or no TTY and no -y).
local CANCELLED = 3

function M.path(paths)
  return paths.state .. "/" .. M.FILE
end

-- release_id(paths) -> the id current-release points to, or nil (none, or
-- a Go ctcli root's directory not adopted yet).
local function release_id(paths)
  local t = ct.fs.readlink(paths.current)
  return t and t:match("^releases/([^/]+)$") or nil
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor((t % 1) * 1000))
end

-- The user running the command: the real uid (and its name), and who ran
-- sudo when that is how it came to be root.
local function user()
  local uid, name = ct.proc.getuid()
  local u = { uid = uid, name = name }
  local sudo = os.getenv("SUDO_USER")
  if sudo and sudo ~= "" then u.sudo_user = sudo end
  return u
end

local function ms_since(t0)
  return math.floor((ct.time.monotonic() - t0) * 1000 + 0.5)
end

-- The first line of a message, without trailing blanks.
local function first_line(s)
  return (tostring(s):match("^[^\n]*"):gsub("%s+$", ""))
end

-- append(paths, entry) -> true | nil, msg: one line, O_APPEND, fsynced.
function M.append(paths, entry)
  entry.format = M.FORMAT
  local line = json.encode(entry) .. "\n"
  local dir, derr = ct.fs.opendir(paths.state)
  if not dir then return nil, derr end
  local existed = dir:exists(M.FILE)
  local f, ferr = dir:open(M.FILE, { write = true, append = true, create = true, mode = M.MODE })
  if not f then dir:close() return nil, ferr end
  -- A last line torn by a crash gets its end here, so this entry stays whole.
  local size = f:seek("end")
  if size and size > 0 then
    f:seek("set", size - 1)
    if f:read(1) ~= "\n" then line = "\n" .. line end
  end
  local ok, werr = f:write(line)
  if ok then ok, werr = f:fsync() end
  f:close()
  dir:close()
  if not ok then return nil, werr end
  if not existed then ct.fs.fsync(paths.state) end
  return true
end

-- read(paths) -> entries (oldest first), skipped (line numbers of lines
-- that are no entry: a torn last line, or damage) | nil, msg.
function M.read(paths)
  local text, err, code = ct.fs.read(M.path(paths))
  if not text then
    if code == 2 then return {}, {} end -- ENOENT: no changing command yet
    return nil, err
  end
  local entries, skipped = {}, {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line ~= "" then
      local e = json.decode(line)
      if type(e) == "table" and type(e.command) == "string" and type(e.started) == "string" then
        entries[#entries + 1] = e
      else
        skipped[#skipped + 1] = n
      end
    end
  end
  return entries, skipped
end

-- begin(ctx, name) -> the record of a changing command about to run; also
-- gives ctx.history_note(key, value), with which the command adds a fact
-- (an upgrade: the rollback it made).
function M.begin(ctx, name)
  local rec = {
    t0 = ct.time.monotonic(),
    entry = {
      started = iso(ct.time.now()),
      command = name,
      argv = json.array(ctx.argv and { table.unpack(ctx.argv) } or {}),
      user = user(),
      pid = ct.proc.getpid(),
      release_before = release_id(ctx.paths) or json.null,
    },
  }
  ctx.history = rec
  ctx.history_note = function(key, value) rec.entry[key] = value end
  return rec
end

-- running(ctx): the command itself starts (what ends before is "refused":
-- the lock, the state check, recovery or adoption stopped it).
function M.running(ctx)
  if ctx.history then ctx.history.ran = true end
end

-- finish(ctx, ok, status, err, code): what cli.main got back from the
-- command (ok false: it raised). Appends the entry; a failure to append is
-- a warning, never the command's failure.
function M.finish(ctx, ok, status, err, code)
  local rec = ctx and ctx.history
  if not rec or rec.done then return end
  rec.done = true
  local e = rec.entry
  if ok and status ~= nil and ctx.history_quiet then return end
  e.duration_ms = ms_since(rec.t0)
  e.release_after = release_id(ctx.paths) or json.null
  -- What recovery completed or undid first (an earlier command was killed).
  if type(ctx.recovered) == "string" then e.recovered = first_line(ctx.recovered) end
  if not ok then
    e.result, e.exit_code = "failed", 1
    e.error = "internal error: " .. first_line(type(status) == "table" and status.msg or status)
  elseif status == nil then
    e.exit_code = code or 1
    if e.exit_code == CANCELLED then e.result = "cancelled"
    elseif rec.ran then e.result = "failed"
    else e.result = "refused" end
    e.error = first_line(err)
  else
    e.exit_code = status
    e.result = status == 0 and "ok" or "failed"
  end
  local done, aerr = M.append(ctx.paths, e)
  if not done then io.stderr:write("ctcli: warning: the history was not written: ", tostring(aerr), "\n") end
end

-- adopting(ctx, adopt_run) -> what adopt_run(ctx) returns. The adoption of
-- a Go ctcli root that a changing command makes before its own work is an
-- entry of its own (nothing to adopt: no entry).
function M.adopting(ctx, adopt_run)
  local t0, started = ct.time.monotonic(), iso(ct.time.now())
  local res, err = adopt_run(ctx)
  if res == false then return res, err end
  local e = {
    started = started, command = "adopt", argv = json.array({}), automatic = true,
    user = user(), pid = ct.proc.getpid(),
    duration_ms = ms_since(t0),
    release_before = json.null, release_after = release_id(ctx.paths) or json.null,
    by = ctx.history and ctx.history.entry.command or nil,
  }
  if res then
    e.result, e.exit_code = "ok", 0
  else
    e.result, e.exit_code, e.error = "failed", 1, first_line(err)
  end
  local done, aerr = M.append(ctx.paths, e)
  if not done then io.stderr:write("ctcli: warning: the history was not written: ", tostring(aerr), "\n") end
  return res, err
end

-- restarts(paths) -> the restarts the apps' monitors made by policy, as
-- history entries ({command = "restart", by = "monitor", app=, exit=}),
-- read from the monitors' notes in state/runs/<app>/*.log ("run N ended by
-- signal S" or "run N exited with code C", then "restarting in ..."). A
-- policy restart takes no lock and runs no Lua, so it is read, not written;
-- what log rotation has deleted is gone from here too.
function M.restarts(paths)
  local out = {}
  local base = paths.state .. "/runs"
  for _, app in ipairs(ct.fs.dir(base) or {}) do
    local names = {}
    for _, n in ipairs(ct.fs.dir(base .. "/" .. app) or {}) do
      if n:match("^%d+%.log$") then names[#names + 1] = n end
    end
    table.sort(names)
    names[#names + 1] = "current.log"
    local last_exit
    for _, n in ipairs(names) do
      for line in (ct.fs.read(base .. "/" .. app .. "/" .. n) or ""):gmatch("[^\n]+") do
        local time, text = line:match("^(%S+) ctcli F (.*)$")
        if time then
          local sig = text:match("^run %d+ ended by signal (%d+)")
          local code = text:match("^run %d+ exited with code (%d+)")
          if sig or code then
            last_exit = { signal = sig and tonumber(sig) or nil, code = code and tonumber(code) or nil }
          elseif text:match("^restarting in ") and last_exit then
            out[#out + 1] = {
              format = M.FORMAT, started = time:sub(1, 23) .. "Z", command = "restart", by = "monitor",
              app = app, result = "ok", exit = last_exit, argv = {},
            }
            last_exit = nil
          end
        end
      end
    end
  end
  return out
end

return M
