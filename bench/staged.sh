#!/usr/bin/env bash
# staged.sh — the time of a staged cutover against `upgrade PKG`.
#
#   sudo bench/staged.sh [--ctcli PATH] [--payload MIB] [--runs N]
#
# Two roots get the same large package (3 apps x MIB MiB of incompressible
# payload, default 100, health checks off); then the next package (app a
# changed, b and c unchanged) goes in, on one root with `upgrade -y PKG`, on
# the other with `stage PKG` then `upgrade -y --staged`. Each upgrade runs
# with -v, whose "step upgrade:<step> at <monotonic s>" lines (the journal's
# steps, ctcli's own clock) give the time of each step. "ctcli work" is the
# command's wall time less its backup step (the changed apps' configs and
# data) and its stop and start steps (the apps' own stop and start): the
# figure issue 15 asks to be <= 0.2 s for a staged cutover. With --runs N the
# two upgrades run N times each (back and forth between the packages, on
# the same roots: rollback is not timed) and the medians are printed.
#
# Needs root, bash >= 5, runc, umoci, lua5.4 with lua-cjson (mkpkg). Without
# --ctcli it builds Release with scripts/build.sh. Everything happens under
# one mktemp -d directory; on exit every app of its roots is stopped, their
# containers deleted by id, and the directory removed.
set -euo pipefail
export LC_ALL=C

prog=staged.sh
here=$(cd "$(dirname "$0")/.." && pwd)
mkpkg=$here/tests/support/mkpkg
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

