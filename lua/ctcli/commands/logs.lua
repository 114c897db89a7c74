-- logs [--tail N] [--bytes N] [-f] APP: the app's stdout and stderr.
local ct = require("ct")
local common = require("ctcli.common")
local apps = require("ctcli.apps")
local bundle = require("ctcli.bundle")

local CHUNK = 65536

-- The offset where the last n lines of the file start.
local function tail_offset(path, size, n)
  if n <= 0 then return size end
  local pos, count = size, 0
  -- A final newline ends the last line; it does not start another one.
  local last = ct.fs.read(path, size - 1, 1)
  if last == "\n" then pos = size - 1 end
  while pos > 0 do
    local start = math.max(0, pos - CHUNK)
    local block = ct.fs.read(path, start, pos - start) or ""
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

local function copy_range(path, from, to)
  local pos = from
  while pos < to do
    local data = ct.fs.read(path, pos, math.min(CHUNK, to - pos))
    if not data or #data == 0 then break end
    io.stdout:write(data)
    pos = pos + #data
  end
  io.stdout:flush()
  return pos
end

return {
  summary = "Print an app's output (stdout and stderr); -f follows it",
  usage = "logs [--tail N] [--bytes N] [-f] APP",
  description = "--tail N prints the last N lines (as docker and kubectl do); --bytes N the\n" ..
    "last N bytes (the Go ctcli's --tail). -f keeps printing new output, also\n" ..
    "across a rotation of the log, until interrupted.",
  options = {
    { "--tail", arg = "N", type = "number", help = "the last N lines" },
    { "--bytes", arg = "N", type = "number", help = "the last N bytes" },
    { "-f", "--follow", help = "follow the log as it grows" },
  },
  min_args = 1, max_args = 1,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "logs")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    local path = bundle.host_paths(ctx.paths, list[1].name).logs .. "/stdout-stderr.log"
    local st = ct.fs.stat(path)
    local size = st and st.size or 0
    local from = 0
    if ctx.opts.bytes then
      from = math.max(0, size - math.floor(ctx.opts.bytes))
    elseif ctx.opts.tail then
      from = st and tail_offset(path, size, math.floor(ctx.opts.tail)) or 0
    end
    local pos = st and copy_range(path, from, size) or 0
    if not ctx.opts.follow then return true end
    local ino = st and st.ino
    -- rotate-logs cuts the head off the live file in place and counts the
    -- bytes it removed in <log>.collapsed: keep our place across that.
    local function collapsed()
      return tonumber((ct.fs.read(path .. ".collapsed") or ""):match("%d+")) or 0
    end
    local cut = collapsed()
    while true do
      ct.time.sleep(0.2)
      -- rotate-logs cuts holding this lock: no cut lands inside our read.
      local lk = ct.lock.acquire(path .. ".lock", "logs -f", 30)
      local c = collapsed()
      local now = ct.fs.stat(path)
      if now then
        if now.ino == ino and c > cut then
          if c - cut > pos then
            io.stderr:write(string.format("ctcli: %d bytes were rotated before they were shown; see %s.*.zst\n",
              c - cut - pos, path))
          end
          pos, cut = math.max(0, pos - (c - cut)), c
        elseif now.ino == ino and now.size < pos then
          pos = 0
        end
        if now.ino ~= ino then
          -- Rotated: finish the old file (now .1), then start the new one.
          local old = ct.fs.stat(path .. ".1")
          if old and old.ino == ino and old.size > pos then copy_range(path .. ".1", pos, old.size) end
          ino, pos = now.ino, 0
        end
        if now.size > pos then pos = copy_range(path, pos, now.size) end
      end
      if lk then lk:release() end
    end
  end,
}
