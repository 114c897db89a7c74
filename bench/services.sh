#!/usr/bin/env bash
# Figures are stored through `printf -v NAME`, which shellcheck cannot follow.
# shellcheck disable=SC2154
#
# services.sh — ctcli with real Debian services (PostgreSQL 15 holding about
# 50 MB of rows, Redis, nginx; tests/support/mksvcpkg): install, backup and
# upgrade time against tar of the same data, and what each upgrade costs the
# services, seen by clients probing them every 10 ms.
#
# usage: bench/services.sh [--ctcli PATH] [--rows N] [--ports P,R,N]
#
#   --ctcli PATH   the ctcli binary (default: build Release with scripts/build.sh)
#   --rows N       rows of ~480 bytes loaded into PostgreSQL (default 100000,
#                  about 50 MB with the index)
#   --ports P,R,N  PostgreSQL, Redis and nginx ports (default: a free triple)
#
# Measured:
#   1. install of the package (3 images, ~200 MB, zstd) vs `tar --zstd -xf` + one
#      `umoci unpack` per image, one after another;
#   2. `backup` (zstd) with the rows in, vs `tar -czf` and `tar | zstd -T0 -3`
#      of the same directories (the release, the apps' images, config/, data/);
#   3. `upgrade -y` changing PostgreSQL only (an env entry), then one changing
#      Redis only: wall time, and per service the longest stretch its probe
#      failed (downtime) and the slowest probe answer (a pause shows here),
#      with the unchanged services' pids compared before and after.
# Probes (bash /dev/tcp, no fork per probe, every 10 ms, 2 s answer limit):
# PostgreSQL: an SSLRequest answered with one byte; Redis: PING -> +PONG;
# nginx: GET / -> 200.  Reading a probe: downtime is the changed app's outage
# as a client sees it (pause + stop + start + its recovery); an unchanged
# app must show no failed probe.
#
# Needs root, bash >= 5, runc, umoci, tar, gzip, zstd, lua5.4 with
# lua-cjson and what mksvcpkg needs (mmdebstrap on a cold image cache).
# Everything happens under one `mktemp -d` directory removed on exit, after
# the root's apps are stopped and its containers deleted by id.
set -euo pipefail
export LC_ALL=C

prog=services.sh
here=$(cd "$(dirname "$0")/.." && pwd)
mksvcpkg=$here/tests/support/mksvcpkg

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

