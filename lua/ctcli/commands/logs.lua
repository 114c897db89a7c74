-- logs [--tail N] [--bytes N] [-f | --previous] APP: the app's stdout and
-- stderr, or those of its earlier run.
local ct = require("ct")
local lockfile = require("ctcli.base.lock")
local common = require("ctcli.services.common")
local apps = require("ctcli.services.apps")
local appfs = require("ctcli.runtime.appfs")
local runlog = require("ctcli.runtime.runlog")

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

-- The offset --tail or --bytes start printing from (the whole file by default).
local function start_of(f, size, opts)
  if opts.bytes then return math.max(0, size - math.floor(opts.bytes)) end
  if opts.tail then return f and tail_offset(f, size, math.floor(opts.tail)) or 0 end
  return 0
end

-- legacy(ctx, name): the log of an app no monitor ever supervised (started
-- by an older ctcli, or by the Go ctcli): logs/<app>/stdout-stderr.log.
local function legacy(ctx, name)
  if ctx.opts.previous then
    if ctx.opts.follow then
      return nil, "logs: --previous and -f do not go together (an earlier run's log no longer grows)", 2
    end
    local pf, perr = appfs.open_previous_log(ctx.paths, name)
    if not pf then return nil, perr end
    local psize = pf:stat().size
    copy_range(pf, start_of(pf, psize, ctx.opts), psize)
    pf:close()
    return true
  end
  local f, st, oerr = open(ctx.paths, name)
  if oerr then return nil, oerr end
  local size = st and st.size or 0
  local pos = f and copy_range(f, start_of(f, size, ctx.opts), size) or 0
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
    local lk = lockfile.acquire(lockpath, "logs -f", 30)
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
end

-- The monitor's logs (ctcli.runtime.runlog) of one app or of all, in time order.
local function printer(ctx, prefix)
  return function(rec)
    local line = rec.text
    if rec.stream == "ctcli" then line = "-- " .. line .. " --" end
    if ctx.opts.timestamps then line = rec.time .. " " .. line end
    if prefix then line = prefix .. line end
    io.stdout:write(line, "\n")
  end
end

local function supervised(ctx, names, width)
  local opts = { tail = ctx.opts.tail and math.floor(ctx.opts.tail), previous = ctx.opts.previous, all = ctx.verbose }
  if ctx.opts.since then
    opts.since = runlog.since(ctx.opts.since, ct.time.now())
    if not opts.since then
      return nil, "logs: --since expects a UTC time (2026-11-30T10:00:00Z) or a duration (90s, 10m, 2h, 1d), got '" ..
        tostring(ctx.opts.since) .. "'", 2
    end
  end
  local many = #names > 1
  local batch = {}
  local states = {}
  for _, name in ipairs(names) do
    local prefix = many and string.format("%-" .. width .. "s | ", name) or nil
    local emit = printer(ctx, prefix)
    local st, err
    if many then
      -- Interleaved by time: collected per app, sorted together.
      st, err = runlog.read(ctx.paths, name, opts, function(rec) batch[#batch + 1] = { rec, emit } end)
    elseif ctx.opts.bytes then
      local keep, n = {}, math.floor(ctx.opts.bytes)
      st, err = runlog.read(ctx.paths, name, opts, function(rec) keep[#keep + 1] = rec end)
      local text = {}
      for _, rec in ipairs(keep) do text[#text + 1] = rec.text .. "\n" end
      local all = table.concat(text)
      io.stdout:write(all:sub(math.max(1, #all - n + 1)))
    else
      st, err = runlog.read(ctx.paths, name, opts, emit)
    end
    if st == nil then return nil, err end
    if st == false then
      -- No earlier run in the monitor's log: the Go ctcli's archive, if any.
      return legacy(ctx, name)
    end
    if type(st) == "table" then states[#states + 1] = st end
  end
  local function flush()
    table.sort(batch, function(a, b) return a[1].time < b[1].time end)
    for _, e in ipairs(batch) do e[2](e[1]) end
    batch = {}
  end
  flush()
  io.stdout:flush()
  if ctx.opts.follow and not ctx.opts.previous then
    while true do
      ct.time.sleep(0.2)
      for _, st in ipairs(states) do runlog.poll(st) end
      flush()
      io.stdout:flush()
    end
  end
  for _, st in ipairs(states) do runlog.close(st) end
  return true
end

return {
  -- --json is a usage error: no document to print (docs/json.md)
  no_json = "its output is the apps' own text, as they wrote it",
  summary = "Print the apps' output (stdout and stderr); -f follows it",
  usage = "logs [--tail N] [--bytes N] [--since T] [--timestamps] [-f | --previous] [APP]",
  description = "The output of one app, or of every app interleaved by time with a prefix\n" ..
    "(as docker compose logs). Its monitor writes it, with a time per line, to\n" ..
    "state/runs/APP/ (outside the app's reach). --tail N prints the last N lines (as\n" ..
    "docker and kubectl do); --bytes N the last N bytes (the Go ctcli's --tail). -f\n" ..
    "keeps printing new output, across restarts and rotations, until interrupted.\n" ..
    "--previous prints the run before the last one (for an app started by the Go\n" ..
    "ctcli, the newest log it archived in logs/APP/stdout-stderr-arch/). --since\n" ..
    "takes a UTC time or a duration back from now (10m, 2h); --timestamps shows\n" ..
    "each line's time. -v adds the monitor's own notes (runs, exits, restarts).",
  options = {
    { "--tail", arg = "N", type = "number", integer = true, help = "the last N lines" },
    { "--bytes", arg = "N", type = "number", integer = true, help = "the last N bytes" },
    { "-f", "--follow", help = "follow the log as it grows" },
    { "--previous", help = "the log of the app's earlier run" },
    { "--since", arg = "T", help = "output since a UTC time or a duration ago (10m, 2h)" },
    { "--timestamps", help = "each line's time" },
  },
  max_args = 1,
  needs_root = true,
  run = function(ctx)
    local rel, err = common.current_or_fail(ctx, "logs")
    if not rel then return nil, err end
    local list, serr = apps.select(rel, ctx.args)
    if not list then return nil, serr end
    if ctx.opts.previous and ctx.opts.follow then
      return nil, "logs: --previous and -f do not go together (an earlier run's log no longer grows)", 2
    end
    local names, width = {}, 0
    for _, app in ipairs(list) do
      if runlog.has(ctx.paths, app.name) then
        names[#names + 1] = app.name
        width = math.max(width, #app.name)
      elseif #list == 1 then
        return legacy(ctx, app.name)
      end
    end
    if #names == 0 then return true end
    return supervised(ctx, names, width)
  end,
}
