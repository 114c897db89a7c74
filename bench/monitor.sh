#!/usr/bin/env bash
# monitor.sh — the memory one container monitor costs (goal: <= 1 MB private).
#
# usage: bench/monitor.sh [--build DIR] [--apps N]
#
#   --build DIR  a build directory holding ctcli-lua (default: build Release
#                with scripts/build.sh)
#   --apps N     containers (each with its monitor) to start (default 10)
#
# Starts N busybox containers (`sleep`) through ct.monitor.spawn, as `start`
# will, waits a second for them to settle, then reads each monitor's
# /proc/PID/smaps_rollup: Rss, Pss, Private_Clean + Private_Dirty. Prints
# one row per monitor and the mean. The monitor is the ctcli binary itself
# (its code pages are shared between monitors, hence Pss < Rss).
#
# Needs root, runc and busybox. Everything lives under one `mktemp -d`
# directory, removed on exit after each container is stopped through its
# monitor and deleted by id; a monitor still alive then is killed by pid.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/.." && pwd)
build=""
apps=10
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --apps) apps=$2; shift 2 ;;
    *) echo "usage: bench/monitor.sh [--build DIR] [--apps N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "monitor.sh: needs root (runc containers)" >&2; exit 1; }
[ -n "$build" ] || build=$(nice "$here/scripts/build.sh" Release)
runner=$build/ctcli-lua
[ -x "$runner" ] || { echo "monitor.sh: no $runner" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

cat >"$work/bench.lua" <<'EOF'
local ct, cjson = require("ct"), require("cjson")
local work, n = arg[1], tonumber(arg[2])
local function sh(argv)
  local r = assert(ct.proc.run(argv, { timeout = 60 }))
  assert(r.code == 0, table.concat(argv, " ") .. ": " .. r.stderr)
end
local rt = { "runc", "--root", work .. "/runc-root" }
local function runc(...)
  local t = { table.unpack(rt) }
  for _, a in ipairs({ ... }) do t[#t + 1] = a end
  return t
end

local bundle = work .. "/bundle"
sh({ "mkdir", "-p", bundle .. "/rootfs/bin" })
sh({ "cp", "/bin/busybox", bundle .. "/rootfs/bin/busybox" })
sh({ "ln", "-s", "busybox", bundle .. "/rootfs/bin/sh" })
sh({ "runc", "spec", "--bundle", bundle })
local f = assert(io.open(bundle .. "/config.json"))
local cfg = cjson.decode(f:read("a"))
f:close()
cfg.process.terminal = false
cfg.process.args = { "/bin/sh", "-c", "echo started; exec /bin/busybox sleep 100000" }
cfg.root.path = bundle .. "/rootfs"
f = assert(io.open(bundle .. "/config.json", "w"))
f:write(cjson.encode(cfg))
f:close()

local started = {}
local function cleanup()
  for _, c in ipairs(started) do
    ct.monitor.request(c.state, "stop", 2000)
    ct.proc.run(runc("delete", "--force", c.id), { timeout = 60 })
    for _ = 1, 100 do
      if not ct.proc.alive(c.mpid) then break end
      ct.time.sleep(0.02)
    end
    if ct.proc.alive(c.mpid) then ct.proc.kill(c.mpid, "KILL") end
  end
end

local function rollup(pid)
  local out = {}
  for line in io.lines("/proc/" .. pid .. "/smaps_rollup") do
    local k, v = line:match("^(%S+):%s+(%d+) kB")
    if k then out[k] = tonumber(v) end
  end
  return out
end

local ok, err = pcall(function()
  for i = 1, n do
    local dir = work .. "/app" .. i
    sh({ "mkdir", "-p", dir .. "/logs", dir .. "/state" })
    local c = { id = "ctbench-" .. ct.proc.getpid() .. "-" .. i }
    c.state = assert(ct.fs.opendir(dir .. "/state"))
    local logs = assert(ct.fs.opendir(dir .. "/logs"))
    local pidf = dir .. "/state/init.pid"
    local mpid, init = ct.monitor.spawn({
      id = c.id, logs = logs, state = c.state, pid_file = pidf,
      create = runc("create", "--bundle", bundle, "--pid-file", pidf, c.id),
      start = runc("start", c.id), delete = runc("delete", "--force", c.id),
      restart = "on-failure", backoff_initial = 1, backoff_max = 60, crash_limit = 5, quick_run = 10,
      log_max = 10 << 20, log_keep = 5, timeout = 60, runc_timeout = 60,
    })
    logs:close()
    assert(mpid, init)
    c.mpid = mpid
    started[#started + 1] = c
  end
  ct.time.sleep(1)
  local sum = { Rss = 0, Pss = 0, Private = 0 }
  print(string.format("%-8s %10s %10s %12s", "monitor", "Rss kB", "Pss kB", "Private kB"))
  for _, c in ipairs(started) do
    local r = rollup(c.mpid)
    local private = (r.Private_Clean or 0) + (r.Private_Dirty or 0)
    print(string.format("%-8d %10d %10d %12d", c.mpid, r.Rss, r.Pss, private))
    sum.Rss, sum.Pss, sum.Private = sum.Rss + r.Rss, sum.Pss + r.Pss, sum.Private + private
  end
  print(string.format("%-8s %10.0f %10.0f %12.0f", "mean", sum.Rss / n, sum.Pss / n, sum.Private / n))
  print(string.format("goal: private <= 1024 kB per app: %s",
    sum.Private / n <= 1024 and "met" or "NOT met"))
end)
cleanup()
assert(ok, err)
EOF
"$runner" "$work/bench.lua" "$work" "$apps"
