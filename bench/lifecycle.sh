#!/usr/bin/env bash
# Figures are stored through `printf -v NAME`, which shellcheck cannot follow.
# shellcheck disable=SC2154
#
# lifecycle.sh — ctcli lifecycle benchmarks, measured side by side in one run.
#
# usage: bench/lifecycle.sh [--ctcli PATH] [--json-out FILE] [--runs N]
#
#   --ctcli PATH     the ctcli binary to measure (default: build Release with
#                    scripts/build.sh and use <build dir>/ctcli)
#   --json-out FILE  also write every figure as JSON to FILE
#   --runs N         runs of each status measurement (default 20) and of each
#                    small install / baseline (default 5; median reported)
#
# Builds its fixture packages with tests/support/mkpkg, then measures:
#   1. install of a ~300 MiB package (3 apps x 100 MiB incompressible payload)
#      and of a small one (3 apps, no payload) vs `tar -xzf` + one
#      `umoci unpack` per app, sequentially;
#   2. the downtime of the one changed app during `upgrade -y` (first frozen
#      by the backup, or its old process gone -> new container running,
#      polled every ~2 ms by a background loop), both sizes, whether the
#      unchanged apps kept their pids and the longest they were frozen;
#   3. `stop` of 3 apps that ignore SIGTERM (stop timeout 10 s);
#   4. `status --json` with 3 and with 10 running apps (hyperfine when
#      installed, else N runs and the median);
#   5. `backup` (zstd), `backup --gzip` vs `tar -czf` (and `tar | zstd -T0`)
#      of the same directories: time and size;
#   6. peak memory of ctcli during the big install and the big backup.
#
# Needs root (real runc containers), bash >= 5, runc, umoci, tar, gzip, zstd,
# lua5.4 with lua-cjson, md5sum, and what mkpkg needs; /usr/bin/time and
# hyperfine are used when present. Everything happens under one `mktemp -d`
# directory that is removed on exit, after every app of every root made here
# is stopped (`ctcli stop --force`) and its containers deleted by id.
# Nothing is installed, no page cache is dropped, nothing is killed by name.
set -euo pipefail
export LC_ALL=C

prog=lifecycle.sh
here=$(cd "$(dirname "$0")/.." && pwd)
mkpkg=$here/tests/support/mkpkg

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