ctcli="" payload=100 runs=1
while (($#)); do
  case $1 in
    --ctcli) (($# >= 2)) || die "--ctcli needs a path"; ctcli=$2; shift 2 ;;
    --payload) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--payload needs MiB"; payload=$2; shift 2 ;;
    --runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"; runs=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || die "run as root: the apps run as real runc containers"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is needed (EPOCHREALTIME)"
if [[ -z $ctcli ]]; then
  say "building Release with scripts/build.sh"
  build_dir=$("$here/scripts/build.sh" Release) || die "the Release build failed; pass --ctcli PATH"
  ctcli=$build_dir/ctcli
fi
[[ -x $ctcli ]] || die "$ctcli: not an executable"
ctcli=$(realpath "$ctcli")

tmp_base=$(realpath "${TMPDIR:-/tmp}")
work=$(mktemp -d "$tmp_base/ctcli-bench-staged.XXXXXX")
chmod 711 "$work"
roots=()
cleanup() {
  local rc=$? r id f p
  set +e
  trap - EXIT INT TERM
  # Every root made here (new_root runs in a command substitution, so its
  # roots+= never reaches this shell): found by their marker.
  for r in "$work"/*/; do
    r=${r%/}
    [[ -e $r/.ctcli-init ]] && roots+=("$r")
  done
  for r in "${roots[@]}"; do
    [[ -e $r/current-release ]] && "$ctcli" --root "$r" stop --force >/dev/null 2>&1
    # A monitor still alive would restart the container deleted below.
    for f in "$r"/state/runs/*/state.json; do
      [[ -f $f ]] || continue
      p=$(lua5.4 -e 'local t = require("cjson").decode(io.open(arg[1]):read("a")) print(t.monitor_pid or "")' "$f" 2>/dev/null)
      [[ $p =~ ^[0-9]+$ ]] && grep -q __ctcli-monitor__ "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
    done
    if [[ -d $r/runc-root ]]; then
      for id in $(runc --root "$r/runc-root" list -q 2>/dev/null); do
        runc --root "$r/runc-root" delete --force "$id" >/dev/null 2>&1
      done
    fi
  done
  case $work in "$tmp_base"/ctcli-bench-staged.?*) rm -rf -- "$work" ;; esac
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export CTCLI_SUBID_DIR=$work/subid
mkdir -p "$CTCLI_SUBID_DIR"

build_pkg() { # name mkpkg-args...
  local name=$1; shift
  mkdir -p "$work/w-$name"
  "$mkpkg" --out "$work/$name.tar.gz" --workdir "$work/w-$name" "$@" >"$work/mkpkg-$name.log" 2>&1 ||
    { cat "$work/mkpkg-$name.log" >&2; die "mkpkg failed for $name"; }
}
say "building the packages (3 apps x $payload MiB)"
build_pkg v1 --version 1.0.0 --app "a:payload=$payload,health=none" --app "b:payload=$payload,health=none" \
  --app "c:payload=$payload,health=none"
build_pkg v2 --version 1.0.0 --app "a:version=1.1.0,mark=two,payload=$payload,health=none" \
  --app "b:payload=$payload,health=none" --app "c:payload=$payload,health=none"
pkg_mib=$(( $(stat -c %s "$work/v2.tar.gz") / 1048576 ))

new_root() { # name -> path
  local r=$work/$1
  "$ctcli" --root "$r" init >/dev/null
  roots+=("$r")
  "$ctcli" --root "$r" -y install "$work/v1.tar.gz" >/dev/null
  echo "$r"
}

# measure LOG WALL -> "wall backup stop start work" (seconds) from the -v step lines
measure() {
  awk -v wall="$2" '
    /^step upgrade:[a-z_]+ at / { split($2, a, ":"); n++; name[n] = a[2]; t[n] = $4 }
    END {
      for (i = 1; i < n; i++) d[name[i]] += t[i + 1] - t[i]
      w = wall - d["backup"] - d["stop"] - d["start"]
      printf "%.3f %.3f %.3f %.3f %.3f\n", wall, d["backup"], d["stop"], d["start"], w
    }' "$1"
}
timed() { # log cmd... -> wall seconds
  local log=$1 t0 t1; shift
  t0=$EPOCHREALTIME
  "$@" >"$log.out" 2>"$log" || { cat "$log" >&2; die "failed: $*"; }
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

say "roots"
plain=$(new_root plain)
staged=$(new_root staged)
: >"$work/plain.rows"; : >"$work/staged.rows"; : >"$work/stage.walls"
for ((i = 1; i <= runs; i++)); do
  say "run $i/$runs: upgrade PKG"
  w=$(timed "$work/plain-$i.log" "$ctcli" --root "$plain" -v -y upgrade "$work/v2.tar.gz")
  measure "$work/plain-$i.log" "$w" >>"$work/plain.rows"
  say "run $i/$runs: stage PKG, then upgrade --staged"
  timed "$work/stage-$i.log" "$ctcli" --root "$staged" stage "$work/v2.tar.gz" >>"$work/stage.walls"
  w=$(timed "$work/staged-$i.log" "$ctcli" --root "$staged" -v -y upgrade --staged)
  grep -q "unpacking" "$work/staged-$i.log.out" && die "upgrade --staged unpacked an image"
  measure "$work/staged-$i.log" "$w" >>"$work/staged.rows"
  if ((i < runs)); then
    "$ctcli" --root "$plain" -y rollback >/dev/null
    "$ctcli" --root "$staged" -y rollback >/dev/null
    "$ctcli" --root "$plain" prune --keep 1 >/dev/null
    "$ctcli" --root "$staged" prune --keep 1 >/dev/null
  fi
done

col() { awk -v c="$2" '{ print $c }' "$1" | median; }
echo
echo "package: $pkg_mib MiB (3 apps x $payload MiB, app a changed); medians of $runs run(s); seconds"
printf '%-28s %10s %10s %10s %10s %12s\n' "" "wall" "backup" "stop" "start" "ctcli work"
printf '%-28s %10s %10s %10s %10s %12s\n' "upgrade PKG" "$(col "$work/plain.rows" 1)" "$(col "$work/plain.rows" 2)" \
  "$(col "$work/plain.rows" 3)" "$(col "$work/plain.rows" 4)" "$(col "$work/plain.rows" 5)"
printf '%-28s %10s %10s %10s %10s %12s\n' "stage PKG (apps running)" "$(median <"$work/stage.walls")" "-" "-" "-" "-"
printf '%-28s %10s %10s %10s %10s %12s\n' "upgrade --staged" "$(col "$work/staged.rows" 1)" \
  "$(col "$work/staged.rows" 2)" "$(col "$work/staged.rows" 3)" "$(col "$work/staged.rows" 4)" \
  "$(col "$work/staged.rows" 5)"
echo "ctcli work = wall - backup - stop - start (goal for upgrade --staged: <= 0.2 s)"
