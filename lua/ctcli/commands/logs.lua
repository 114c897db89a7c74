-- logs [--tail N] [--bytes N] [-f] APP: the app's stdout and stderr.
local ct = require("ct")
local common = require("ctcli.common")
local apps = require("ctcli.apps")
local appfs = require("ctcli.appfs")

local CHUNK = 65536

local function read_at(f, pos, len)
  f:seek("set", pos)
  return f:read(len)
end

-- The offset where the last n lines of the file start.
local function tail_offset(f, size, n)
  if n <= 0 then return size end
  local pos, count = size, 0
  -- A final newline ends the last line; it does not start another one.
  if size > 0 and read_at(f, size - 1, 1) == "\n" then pos = size - 1 end
  while pos > 0 do
    local start = math.max(0, pos - CHUNK)
    local block = read_at(f, start, pos - start) or ""
    for i = #block, 1, -1 do
      if block:byte(i) == 10 then
        count = count + 1
        if count == n then return start + i end
      end
    end
    pos = start
  end
  return 0
end

local function copy_range(f, from, to)
  local pos = from
  f:seek("set", pos)
  while pos < to do
    local data = f:read(math.min(CHUNK, to - pos))
    if not data or #data == 0 then break end
    io.stdout:write(data)
    pos = pos + #data
  end
  io.stdout:flush()
  return pos
end

-- The log is in a dir the app writes: it is opened beneath that dir, as a
-- regular file only (a symlink or a FIFO planted there is refused).
local function open(paths, name, which)
  local f, err = appfs.open_log(paths, name, which)
  if f then return f, f:stat() end
  if appfs.log_stat(paths, name, which) then return nil, nil, err end
  return nil
end

return {
  summary = "Print an app's output (stdout and stderr); -f follows it",
  usage = "logs [--tail N] [--bytes N] [-f] APP",
  description = "--tail N prints the last N lines (as docker and kubectl do); --bytes N the\n" ..
    "last N bytes (the Go ctcli's --tail). -f keeps printing new output, also\n" ..
    "across a rotation of the log, until interrupted.",
  options = {
    { "--tail", arg = "N", type = "number", integer = true, help = "the last N lines" },
    { "--bytes", arg = "N", type = "number", integer = true, help = "the last N bytes" },
    { "-f", "--follow", help = "follow the log as it grows" },
  },
  min_args = 1, max_args = 1,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "logs")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local name = list[1].name
    local f, st, oerr = open(ctx.paths, name)
    if oerr then return nil, oerr end
    local size = st and st.size or 0
    local from = 0
    if ctx.opts.bytes then
      from = math.max(0, size - math.floor(ctx.opts.bytes))
    elseif ctx.opts.tail then
      from = f and tail_offset(f, size, math.floor(ctx.opts.tail)) or 0
    end
    local pos = f and copy_range(f, from, size) or 0
    if f then f:close() end
    if not ctx.opts.follow then return true end
    local ino = st and st.ino
    -- rotate-logs cuts the head off the live file in place and counts the
    -- bytes it removed: keep our place across that.
    local counter = appfs.collapsed_file(ctx.paths, name)
    local function collapsed()
      return tonumber((ct.fs.read(counter) or ""):match("%d+")) or 0
    end
    local lockpath = appfs.rotation_lock(ctx.paths, name)
    local cut = collapsed()
    while true do
      ct.time.sleep(0.2)
      -- rotate-logs cuts holding this lock: no cut lands inside our read.
      local lk = ct.lock.acquire(lockpath, "logs -f", 30)
      local c = collapsed()
      local cur, now, cerr = open(ctx.paths, name)
      if cerr then
        if lk then lk:release() end
        return nil, cerr
      end
      if cur then
        if now.ino == ino and c > cut then
          if c - cut > pos then
            io.stderr:write(string.format("ctcli: %d bytes were rotated before they were shown; see %s.*.zst\n",
              c - cut - pos, appfs.LOG))
          end
          pos, cut = math.max(0, pos - (c - cut)), c
        elseif now.ino == ino and now.size < pos then
          pos = 0
        end
        if now.ino ~= ino then
          -- A new run: finish the old file (now .1), then start the new one.
          local old, ost = open(ctx.paths, name, appfs.LOG .. ".1")
          if old and ost.ino == ino and ost.size > pos then copy_range(old, pos, ost.size) end
          if old then old:close() end
          ino, pos = now.ino, 0
        end
        if now.size > pos then pos = copy_range(cur, pos, now.size) end
        cur:close()
      end
      if lk then lk:release() end
    end
  end,
}