ctcli="" rows=100000 ports=""
while (($#)); do
  case $1 in
    --ctcli) (($# >= 2)) || die "--ctcli needs a path"; ctcli=$2; shift 2 ;;
    --rows) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--rows needs a number"; rows=$2; shift 2 ;;
    --ports) [[ ${2:-} =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || die "--ports needs P,R,N"; ports=$2; shift 2 ;;
    -h | --help) sed -n '/^# services.sh/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

[[ $(id -u) == 0 ]] || die "run as root: the apps run as real runc containers"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
for t in runc umoci tar gzip zstd lua5.4; do
  command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh installs what is missing)"
done
if [[ -z $ctcli ]]; then
  say "building Release with scripts/build.sh"
  build_dir=$("$here/scripts/build.sh" Release) || die "the Release build failed; pass --ctcli PATH"
  ctcli=$build_dir/ctcli
fi
[[ -x $ctcli ]] || die "$ctcli: not an executable"
ctcli=$(realpath "$ctcli")

tmp_base=$(realpath "${TMPDIR:-/tmp}")
work=$(mktemp -d "$tmp_base/ctcli-bench-svc.XXXXXX")
# Searchable by all: a root's apps run as ids of its user-namespace range,
# which must reach the root's images through this directory.
chmod 711 "$work"
root=$work/root
probe_pids=()

cleanup() {
  local rc=$? id p
  set +e
  trap - EXIT INT TERM
  for p in "${probe_pids[@]}"; do
    if [[ -e /proc/$p ]]; then kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  done
  if [[ -e $root/current-release ]]; then
    "$ctcli" --root "$root" stop --force >/dev/null 2>&1 || echo "$prog: cleanup: stop --force failed" >&2
  fi
  if [[ -d $root/runc-root ]]; then
    for id in $(runc --root "$root/runc-root" list -q 2>/dev/null); do
      runc --root "$root/runc-root" delete --force "$id" >/dev/null 2>&1 ||
        echo "$prog: cleanup: runc delete --force $id failed" >&2
    done
  fi
  case $work in "$tmp_base"/ctcli-bench-svc.?*) rm -rf -- "$work" ;; esac
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A fifo held open read-write: `read -t` on it sleeps without a fork.
mkfifo "$work/sleep.fifo"
exec {sleep_fd}<>"$work/sleep.fifo"
nap() { read -r -t "$1" -u "$sleep_fd" _ || true; }

us() { printf '%s' "${EPOCHREALTIME/./}"; }
s3() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# timed VAR CMD... — CMD's wall time in microseconds into VAR (output to
# $work/last.out and last.err; a failure stops the bench with them).
timed() {
  local __v=$1 __a __b __rc=0
  shift
  __a=$(us)
  "$@" >"$work/last.out" 2>"$work/last.err" || __rc=$?
  __b=$(us)
  if ((__rc)); then tail -n 30 "$work/last.out" "$work/last.err" >&2; die "FAILED (exit $__rc): $*"; fi
  printf -v "$__v" %d $((__b - __a))
}

# ------------------------------------------------------------- ports, packages
free_triple() {
  local base used
  used=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
  for _ in $(seq 100); do
    base=$((20000 + 3 * (RANDOM % 10000)))
    if ! grep -qxE "$base|$((base + 1))|$((base + 2))" <<<"$used"; then
      echo "$base,$((base + 1)),$((base + 2))"
      return
    fi
  done
  die "no free ports"
}
[[ -n $ports ]] || ports=$(free_triple)
IFS=, read -r pg_port redis_port nginx_port <<<"$ports"

say "building the packages (mksvcpkg; a cold image cache builds Debian roots: minutes)"
pkgargs=(--images "$work/images" --workdir "$work" --ports "$ports")
"$mksvcpkg" --out "$work/v1.tar.zst" --version 1.0.0 "${pkgargs[@]}"
"$mksvcpkg" --out "$work/v2.tar.zst" --version 1.1.0 --app-version redis:1.0.0 --app-version nginx:1.0.0 \
  --env postgres:SERVICE_MARK=pg-two "${pkgargs[@]}"
"$mksvcpkg" --out "$work/v3.tar.zst" --version 1.2.0 --app-version postgres:1.1.0 --app-version nginx:1.0.0 \
  --env postgres:SERVICE_MARK=pg-two --env redis:SERVICE_MARK=redis-three "${pkgargs[@]}"

# ------------------------------------------------------------------ probes
# probe NAME PORT — every 10 ms one request; a line "START_US END_US ok|fail"
# per probe to $work/probe-NAME.log, until killed.
probe() {
  local name=$1 port=$2 fd a b line res
  exec >"$work/probe-$name.log" 2>/dev/null
  while :; do
    a=$(us) res=fail line=""
    if exec {fd}<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      case $name in
        postgres)
          printf '\x00\x00\x00\x08\x04\xd2\x16\x2f' >&"$fd" &&
            read -r -t 2 -N 1 -u "$fd" line && [[ $line == [NS] ]] && res=ok ;;
        redis)
          printf 'PING\r\n' >&"$fd" &&
            read -r -t 2 -u "$fd" line && [[ $line == +PONG* ]] && res=ok ;;
        nginx)
          printf 'GET / HTTP/1.0\r\n\r\n' >&"$fd" &&
            read -r -t 2 -u "$fd" line && [[ $line == *" 200 "* ]] && res=ok ;;
      esac
      exec {fd}>&-
    fi
    b=$(us)
    echo "$a $b $res"
    nap 0.01
  done
}

