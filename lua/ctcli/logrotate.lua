-- Rotating an app's stdout/stderr log while the app writes to it (DESIGN §3):
-- the container holds the file open with O_APPEND, so the first
-- block-aligned part is copied out and removed in place with
-- fallocate(FALLOC_FL_COLLAPSE_RANGE) (ct.fs.collapse): the app's next
-- write lands at the new end and no line is lost. Where the filesystem
-- refuses the collapse, copy-then-truncate, which loses what the app writes
-- in between (said so). Rotated parts are compressed with zstd and the
-- newest N kept: stdout-stderr.log.<UTC stamp>.zst; read them in name order,
-- then the live file (a line cut at the block boundary continues in the
-- next part). logs/<app>/stdout-stderr.log.collapsed holds the total bytes
-- removed from the live file so far, so a follower can keep its place; the
-- cut is made holding stdout-stderr.log.lock, which a follower takes to read.
local ct = require("ct")

local M = {}

M.LOG = "stdout-stderr.log"

local UNITS = { [""] = 1, B = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4 }

-- parse_size("100M") -> bytes | nil
function M.parse_size(s)
  local num, unit = tostring(s):upper():match("^(%d+)([KMGTB]?)I?B?$")
  if not num then return nil end
  return math.floor(tonumber(num) * UNITS[unit])
end

local function stamp()
  local t = ct.time.now()
  return os.date("!%Y%m%dT%H%M%S", math.floor(t)) .. string.format(".%06dZ", math.floor((t % 1) * 1e6))
end

-- parts(dir) -> rotated parts of dir's log, oldest first.
function M.parts(dir)
  local out = {}
  for _, name in ipairs(ct.fs.dir(dir) or {}) do
    if name:match("^stdout%-stderr%.log%.%d+T%d+%.%d+Z") then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function add_collapsed(dir, n)
  local f = dir .. "/" .. M.LOG .. ".collapsed"
  local total = tonumber((ct.fs.read(f) or ""):match("%d+")) or 0
  return ct.fs.write_atomic(f, tostring(total + n) .. "\n")
end

local function compress(part)
  local r, err = ct.proc.run({ "zstd", "-q", "-f", "--rm", part }, { timeout = 3600 })
  if not r then return nil, "zstd: " .. tostring(err) end
  if r.code ~= 0 then return nil, "zstd " .. part .. ": " .. r.stderr:gsub("%s+$", "") end
  return part .. ".zst"
end

-- rotate(dir, opts) -> result | nil, msg
-- opts: max_size (bytes), keep (parts). result: {rotated=bytes, part=, removed={...},
-- method="collapse"|"truncate", warning=}; rotated=0 when under max_size.
function M.rotate(dir, opts)
  local log = dir .. "/" .. M.LOG
  local st = ct.fs.stat(log)
  local res = { rotated = 0, removed = {} }
  if st and st.type == "file" and st.size > opts.max_size then
    local part = dir .. "/" .. M.LOG .. "." .. stamp()
    -- A follower (`logs -f`) holds the same lock while it reads, so the
    -- cut and its count never land in the middle of its read.
    local lk = ct.lock.acquire(log .. ".lock", "rotate-logs", 30)
    -- The newest part of the log stays (up to 1 MiB, half of max_size):
    -- `logs --tail` still shows recent lines and a follower that is behind
    -- by less than that misses nothing.
    local tail = math.min(1024 * 1024, opts.max_size // 2)
    local n, err, code = ct.fs.collapse(log, st.size - tail, part)
    if n and n > 0 then add_collapsed(dir, n) end
    if lk then lk:release() end
    if n then
      res.method = "collapse"
    elseif code == 95 or code == 22 then
      -- EOPNOTSUPP/EINVAL: this filesystem has no collapse.
      res.method = "truncate"
      res.warning = string.format("%s: the filesystem cannot collapse a file (%s); copied and truncated, " ..
        "so lines written during the copy are lost", log, err)
      local ok, cerr = ct.fs.copyfile(log, part, 416)
      if not ok then return nil, cerr end
      n = ct.fs.stat(part).size
      local f, ferr = io.open(log, "w")
      if not f then return nil, ferr end
      f:close()
      add_collapsed(dir, n)
    else
      return nil, err
    end
    if n > 0 then
      res.rotated = n
      local done, zerr = compress(part)
      if done then
        res.part = done
      else
        res.part = part
        res.warning = (res.warning and res.warning .. "; " or "") .. "not compressed: " .. zerr
      end
    end
  end
  local parts = M.parts(dir)
  for i = 1, #parts - opts.keep do
    if ct.fs.unlink(dir .. "/" .. parts[i]) then res.removed[#res.removed + 1] = parts[i] end
  end
  return res
end

return M
