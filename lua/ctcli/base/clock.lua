-- Time as ctcli writes and reads it: one format for every record and line
-- (UTC, "2006-01-02T15:04:05Z"), one reader of RFC 3339 (ours, the Go
-- tool's with fractions and offsets, runc's), independent of the host's zone.
local M = {}

-- iso([t]) -> "YYYY-MM-DDTHH:MM:SSZ" of epoch seconds t (default: now).
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t and math.floor(t) or nil)
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- epoch(s) -> seconds since the epoch (with the fraction) of an RFC 3339
-- time ("T", "t" or a space between date and time; "Z" or an offset), or nil.
function M.epoch(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac, zone = rest:match("^(%.?%d*)(.*)$")
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(zh) * 3600 + tonumber(zm) * 60) * (sign == "+" and 1 or -1)
  end
  local t = days(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60
    + tonumber(sec) - offset
  return t + (tonumber("0" .. frac) or 0)
end

return M