start_probes() {
  probe_pids=()
  probe postgres "$pg_port" & probe_pids+=($!)
  probe redis "$redis_port" & probe_pids+=($!)
  probe nginx "$nginx_port" & probe_pids+=($!)
  nap 0.3
}
stop_probes() {
  local p
  for p in "${probe_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  probe_pids=()
}

# probe_summary NAME -> "probes failed down_ms slowest_ms gap_ms out_ms":
# down is the longest stretch from a failed probe's start to the next good
# probe's end; gap the longest time between two good answers' ends (a
# pause, a stop and a start all show here, failed probes or not); out the
# sum of the gaps over GAP_OUT_MS: the app's whole outage, pause + stop +
# start as clients see it.
GAP_OUT_MS=100
probe_summary() {
  awk -v limit=$((GAP_OUT_MS * 1000)) '{ n++; lat = $2 - $1; if (lat > slow) slow = lat
         if ($3 == "fail") { f++; if (!down_from) down_from = $1 }
         else {
           if (down_from) { d = $2 - down_from; if (d > down) down = d; down_from = 0 }
           if (last) { g = $2 - last; if (g > gap) gap = g; if (g > limit) out += g }
           last = $2 } }
       END { if (down_from) down = -1
             printf "%d %d %s %.1f %.1f %.1f\n", n, f, down < 0 ? "never-back" : sprintf("%.1f", down / 1000), slow / 1000,
               gap / 1000, out / 1000 }' \
    "$work/probe-$1.log"
}

# probe_line NAME -> "F failed, down D ms, slowest S ms, gap G ms, out O ms" for the table.
probe_line() {
  local f d sl g o
  read -r _ f d sl g o <<<"$(probe_summary "$1")"
  [[ $d == never-back ]] && d="not back when the probes stopped" || d="down $d ms"
  printf '%s failed, %s, slowest %s ms, longest gap %s ms, out %s ms' "$f" "$d" "$sl" "$g" "$o"
}

