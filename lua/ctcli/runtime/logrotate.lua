-- Rotating an app's stdout/stderr log while the app writes to it (DESIGN §3):
-- the container holds the file open with O_APPEND, so the first
-- block-aligned part is copied out and removed in place with
-- fallocate(FALLOC_FL_COLLAPSE_RANGE) (ct.fs.collapse): the app's next
-- write lands at the new end and no line is lost. Where the filesystem
-- refuses the collapse, copy-then-truncate, which loses what the app writes
-- in between (said so). Rotated parts are compressed with zstd and the
-- newest N kept: stdout-stderr.log.<UTC stamp>.zst; read them in name order,
-- then the live file (a line cut at the block boundary continues in the
-- next part). A counter under state/logs/ holds the total bytes removed
-- from the live file so far, so a follower can keep its place; the cut is
-- made holding a lock there, which a follower takes to read. The log dir is
-- the app's: everything in it is opened beneath it (appfs), never by path.
local ct = require("ct")
local lockfile = require("ctcli.base.lock")

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

-- parts(d) -> rotated parts in the logs Dir d, oldest first.
function M.parts(d)
  local out = {}
  for _, name in ipairs(d:list("") or {}) do
    if name:match("^stdout%-stderr%.log%.%d+T%d+%.%d+Z") then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function add_collapsed(counter, n)
  local total = tonumber((ct.fs.read(counter) or ""):match("%d+")) or 0
  return ct.fs.write_atomic(counter, tostring(total + n) .. "\n")
end

-- The cut part, compressed in process from the descriptor we hold (no
-- external tool gets a path in a dir the app writes).
local function compress(d, name, tmp)
  local zname = name .. ".zst"
  local src, err = d:open(tmp, {})
  if not src then return nil, err end
  local dst, derr = d:open(zname, { write = true, create = true, excl = true, mode = 416 })
  if not dst then src:close() return nil, derr end
  local ok, zerr = src:zstd_to(dst)
  if ok then ok, zerr = dst:fsync() end
  src:close()
  dst:close()
  if not ok then d:unlink(zname) return nil, zerr end
  d:unlink(tmp)
  return zname
end

-- rotate(d, opts) -> result | nil, msg
-- d: the app's logs Dir; opts: max_size (bytes), keep (parts), lock and
-- counter (paths outside every container). result: {rotated=bytes, part=,
-- removed={...}, method="collapse"|"truncate", warning=}; rotated=0 when
-- under max_size.
function M.rotate(d, opts)
  local res = { rotated = 0, removed = {} }
  local log, err = d:open(M.LOG, { write = true })
  if not log then return nil, err end
  local st = log:stat()
  if st.size > opts.max_size then
    local name = M.LOG .. "." .. stamp()
    local tmp = name .. ".part"
    local part, perr = d:open(tmp, { write = true, create = true, excl = true, mode = 416 })
    if not part then log:close() return nil, perr end
    -- A follower (`logs -f`) holds the same lock while it reads, so the
    -- cut and its count never land in the middle of its read.
    local lk = lockfile.acquire(opts.lock, "rotate-logs", 30)
    -- The newest part of the log stays (up to 1 MiB, half of max_size):
    -- `logs --tail` still shows recent lines and a follower that is behind
    -- by less than that misses nothing.
    local tail = math.min(1024 * 1024, opts.max_size // 2)
    local n, cerr
    log:seek("set", 0)
    n, cerr = log:copy_to(part, st.size - tail)
    local code
    if n then n, cerr, code = log:collapse(n) end
    if n and n > 0 then add_collapsed(opts.counter, n) end
    if n then
      res.method = "collapse"
      -- What was copied past the block boundary the collapse kept.
      part:truncate(n)
    elseif code == ct.fs.errno.EOPNOTSUPP or code == ct.fs.errno.EINVAL then
      res.method = "truncate"
      res.warning = string.format("%s: the filesystem cannot collapse a file (%s); copied and truncated, " ..
        "so lines written during the copy are lost", d:path(M.LOG), cerr)
      part:truncate(0)
      log:seek("set", 0)
      n, cerr = log:copy_to(part)
      if n then log:truncate(0) add_collapsed(opts.counter, n) end
    end
    if lk then lk:release() end
    part:close()
    log:close()
    if not n then d:unlink(tmp) return nil, cerr end
    if n > 0 then
      res.rotated = n
      local done, zerr = compress(d, name, tmp)
      if done then
        res.part = done
      else
        local rok = d:rename(tmp, name)
        res.part = rok and name or tmp
        res.warning = (res.warning and res.warning .. "; " or "") .. "not compressed: " .. tostring(zerr)
      end
    else
      d:unlink(tmp)
    end
  else
    log:close()
  end
  local parts = M.parts(d)
  for i = 1, #parts - opts.keep do
    if d:unlink(parts[i]) then res.removed[#res.removed + 1] = parts[i] end
  end
  return res
end

return M