ctcli="" json_out="" runs=""
while (($#)); do
  case $1 in
    --ctcli) (($# >= 2)) || die "--ctcli needs a path"; ctcli=$2; shift 2 ;;
    --json-out) (($# >= 2)) || die "--json-out needs a file"; json_out=$2; shift 2 ;;
    --runs)
      if (($# < 2)) || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then die "--runs needs a positive number"; fi
      runs=$2; shift 2 ;;
    -h|--help) sed -n '/^# lifecycle.sh/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
status_runs=${runs:-20}
small_runs=${runs:-5}

# ---------------------------------------------------------------- preflight
[[ $(id -u) == 0 ]] || die "run as root: the apps run as real runc containers"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
for t in runc umoci tar gzip zstd md5sum lua5.4 mkfifo realpath; do
  command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh installs what is missing)"
done
lua5.4 -e 'require("cjson")' 2>/dev/null || die "lua-cjson for lua5.4 not found"
have_time=0
[[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null && have_time=1
have_hyperfine=0
command -v hyperfine >/dev/null && have_hyperfine=1

if [[ -n $json_out ]]; then
  json_dir=$(cd "$(dirname "$json_out")" && pwd) || die "--json-out: no directory for $json_out"
  json_out=$json_dir/$(basename "$json_out")
fi

if [[ -z $ctcli ]]; then
  say "building Release with scripts/build.sh"
  if ! build_dir=$("$here/scripts/build.sh" Release); then
    die "the Release build failed (output above); build ctcli yourself and pass --ctcli PATH"
  fi
  ctcli=$build_dir/ctcli
fi
[[ -x $ctcli ]] || die "$ctcli: not an executable"
ctcli=$(realpath "$ctcli")

# ------------------------------------------------------------ temp dir, exit
tmp_base=$(realpath "${TMPDIR:-/tmp}")
work=$(mktemp -d "$tmp_base/ctcli-bench.XXXXXX")
# Searchable by all: a root's apps run as ids of its user-namespace range,
# which must reach the root's images through this directory.
chmod 711 "$work"
roots=()
bg_pids=()

cleanup() {
  local rc=$? r id p
  set +e
  trap - EXIT INT TERM
  for p in "${bg_pids[@]}"; do
    if [[ -e /proc/$p ]]; then kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  done
  for r in "${roots[@]}"; do
    if [[ -e $r/current-release ]]; then
      "$ctcli" --root "$r" stop --force >/dev/null 2>&1 || echo "$prog: cleanup: ctcli --root $r stop --force failed" >&2
    fi
    if [[ -d $r/runc-root ]]; then
      for id in $(runc --root "$r/runc-root" list -q 2>/dev/null); do
        runc --root "$r/runc-root" delete --force "$id" >/dev/null 2>&1 ||
          echo "$prog: cleanup: runc delete --force $id failed" >&2
      done
    fi
  done
  case $work in
    "$tmp_base"/ctcli-bench.?*) rm -rf -- "$work" ;;
  esac
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A fifo held open read-write: `read -t` on it is a sleep without a fork.
mkfifo "$work/sleep.fifo"

# JSON helpers (lua5.4 + lua-cjson, which mkpkg needs anyway):
#   json.lua pids < status.json       "app=pid" lines ("-" when not running)
#   json.lua field FILE KEY           a top-level field of FILE
#   json.lua hyperfine FILE           median of the first result, microseconds
#   json.lua string TEXT              TEXT as a JSON string
cat >"$work/json.lua" <<'LUA'
local cjson = require("cjson")
local cmd = arg[1]
local function load(file)
  local f = assert(io.open(file))
  local doc = cjson.decode(f:read("a"))
  f:close()
  return doc
end
if cmd == "pids" then
  local doc = cjson.decode(io.read("a"))
  for _, a in ipairs(doc.apps) do
    local pid = a.pid ~= cjson.null and math.tointeger(a.pid) or nil
    print(a.name .. "=" .. ((a.state == "running" and pid) and tostring(pid) or "-"))
  end
elseif cmd == "field" then
  local v = load(arg[2])[arg[3]]
  if v ~= nil and v ~= cjson.null then print(v) end
elseif cmd == "hyperfine" then
  print(math.floor(load(arg[2]).results[1].median * 1e6 + 0.5))
elseif cmd == "string" then
  io.write((cjson.encode(arg[2]):gsub("\\/", "/")))
end
LUA

# ------------------------------------------------------------------ helpers
results_keys=()
declare -A results=()
put() { # key value
  [[ -v "results[$1]" ]] || results_keys+=("$1")
  results[$1]=$2
}

us_to_s() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1e6 }'; }
us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1e3 }'; }
bytes_to_mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# fail_cmd LOGBASE CMD...: report a failed command with its output and stop.
fail_cmd() {
  local log=$1 rc=$2; shift 2
  {
    echo "$prog: FAILED (exit $rc): $*"
    [[ -s $log.out ]] && { echo "--- stdout (last 20 lines)"; tail -n 20 "$log.out"; }
    [[ -s $log.err ]] && { echo "--- stderr (last 20 lines)"; tail -n 20 "$log.err"; }
  } >&2
  exit 1
}

# timed VAR LOGBASE CMD...: runs CMD (stdout/stderr to LOGBASE.out/.err),
# stores its wall time in microseconds in VAR; a failure stops the bench.
timed() {
  local __var=$1 __log=$2 __a __b __rc=0; shift 2
  __a=${EPOCHREALTIME/./}
  "$@" >"$__log.out" 2>"$__log.err" || __rc=$?
  __b=${EPOCHREALTIME/./}
  ((__rc == 0)) || fail_cmd "$__log" "$__rc" "$@"
  printf -v "$__var" %d $((__b - __a))
}

proc_gone() { # pid: true when the process is gone or a zombie
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 0
  st=${st##*) }
  [[ ${st%% *} == [ZX] ]]
}

# timed_mem VAR_US VAR_HWM_KB VAR_MAXRSS_KB LOGBASE CMD...: like timed, and
# records CMD's own peak RSS (VmHWM, polled every ~10 ms from /proc) and,
# with /usr/bin/time, the max RSS it reports (CMD or any child it reaped).
timed_mem() {
  local __vt=$1 __vh=$2 __vr=$3 __log=$4 __a __b __rc=0 __pid __cpid="" __hwm=0 __k __v __rest __fd
  shift 4
  exec {__fd}<>"$work/sleep.fifo"
  __a=${EPOCHREALTIME/./}
  if ((have_time)); then
    /usr/bin/time -f %M -o "$__log.time" "$@" >"$__log.out" 2>"$__log.err" {__fd}>&- &
  else
    "$@" >"$__log.out" 2>"$__log.err" {__fd}>&- &
  fi
  __pid=$!
  bg_pids+=("$__pid")
  ((have_time)) || __cpid=$__pid
  while ! proc_gone "$__pid"; do
    if [[ -z $__cpid ]]; then
      { read -r __cpid __rest <"/proc/$__pid/task/$__pid/children"; } 2>/dev/null || true
      [[ $__cpid =~ ^[0-9]+$ ]] || __cpid=""
    fi
    if [[ -n $__cpid ]]; then
      while IFS=$': \t' read -r __k __v __rest; do
        if [[ $__k == VmHWM ]]; then ((__v > __hwm)) && __hwm=$__v; break; fi
      done 2>/dev/null <"/proc/$__cpid/status" || true
    fi
    read -r -t 0.01 -u "$__fd" __rest || true
  done
  wait "$__pid" || __rc=$?
  __b=${EPOCHREALTIME/./}
  exec {__fd}>&-
  ((__rc == 0)) || fail_cmd "$__log" "$__rc" "$@"
  printf -v "$__vt" %d $((__b - __a))
  printf -v "$__vh" %d "$__hwm"
  if ((have_time)); then printf -v "$__vr" %d "$(tail -n 1 "$__log.time")"; else printf -v "$__vr" %s ""; fi
}

cid() { # root app -> container id (md5 of the absolute root, "-", app)
  local h
  h=$(printf %s "$1" | md5sum)
  echo "${h%% *}-$2"
}

runc_pid() { # root app -> pid of the running container, or nothing
  local out
  out=$(runc --root "$1/runc-root" state "$(cid "$1" "$2")" 2>/dev/null) || return 0
  [[ $out =~ \"status\":[[:space:]]*\"running\" ]] || return 0
  [[ $out =~ \"pid\":[[:space:]]*([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

# status_pids ROOT -> "app=pid" lines from `status --json`
status_pids() {
  "$ctcli" --root "$1" status --json | lua5.4 "$work/json.lua" pids
}

json_field() { # file field -> top-level string/number field of a JSON document
  lua5.4 "$work/json.lua" field "$1" "$2"
}

new_root() { # VAR name: VAR = path of a fresh, initialised root
  local __root=$work/roots/$2
  mkdir -p "$work/roots"
  roots+=("$__root")
  "$ctcli" --root "$__root" init >"$work/init-$2.log" 2>&1 ||
    { cat "$work/init-$2.log" >&2; die "ctcli --root $__root init failed"; }
  printf -v "$1" %s "$__root"
}

retire_root() { # root: stop its apps, delete its containers, remove it
  local r=$1 id
  "$ctcli" --root "$r" stop --force >/dev/null 2>&1 || echo "$prog: ctcli --root $r stop --force failed" >&2
  for id in $(runc --root "$r/runc-root" list -q 2>/dev/null); do
    runc --root "$r/runc-root" delete --force "$id" >/dev/null 2>&1 || true
  done
  rm -rf -- "$r"
}

all_running() { # root app... -> true when every app has a running container
  local r=$1 a; shift
  for a in "$@"; do [[ -n $(runc_pid "$r" "$a") ]] || return 1; done
}

# ------------------------------------------------------------------ fixtures
pkgs=$work/pkgs
mkdir -p "$pkgs"
build_pkg() { # name mkpkg-args...
  local name=$1; shift
  "$mkpkg" --out "$pkgs/$name.tar.gz" --workdir "$work" "$@" >"$work/mkpkg-$name.log" 2>&1 ||
    { cat "$work/mkpkg-$name.log" >&2; die "mkpkg failed for $name: $*"; }
}

say "building fixture packages (mkpkg) in $work"
fx_a=$EPOCHREALTIME
build_pkg small1 --version 1.0.0 --app a --app b --app c
for k in 2 3 4; do
  build_pkg "small$k" --version "1.$((k - 1)).0" --app "a:version=1.$((k - 1)).0" \
    --app b:version=1.0.0 --app c:version=1.0.0
done
build_pkg big1 --version 1.0.0 --app a:payload=100 --app b:payload=100 --app c:payload=100
build_pkg big2 --version 1.1.0 --app a:version=1.1.0,payload=100 \
  --app b:version=1.0.0,payload=100 --app c:version=1.0.0,payload=100
build_pkg term --version 1.0.0 --app a:ignore-term --app b:ignore-term --app c:ignore-term
ten_apps=()
ten_args=()
for i in 01 02 03 04 05 06 07 08 09 10; do ten_apps+=("app$i"); ten_args+=(--app "app$i"); done
build_pkg ten --version 1.0.0 "${ten_args[@]}"
say "fixtures built in $(awk -v a="$fx_a" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"

small_bytes=$(stat -c %s "$pkgs/small1.tar.gz")
big_bytes=$(stat -c %s "$pkgs/big1.tar.gz")
put small_pkg_mib "$(bytes_to_mib "$small_bytes")"
put big_pkg_mib "$(bytes_to_mib "$big_bytes")"

# ----------------------------------------------- 1. install vs tar + umoci
# baseline PKG: tar -xzf, then `umoci unpack` of each app, one after another.
baseline_install() {
  local pkg=$1 d=$work/baseline app
  rm -rf -- "$d"
  mkdir -p "$d/x" "$d/b"
  tar -xzf "$pkg" -C "$d/x" || return 1
  for app in "$d"/x/package/apps/*; do
    app=${app##*/}
    umoci unpack --image "$d/x/package/apps/$app/skopeo:$app" "$d/b/$app" >/dev/null || return 1
  done
}

read -r load1 _ </proc/loadavg
put loadavg_start "$load1"
say "1. install vs tar -xzf + umoci unpack: small package ($small_runs runs each)"
small_ct=() small_ns=() small_bl=()
for ((i = 1; i <= small_runs; i++)); do
  timed t "$work/bl-small-$i" baseline_install "$pkgs/small1.tar.gz"
  small_bl+=("$t")
  rm -rf -- "$work/baseline"
  new_root r "small-install-$i"
  timed t "$work/install-small-$i" "$ctcli" --root "$r" install "$pkgs/small1.tar.gz"
  small_ct+=("$t")
  retire_root "$r"
  new_root r "small-install-nostart-$i"
  timed t "$work/install-small-nostart-$i" "$ctcli" --root "$r" install --no-start "$pkgs/small1.tar.gz"
  small_ns+=("$t")
  retire_root "$r"
done
small_install_us=$(printf '%s\n' "${small_ct[@]}" | median)
small_nostart_us=$(printf '%s\n' "${small_ns[@]}" | median)
small_base_us=$(printf '%s\n' "${small_bl[@]}" | median)
put install_small_ctcli_s "$(us_to_s "$small_install_us")"
put install_small_baseline_s "$(us_to_s "$small_base_us")"
put install_small_ratio "$(ratio "$small_install_us" "$small_base_us")"
put install_small_nostart_s "$(us_to_s "$small_nostart_us")"
put install_small_nostart_ratio "$(ratio "$small_nostart_us" "$small_base_us")"

say "1. install vs tar -xzf + umoci unpack: big package (1 run each)"
timed big_base_us "$work/bl-big" baseline_install "$pkgs/big1.tar.gz"
rm -rf -- "$work/baseline"
new_root r big-nostart
timed big_nostart_us "$work/install-big-nostart" "$ctcli" --root "$r" install --no-start "$pkgs/big1.tar.gz"
retire_root "$r"
put install_big_nostart_s "$(us_to_s "$big_nostart_us")"
put install_big_nostart_ratio "$(ratio "$big_nostart_us" "$big_base_us")"
new_root big big
timed_mem big_install_us big_install_hwm big_install_maxrss "$work/install-big" \
  "$ctcli" --root "$big" install "$pkgs/big1.tar.gz"
put install_big_ctcli_s "$(us_to_s "$big_install_us")"
put install_big_baseline_s "$(us_to_s "$big_base_us")"
put install_big_ratio "$(ratio "$big_install_us" "$big_base_us")"
put install_big_ctcli_vmhwm_mib "$(awk -v k="$big_install_hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
[[ -n $big_install_maxrss ]] &&
  put install_big_time_maxrss_mib "$(awk -v k="$big_install_maxrss" 'BEGIN { printf "%.1f", k / 1024 }')"
all_running "$big" a b c || die "after 'ctcli --root $big install big1': not every app is running"

# ------------------------------------------------------------- 5. backups
say "5. backup (zstd), backup --gzip, tar -czf, tar | zstd -T0 of the big root"
big_rel=$(readlink "$big/current-release")
big_rel=${big_rel##*/}
timed_mem bk_zstd_us bk_zstd_hwm bk_zstd_maxrss "$work/backup-zstd" "$ctcli" --root "$big" --json backup
bk_zstd_file=$(json_field "$work/backup-zstd.out" path)
[[ -f $bk_zstd_file ]] || die "ctcli --root $big --json backup: no archive at '$bk_zstd_file'"
timed bk_gzip_us "$work/backup-gzip" "$ctcli" --root "$big" --json backup --gzip
bk_gzip_file=$(json_field "$work/backup-gzip.out" path)
[[ -f $bk_gzip_file ]] || die "ctcli --root $big --json backup --gzip: no archive at '$bk_gzip_file'"
all_running "$big" a b c || die "after 'ctcli backup': not every app is running (left paused?)"
# The same content as the backup: the release, its apps' rootfs and
# image.json (not the other releases' images, nor the kept OCI layouts),
# config, data.
mapfile -t img_paths < <(lua5.4 - "$big/releases/$big_rel/release.json" <<'LUA'
local cjson = require("cjson")
local f = assert(io.open(arg[1])); local rel = cjson.decode(f:read("a")); f:close()
for _, a in ipairs(rel.apps) do
  local k = "images/" .. a.name .. "@" .. a.image.digest
  print(k .. "/rootfs"); print(k .. "/image.json")
end
LUA
)
tar_dirs=("releases/$big_rel" "${img_paths[@]}" config data)
timed tar_gz_us "$work/tar-gz" tar -C "$big" -czf "$work/tar-backup.tar.gz" "${tar_dirs[@]}"
tar_zstd() { tar -C "$big" -cf - "${tar_dirs[@]}" | zstd -q -T0 -3 -o "$work/tar-backup.tar.zst"; }
timed tar_zst_us "$work/tar-zst" tar_zstd
bk_zstd_bytes=$(stat -c %s "$bk_zstd_file")
bk_gzip_bytes=$(stat -c %s "$bk_gzip_file")
tar_gz_bytes=$(stat -c %s "$work/tar-backup.tar.gz")
tar_zst_bytes=$(stat -c %s "$work/tar-backup.tar.zst")
tar_in_bytes=$(du -sb --apparent-size -c "${tar_dirs[@]/#/$big/}" | tail -n 1 | cut -f1)
rm -f -- "$work/tar-backup.tar.gz" "$work/tar-backup.tar.zst"
put backup_input_mib "$(bytes_to_mib "$tar_in_bytes")"
put backup_zstd_s "$(us_to_s "$bk_zstd_us")"
put backup_zstd_mib "$(bytes_to_mib "$bk_zstd_bytes")"
put backup_gzip_s "$(us_to_s "$bk_gzip_us")"
put backup_gzip_mib "$(bytes_to_mib "$bk_gzip_bytes")"
put tar_czf_s "$(us_to_s "$tar_gz_us")"
put tar_czf_mib "$(bytes_to_mib "$tar_gz_bytes")"
put tar_zstd_s "$(us_to_s "$tar_zst_us")"
put tar_zstd_mib "$(bytes_to_mib "$tar_zst_bytes")"
put backup_zstd_vs_tar_czf_time_ratio "$(ratio "$bk_zstd_us" "$tar_gz_us")"
put backup_zstd_vs_tar_czf_size_ratio "$(ratio "$bk_zstd_bytes" "$tar_gz_bytes")"
put backup_gzip_vs_tar_czf_time_ratio "$(ratio "$bk_gzip_us" "$tar_gz_us")"
put backup_gzip_vs_tar_czf_size_ratio "$(ratio "$bk_gzip_bytes" "$tar_gz_bytes")"
put backup_big_ctcli_vmhwm_mib "$(awk -v k="$bk_zstd_hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
[[ -n $bk_zstd_maxrss ]] &&
  put backup_big_time_maxrss_mib "$(awk -v k="$bk_zstd_maxrss" 'BEGIN { printf "%.1f", k / 1024 }')"

# -------------------------------------------------- 2. upgrade downtime
# freezer_path ROOT APP -> the app's freezer cgroup dir (runc's state.json), or nothing
freezer_path() {
  local js=""
  { read -r js <"$1/runc-root/$(cid "$1" "$2")/state.json"; } 2>/dev/null
  [[ $js =~ \"freezer\":\"([^\"]+)\" ]] && echo "${BASH_REMATCH[1]}"
}

# poll_downtime ROOT APP OLDPID OUT OTHER...: in the background; every ~2 ms
# it reads APP's freezer state until the app is first frozen (the backup's
# pause) or OLDPID exits, whichever comes first (t0), then waits for the
# app's container to be running with a new init pid (t1) — runc's own
# test: state.json names a live init process and exec.fifo is gone (`runc
# start` removes it). All along it times the longest stretch any OTHER app
# (unchanged) is seen frozen. Writes "t0_us t1_us newpid other_max_us" to OUT.
poll_downtime() {
  local root=$1 app=$2 old=$3 out=$4 id sd fd js p t0="" t1 deadline fz st o now other_max=0
  shift 4
  local others=("$@") ofz=() since=()
  set +e
  id=$(cid "$root" "$app")
  sd=$root/runc-root/$id
  fz=$(freezer_path "$root" "$app")
  for o in "${others[@]}"; do ofz+=("$(freezer_path "$root" "$o")") since+=(0); done
  exec {fd}<>"$work/sleep.fifo"
  deadline=$((${EPOCHREALTIME/./} + 900000000))
  # others_frozen: the longest time an unchanged app stayed frozen so far
  others_frozen() {
    local i f
    now=${EPOCHREALTIME/./}
    for i in "${!ofz[@]}"; do
      f=THAWED
      [[ -n ${ofz[i]} ]] && { read -r f <"${ofz[i]}/freezer.state"; } 2>/dev/null
      if [[ $f != THAWED ]]; then
        ((since[i])) || since[i]=$now
        ((now - since[i] > other_max)) && other_max=$((now - since[i]))
      else
        since[i]=0
      fi
    done
  }
  while ! proc_gone "$old"; do
    ((${EPOCHREALTIME/./} < deadline)) || { echo "timeout waiting for pid $old to exit" >"$out"; exit 1; }
    others_frozen
    if [[ -z $t0 && -n $fz ]]; then
      st=THAWED
      { read -r st <"$fz/freezer.state"; } 2>/dev/null
      [[ $st != THAWED ]] && t0=${EPOCHREALTIME/./}
    fi
    read -r -t 0.002 -u "$fd" p
  done
  [[ -n $t0 ]] || t0=${EPOCHREALTIME/./}
  while :; do
    ((${EPOCHREALTIME/./} < deadline)) || { echo "timeout waiting for $id to run again" >"$out"; exit 1; }
    others_frozen
    if [[ ! -e $sd/exec.fifo ]]; then
      js=""
      { read -r js <"$sd/state.json"; } 2>/dev/null
      if [[ $js =~ \"init_process_pid\":([0-9]+) ]]; then
        p=${BASH_REMATCH[1]}
        if ((p != old)) && ! proc_gone "$p" && [[ ! -e $sd/exec.fifo ]]; then
          t1=${EPOCHREALTIME/./}
          break
        fi
      fi
    fi
    read -r -t 0.002 -u "$fd" js
  done
  echo "$t0 $t1 $p $other_max" >"$out"
}

# measure_upgrade ROOT PKG LABEL: upgrade -y with app a changed, b and c not.
# Sets dt_us (downtime: pause + stop + start), up_us (upgrade wall time),
# frozen_us (the longest an unchanged app was frozen), kept ("yes"/"no").
measure_upgrade() {
  local root=$1 pkg=$2 label=$3 old before after poller newpid t0 t1 state
  all_running "$root" a b c || die "before the $label upgrade: not every app is running in $root"
  old=$(runc_pid "$root" a)
  before=$(status_pids "$root")
  poll_downtime "$root" a "$old" "$work/poll-$label" b c &
  poller=$!
  bg_pids+=("$poller")
  timed up_us "$work/upgrade-$label" "$ctcli" --root "$root" upgrade -y "$pkg"
  wait "$poller" || die "downtime poller ($label): $(cat "$work/poll-$label")"
  read -r t0 t1 newpid frozen_us <"$work/poll-$label"
  dt_us=$((t1 - t0))
  state=$(runc_pid "$root" a)
  [[ $state == "$newpid" ]] ||
    die "after 'ctcli --root $root upgrade -y $pkg': runc state of a says pid '$state', the poller saw $newpid"
  after=$(status_pids "$root")
  if [[ $(grep -v '^a=' <<<"$before") == $(grep -v '^a=' <<<"$after") ]]; then kept=yes; else kept=no; fi
  echo "$label upgrade: pids before [$(tr '\n' ' ' <<<"$before")] after [$(tr '\n' ' ' <<<"$after")]" >>"$work/pids.log"
  grep -q '^a=[0-9]' <<<"$after" || die "after the $label upgrade: status --json does not show a running"
}

say "2. upgrade downtime: big package (a changed, b and c unchanged)"
measure_upgrade "$big" "$pkgs/big2.tar.gz" big
put upgrade_big_downtime_ms "$(us_to_ms "$dt_us")"
put upgrade_big_wall_s "$(us_to_s "$up_us")"
put upgrade_big_unchanged_kept_pids "$kept"
put upgrade_big_unchanged_max_frozen_ms "$(us_to_ms "$frozen_us")"

say "2. upgrade downtime: small package (3 upgrades, median)"
new_root small small
timed t "$work/install-small" "$ctcli" --root "$small" install "$pkgs/small1.tar.gz"
dts=() ups=() small_kept=yes small_frozen=0
for k in 2 3 4; do
  measure_upgrade "$small" "$pkgs/small$k.tar.gz" "small$k"
  dts+=("$dt_us") ups+=("$up_us")
  ((frozen_us > small_frozen)) && small_frozen=$frozen_us
  [[ $kept == yes ]] || small_kept=no
done
small_dt_us=$(printf '%s\n' "${dts[@]}" | median)
put upgrade_small_downtime_ms "$(us_to_ms "$small_dt_us")"
put upgrade_small_downtime_min_ms "$(us_to_ms "$(printf '%s\n' "${dts[@]}" | sort -n | head -n 1)")"
put upgrade_small_downtime_max_ms "$(us_to_ms "$(printf '%s\n' "${dts[@]}" | sort -n | tail -n 1)")"
put upgrade_small_wall_s "$(us_to_s "$(printf '%s\n' "${ups[@]}" | median)")"
put upgrade_small_unchanged_kept_pids "$small_kept"
put upgrade_small_unchanged_max_frozen_ms "$(us_to_ms "$small_frozen")"

# The big root is done with: free its disk and its containers now.
retire_root "$big"

# --------------------------------------------------------------- 4. status
# status_time ROOT -> median wall time of `status --json` in microseconds
status_time() {
  local root=$1 i a b rc samples=()
  "$ctcli" --root "$root" status --json >/dev/null # warm-up
  if ((have_hyperfine)); then
    hyperfine -N --warmup 3 --runs "$status_runs" --export-json "$work/hf.json" \
      "$ctcli --root $root status --json" >/dev/null 2>&1 || die "hyperfine failed on ctcli --root $root status --json"
    lua5.4 "$work/json.lua" hyperfine "$work/hf.json"
    return
  fi
  for ((i = 0; i < status_runs; i++)); do
    rc=0
    a=${EPOCHREALTIME/./}
    "$ctcli" --root "$root" status --json >/dev/null 2>"$work/status.err" || rc=$?
    b=${EPOCHREALTIME/./}
    ((rc == 0)) || { cat "$work/status.err" >&2; die "ctcli --root $root status --json failed (exit $rc)"; }
    samples+=($((b - a)))
  done
  printf '%s\n' "${samples[@]}" | median
}

say "4. status --json with 3 and 10 running apps ($status_runs runs each)"
all_running "$small" a b c || die "status: not every app of $small is running"
st3_us=$(status_time "$small")
new_root ten ten
timed t "$work/install-ten" "$ctcli" --root "$ten" install "$pkgs/ten.tar.gz"
all_running "$ten" "${ten_apps[@]}" || die "after 'ctcli --root $ten install ten': not every app is running"
st10_us=$(status_time "$ten")
put status_3apps_ms "$(us_to_ms "$st3_us")"
put status_10apps_ms "$(us_to_ms "$st10_us")"
put status_method "$( ((have_hyperfine)) && echo "hyperfine median of $status_runs" || echo "median of $status_runs runs")"
retire_root "$ten"
retire_root "$small"

# ----------------------------------------------------------------- 3. stop
say "3. stop of 3 apps that ignore SIGTERM (stop timeout 10 s)"
new_root term term
timed t "$work/install-term" "$ctcli" --root "$term" install "$pkgs/term.tar.gz"
all_running "$term" a b c || die "after 'ctcli --root $term install term': not every app is running"
sleep 1 # let run.sh install its TERM trap
timed stop_us "$work/stop-term" "$ctcli" --root "$term" stop
for a in a b c; do
  [[ -z $(runc_pid "$term" "$a") ]] || die "after 'ctcli --root $term stop': $a still runs"
done
put stop_3_ignore_term_s "$(us_to_s "$stop_us")"
retire_root "$term"

# ------------------------------------------------------------------ report
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
fs=$(df -PT "$work" | awk 'NR == 2 { print $2 }')
read -r load1 _ </proc/loadavg
put loadavg_end "$load1"
put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put machine "$(uname -sr), $(nproc) x ${cpu:-unknown CPU}, ${mem_gib} GiB RAM, $fs temp dir"
put ctcli "$ctcli"
put runc_version "$(runc --version | head -n 1)"
put umoci_version "$(umoci --version)"

v() { echo "${results[$1]:-n/a}"; }
{
  echo
  echo "ctcli lifecycle benchmark — $(v date) — $(v machine)"
  echo "1-min load average: $(v loadavg_start) at the start, $(v loadavg_end) at the end (other work on the host skews the figures)"
  echo "packages: small $(v small_pkg_mib) MiB (3 apps, no payload), big $(v big_pkg_mib) MiB (3 apps x 100 MiB payload), gzip"
  echo
  printf '%-48s %14s %14s %8s\n' "measure" "ctcli" "baseline" "ratio"
  printf '%-48s %14s %14s %8s\n' "-------" "-----" "--------" "-----"
  row() { printf '%-48s %14s %14s %8s\n' "$@"; }
  row "install, small pkg (median of $small_runs) [s]" "$(v install_small_ctcli_s)" "$(v install_small_baseline_s)" "$(v install_small_ratio)"
  row "install --no-start, small pkg (median) [s]" "$(v install_small_nostart_s)" "$(v install_small_baseline_s)" "$(v install_small_nostart_ratio)"
  row "install, big pkg [s]" "$(v install_big_ctcli_s)" "$(v install_big_baseline_s)" "$(v install_big_ratio)"
  row "install --no-start, big pkg [s]" "$(v install_big_nostart_s)" "$(v install_big_baseline_s)" "$(v install_big_nostart_ratio)"
  row "upgrade -y, small pkg: downtime of a [ms]" "$(v upgrade_small_downtime_ms)" "" ""
  row "  (min / max of 3) [ms]" "$(v upgrade_small_downtime_min_ms) / $(v upgrade_small_downtime_max_ms)" "" ""
  row "  upgrade wall time [s]" "$(v upgrade_small_wall_s)" "" ""
  row "  unchanged b, c kept their pids" "$(v upgrade_small_unchanged_kept_pids)" "" ""
  row "  unchanged b, c: longest frozen [ms]" "$(v upgrade_small_unchanged_max_frozen_ms)" "" ""
  row "upgrade -y, big pkg: downtime of a [ms]" "$(v upgrade_big_downtime_ms)" "" ""
  row "  upgrade wall time [s]" "$(v upgrade_big_wall_s)" "" ""
  row "  unchanged b, c kept their pids" "$(v upgrade_big_unchanged_kept_pids)" "" ""
  row "  unchanged b, c: longest frozen [ms]" "$(v upgrade_big_unchanged_max_frozen_ms)" "" ""
  row "stop, 3 apps ignoring SIGTERM (timeout 10 s) [s]" "$(v stop_3_ignore_term_s)" "" ""
  row "status --json, 3 running apps [ms]" "$(v status_3apps_ms)" "" ""
  row "status --json, 10 running apps [ms]" "$(v status_10apps_ms)" "" ""
  row "backup (zstd) vs tar -czf: time [s]" "$(v backup_zstd_s)" "$(v tar_czf_s)" "$(v backup_zstd_vs_tar_czf_time_ratio)"
  row "backup (zstd) vs tar -czf: size [MiB]" "$(v backup_zstd_mib)" "$(v tar_czf_mib)" "$(v backup_zstd_vs_tar_czf_size_ratio)"
  row "backup --gzip vs tar -czf: time [s]" "$(v backup_gzip_s)" "$(v tar_czf_s)" "$(v backup_gzip_vs_tar_czf_time_ratio)"
  row "backup --gzip vs tar -czf: size [MiB]" "$(v backup_gzip_mib)" "$(v tar_czf_mib)" "$(v backup_gzip_vs_tar_czf_size_ratio)"
  row "  (tar | zstd -T0 -3: time [s] / size [MiB])" "" "$(v tar_zstd_s) / $(v tar_zstd_mib)" ""
  row "  (input: release + images + config + data) [MiB]" "" "$(v backup_input_mib)" ""
  row "peak RSS, big install: ctcli VmHWM [MiB]" "$(v install_big_ctcli_vmhwm_mib)" "" ""
  row "  /usr/bin/time max RSS (incl. children) [MiB]" "$(v install_big_time_maxrss_mib)" "" ""
  row "peak RSS, big backup: ctcli VmHWM [MiB]" "$(v backup_big_ctcli_vmhwm_mib)" "" ""
  row "  /usr/bin/time max RSS (incl. children) [MiB]" "$(v backup_big_time_maxrss_mib)" "" ""
  echo
  echo "baseline for install: tar -xzf + one umoci unpack per app, sequential; ratio = ctcli / baseline."
  echo "install includes ctcli's zero backup (zstd) and, without --no-start, starting the apps and their health"
  echo "checks (mkpkg's: waitFor 1 s each); upgrade includes the pre-upgrade backup and the changed app's health check."
  echo "downtime: the changed app first frozen by the backup (or, unpaused, its old init gone) -> its new"
  echo "  container running (polled every ~2 ms): pause + stop + start."
  echo "status: $(v status_method)."
  ((have_time)) || echo "/usr/bin/time not found (package 'time'): only ctcli's own VmHWM is reported."
} | tee "$work/report.txt"

if [[ -n $json_out ]]; then
  {
    printf '{\n'
    n=${#results_keys[@]}
    for ((i = 0; i < n; i++)); do
      k=${results_keys[i]} val=${results[${results_keys[i]}]}
      if [[ $val =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then jv=$val
      elif [[ $val == yes ]]; then jv=true
      elif [[ $val == no ]]; then jv=false
      else jv=$(lua5.4 "$work/json.lua" string "$val")
      fi
      sep=,
      ((i < n - 1)) || sep=""
      printf '  "%s": %s%s\n' "$k" "$jv" "$sep"
    done
    printf '}\n'
  } >"$json_out.tmp"
  mv -f -- "$json_out.tmp" "$json_out"
  say "figures written to $json_out"
fi