pids() { "$ctcli" --root "$root" --json status | lua5.4 -e '
  local d = require("cjson").decode(io.read("a"))
  for _, a in ipairs(d.apps) do io.write(a.name, "=", tostring(a.pid), " ") end'; }

psql() {
  "$ctcli" --root "$root" exec postgres /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$pg_port" \
    -U postgres -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"
}

# ------------------------------------------------------------------ 1. install
say "install"
"$ctcli" --root "$root" init >/dev/null
timed t_install "$ctcli" --root "$root" install "$work/v1.tar.zst"
mkdir -p "$work/base"
b_a=$(us)
tar -C "$work/base" --zstd -xf "$work/v1.tar.zst"
for app in postgres redis nginx; do
  umoci unpack --image "$work/base/images/$app:$app" "$work/base/unpacked-$app" >/dev/null
done
b_b=$(us)
t_install_base=$((b_b - b_a))
rm -rf "$work/base"

# ------------------------------------------------------------------ data
say "loading $rows rows into PostgreSQL"
psql "CREATE TABLE big (id integer PRIMARY KEY, v text NOT NULL)" >/dev/null
psql "INSERT INTO big SELECT i, repeat(md5(i::text), 14) FROM generate_series(1, $rows) AS i" >/dev/null
psql "CHECKPOINT" >/dev/null
pg_bytes=$(psql "SELECT pg_total_relation_size('big')")
data_bytes=$(du -sb "$root/data" | cut -f1)

# ------------------------------------------------------------------ 2. backup
say "backup"
start_probes
timed t_backup "$ctcli" --root "$root" --json backup
nap 0.5
stop_probes
for s in postgres redis nginx; do
  printf -v "bk_$s" '%s' "$(probe_line "$s")"
done
backup_file=$(lua5.4 -e 'print(require("cjson").decode(io.read("a")).path)' <"$work/last.out")
backup_bytes=$(stat -c %s "$backup_file")
rel=$(readlink "$root/current-release")
parts=("${rel#"$root"/}" config data)
for d in "$root"/images/*/; do parts+=("images/$(basename "$d")"); done
# tar of live data: PostgreSQL may write while it reads (GNU tar's exit 1);
# the baseline, like a backup, must not fail on that.
live_tar() { tar --warning=no-file-changed --warning=no-file-ignored "$@" || (($? == 1)); }
timed t_tgz live_tar -C "$root" -czf "$work/base.tar.gz" "${parts[@]}"
tgz_bytes=$(stat -c %s "$work/base.tar.gz")
rm -f "$work/base.tar.gz"
# shellcheck disable=SC2016 # the inner sh's arguments
timed t_tzst bash -c 'tar --warning=no-file-changed --warning=no-file-ignored -C "$1" -cf - "${@:2}" | zstd -q -T0 -3 >"$0"' \
  "$work/base.tar.zst" "$root" "${parts[@]}"
tzst_bytes=$(stat -c %s "$work/base.tar.zst")
rm -f "$work/base.tar.zst"

# ------------------------------------------------------------------ 3. upgrades
upgrade() { # LABEL PKG CHANGED
  local label=$1 pkg=$2 changed=$3 before after s
  before=$(pids)
  start_probes
  timed "t_up_$label" "$ctcli" --root "$root" -y upgrade "$pkg"
  nap 0.5
  stop_probes
  after=$(pids)
  for s in postgres redis nginx; do
    printf -v "up_${label}_${s}" '%s' "$(probe_line "$s")"
  done
  local b a kept=""
  for b in $before; do
    for a in $after; do
      [[ ${a%%=*} == "${b%%=*}" && ${a%%=*} != "$changed" ]] || continue
      [[ $a == "$b" ]] && kept+="${a%%=*} kept its pid; " || kept+="${a%%=*} RESTARTED; "
    done
  done
  printf -v "kept_$label" '%s' "$kept"
}
say "upgrade changing PostgreSQL"
upgrade pg "$work/v2.tar.zst" postgres
say "upgrade changing Redis"
upgrade redis "$work/v3.tar.zst" redis
[[ $(psql "SELECT count(*) FROM big") == "$rows" ]] || die "rows lost across the upgrades"

# ------------------------------------------------------------------ report
cat <<EOF

ctcli with real services ($(nproc) CPUs; PostgreSQL table $(mib "$pg_bytes") MiB, data/ $(mib "$data_bytes") MiB)

| figure | ctcli | baseline | ratio |
| --- | --- | --- | --- |
| install (3 images, start, health) | $(s3 "$t_install") s | tar --zstd -xf + 3x umoci unpack: $(s3 "$t_install_base") s | $(ratio "$t_install" "$t_install_base") |
| backup | $(s3 "$t_backup") s, $(mib "$backup_bytes") MiB | tar -czf: $(s3 "$t_tgz") s, $(mib "$tgz_bytes") MiB | $(ratio "$t_backup" "$t_tgz") |
| backup vs tar \| zstd -T0 -3 | | $(s3 "$t_tzst") s, $(mib "$tzst_bytes") MiB | $(ratio "$t_backup" "$t_tzst") |
| upgrade changing PostgreSQL | $(s3 "$t_up_pg") s | tar -czf of the same data | $(ratio "$t_up_pg" "$t_tgz") |
| upgrade changing Redis | $(s3 "$t_up_redis") s | tar -czf of the same data | $(ratio "$t_up_redis" "$t_tgz") |

Probes every 10 ms (failed probes, longest outage, slowest answer, longest gap between two
good answers, outage = sum of the gaps over ${GAP_OUT_MS} ms: pause + stop + start as clients see it):

| during | postgres | redis | nginx |
| --- | --- | --- | --- |
| backup | $bk_postgres | $bk_redis | $bk_nginx |
| upgrade changing PostgreSQL | $up_pg_postgres | $up_pg_redis | $up_pg_nginx |
| upgrade changing Redis | $up_redis_postgres | $up_redis_redis | $up_redis_nginx |

Unchanged apps: PostgreSQL upgrade: $kept_pg
Redis upgrade: $kept_redis
EOF
