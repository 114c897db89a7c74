-- Reading what an app's monitor wrote (docs/architecture.md, "Files"):
-- state/runs/<app>/current.log and the rotated NNNNNNNN.log, one record per
-- line, "<RFC 3339 time> <stdout|stderr|ctcli> <F|P> <text>". Rotation is a
-- rename, so a reader that holds current.log open reads on to its end and
-- then opens the new one: every line once, in order, on any filesystem.
local monitor = require("ctcli.runtime.runc").monitor

local M = {}

local CHUNK = 65536

-- files(d) -> the log files of a run dir, oldest first.
local function files(d)
  local out = {}
  for _, n in ipairs(d:list("") or {}) do
    if n:match("^%d%d%d%d%d%d%d%d%.log$") then out[#out + 1] = n end
  end
  table.sort(out)
  if d:exists("current.log") then out[#out + 1] = "current.log" end
  return out
end

-- parse(line) -> {time=, stream=, full=, text=} | nil
function M.parse(line)
  local time, stream, part, text = line:match("^(%S+) (%S+) ([FP]) (.*)$")
  if not time then
    time, stream, part = line:match("^(%S+) (%S+) ([FP])$")
    text = ""
  end
  if not time then return nil end
  return { time = time, stream = stream, full = part == "F", text = text }
end

-- has(paths, app) -> true when a monitor ever wrote the app's log.
function M.has(paths, app)
  local d = monitor.open(paths, app)
  if not d then return false end
  local yes = #files(d) > 0
  d:close()
  return yes
end

-- A sink joins the pieces of long lines (P records) per stream and hands
-- whole records to emit.
local function sink(emit)
  local open = {}
  return function(rec)
    local prev = open[rec.stream]
    if prev then
      prev.text = prev.text .. rec.text
      if not rec.full then return end
      open[rec.stream] = nil
      return emit(prev)
    end
    if not rec.full then open[rec.stream] = rec return end
    return emit(rec)
  end
end

-- each_line(f, from, to, fn): fn(line) for every whole line of f in [from, to);
-- returns the offset after the last whole line.
local function each_line(f, from, to, fn)
  f:seek("set", from)
  local pos, rest = from, ""
  while pos < to do
    local data = f:read(math.min(CHUNK, to - pos))
    if not data or #data == 0 then break end
    pos = pos + #data
    rest = rest .. data
    local start = 1
    while true do
      local nl = rest:find("\n", start, true)
      if not nl then break end
      fn(rest:sub(start, nl - 1))
      start = nl + 1
    end
    rest = rest:sub(start)
  end
  return pos - #rest
end

-- each_record(d, names, fn): fn(rec) for every record of the named files, in order.
local function each_record(d, names, fn)
  for _, n in ipairs(names) do
    local f = d:open(n)
    if f then
      each_line(f, 0, f:seek("end"), function(line)
        local rec = M.parse(line)
        if rec then fn(rec) end
      end)
      f:close()
    end
  end
end

-- read(paths, app, opts, emit) -> reader state for follow | nil, msg.
-- opts: tail (lines of output), since (an RFC 3339 UTC string), previous
-- (only the run before the last one), all (the monitor's own notes too).
-- emit(rec) gets each record in order.
function M.read(paths, app, opts, emit)
  local d, err = monitor.open(paths, app)
  if not d then return nil, err end
  local names = files(d)
  local want = function(rec)
    if opts.since and rec.time < opts.since then return false end
    return opts.all or rec.stream ~= "ctcli"
  end
  local out = sink(function(rec) if want(rec) then emit(rec) end end)
  if opts.previous then
    -- The run before the last: its records lie between the last two
    -- "run N starting" notes of the monitor (written before runc create,
    -- so before anything the run writes).
    local starts = {}
    each_record(d, names, function(rec)
      if rec.stream == "ctcli" and rec.text:match("^run %d+ starting") then starts[#starts + 1] = rec.time end
    end)
    if #starts < 2 then d:close() return false end
    local from, to = starts[#starts - 1], starts[#starts]
    each_record(d, names, function(rec)
      if rec.time >= from and rec.time < to then out(rec) end
    end)
    d:close()
    return true
  end
  -- The newest files hold the tail: go back file by file until enough lines.
  local first, first_off = 1, 0
  if opts.tail then
    local need = opts.tail
    first = #names + 1
    for i = #names, 1, -1 do
      local f = d:open(names[i])
      if f then
        local size = f:seek("end")
        local count = 0
        each_line(f, 0, size, function(line)
          local rec = M.parse(line)
          if rec and rec.full and want(rec) then count = count + 1 end
        end)
        first = i
        if count >= need then
          -- Start after the (count - need) wanted lines this file has first.
          local skip, seen, off = count - need, 0, 0
          each_line(f, 0, size, function(line)
            if seen >= skip then return end
            local rec = M.parse(line)
            if rec and rec.full and want(rec) then seen = seen + 1 end
            off = off + #line + 1
          end)
          first_off = off
          f:close()
          break
        end
        need = need - count
        f:close()
      end
    end
  end
  local state = { dir = d }
  for i = first, #names do
    local f = d:open(names[i])
    if f then
      local size = f:seek("end")
      local upto = each_line(f, i == first and first_off or 0, size, function(line)
        local rec = M.parse(line)
        if rec then out(rec) end
      end)
      if names[i] == "current.log" then
        state.file, state.pos, state.ino = f, upto, f:stat().ino
      else
        f:close()
      end
    end
  end
  state.out = out
  return state
end

-- poll(state) -> true: prints what came since (following a rotation: the
-- old file is read to its end, then the new current.log from its start).
function M.poll(state)
  local d = state.dir
  if state.file then
    local size = state.file:seek("end")
    state.pos = each_line(state.file, state.pos, size, function(line)
      local rec = M.parse(line)
      if rec then state.out(rec) end
    end)
  end
  local st = d:stat("current.log")
  if st and st.ino ~= state.ino then
    -- Rotated: what we held is a numbered file now; it may have grown
    -- between the read above and the rename, so it is read to its end
    -- again; the files rotated after it come next, then the new current.log.
    if state.file then
      state.pos = each_line(state.file, state.pos, state.file:seek("end"), function(line)
        local rec = M.parse(line)
        if rec then state.out(rec) end
      end)
      state.file:close()
    end
    -- The new current.log is opened before the directory is listed: a
    -- rotation in between leaves the file it renamed in the listing.
    local newf = d:open("current.log")
    local names, after = files(d), nil
    for i, n in ipairs(names) do
      if n ~= "current.log" and state.ino and (d:stat(n) or {}).ino == state.ino then after = i end
    end
    if state.ino and not after then
      io.stderr:write("ctcli: output was rotated away before it was read (logs -f fell behind state/runs/)\n")
    end
    local new_ino = newf and newf:stat().ino
    for i = (after or #names) + 1, #names do
      if names[i] ~= "current.log" and (d:stat(names[i]) or {}).ino ~= new_ino then
        local f = d:open(names[i])
        if f then
          each_line(f, 0, f:seek("end"), function(line)
            local rec = M.parse(line)
            if rec then state.out(rec) end
          end)
          f:close()
        end
      end
    end
    state.file, state.pos, state.ino = newf, 0, new_ino
    if state.file then return M.poll(state) end
  end
  return true
end

function M.close(state)
  if state.file then state.file:close() end
  if state.dir then state.dir:close() end
end

-- since(text, now) -> an RFC 3339 UTC string to compare record times
-- with, from "2026-11-30T10:00:00Z" or a duration back from now ("90s",
-- "10m", "2h", "1d"); nil when it is neither.
function M.since(text, now)
  local n, unit = tostring(text):match("^(%d+)([smhd])$")
  if n then
    local mult = { s = 1, m = 60, h = 3600, d = 86400 }
    return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(now - tonumber(n) * mult[unit])) .. "Z"
  end
  if tostring(text):match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d") then return text end
  return nil
end


return M
