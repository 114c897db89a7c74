#!/usr/bin/env bash
# lean.sh — issue 17's figures: start-up, status, install, pack, backup and
# peak memory, each beside its floor measured in the same run.
#
# usage: bench/lean.sh [--ctcli BIN] [--payload-mb N] [--runs R] [--install-only]
#
#   --ctcli BIN      the binary to measure (default: scripts/build.sh Release)
#   --payload-mb N   MiB of incompressible payload per app of the big
#                    package (3 apps; default 100)
#   --runs R         runs of the quick measures (median; default 31)
#   --install-only   only install --no-start against its floor, R runs each
#                    (median; ctcli and the floor alternate, fresh root each)
#
# Floors: `bsdtar --version` (the same dynamic libraries) for start-up;
# `runc list` on the same runc-root for status; `tar -xf` of the package plus
# one `umoci unpack` per image in parallel for install --no-start; `tar
# --zstd -cf` of the same directory for pack; `tar -cf - | zstd -T0` of the
# trees a backup reads for backup. Peak RSS is /usr/bin/time's maximum
# resident set of ctcli itself (children such as runc not counted), for a
# small and the big package: flat means it does not grow with the package.
# Everything lives under one mktemp -d directory, removed on exit after the
# roots made here are deleted through ctcli.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
ctcli="" payload=100 runs=31 install_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --ctcli) ctcli=$2; shift 2 ;;
    --payload-mb) payload=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --install-only) install_only=1; shift ;;
    *) echo "usage: bench/lean.sh [--ctcli BIN] [--payload-mb N] [--runs R] [--install-only]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "lean.sh: run as root (real containers)" >&2; exit 1; }
for t in bsdtar runc umoci tar zstd /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "lean.sh: $t not found (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -n "$ctcli" ] || ctcli=$("$here/scripts/build.sh" Release)/ctcli
ctcli=$(realpath "$ctcli")
T=$(mktemp -d); chmod 711 "$T"
export CTCLI_SUBID_DIR=$T/subid; mkdir -p "$CTCLI_SUBID_DIR"
roots=()
cleanup() {
  for r in "${roots[@]}"; do "$ctcli" --root "$r" -y delete >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms_pair() { # ms_pair N CMD_A(N words) CMD_B... -> "msA msB": medians of $runs runs each,
  # alternating A and B so a load that changes during the measure skews both alike
  local n=$1; shift
  local a=("${@:1:n}") b=("${@:n+1}") s e
  : > "$T/a.ms"; : > "$T/b.ms"
  for _ in $(seq 1 "$runs"); do
    s=$(date +%s%N); "${a[@]}" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$T/a.ms"
    s=$(date +%s%N); "${b[@]}" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )) >> "$T/b.ms"
  done
  echo "$(median < "$T/a.ms" | awk '{printf "%.2f", $1 / 1000}') $(median < "$T/b.ms" | awk '{printf "%.2f", $1 / 1000}')"
}
once() { # once CMD... -> "seconds peakKiB" of one run
  /usr/bin/time -f "%e %M" -o "$T/time.out" "$@" >/dev/null 2>"$T/err.out" || {
    echo "lean.sh: failed: $*" >&2; cat "$T/err.out" >&2; exit 1; }
  cat "$T/time.out"
}
row() { # row MEASURE CTCLI FLOOR
  printf '| %-52s | %10s | %10s | %6s |\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }')"
}
pkg() { # pkg OUT VERSION PAYLOAD [mark]
  local apps=() a
  local p=""
  [ "$3" -gt 0 ] && p="payload=$3,"
  for a in web worker cron; do apps+=(--app "$a:${p}health=none,mark=$4$a"); done
  "$here/tests/support/mkpkg" --out "$1" --format manifest --version "$2" "${apps[@]}" --workdir "$T/mk" >/dev/null
}
mkdir -p "$T/mk"
echo "== building packages (3 apps; $payload MiB each, and 0 MiB)" >&2
pkg "$T/big1.pkg" 1.0.0 "$payload" a
if [ "$install_only" = 0 ]; then
  pkg "$T/big2.pkg" 1.1.0 "$payload" b
  pkg "$T/small1.pkg" 1.0.0 0 a
  pkg "$T/small2.pkg" 1.1.0 0 b
fi

echo "| measure | ctcli | floor | ratio |"
echo "| --- | ---: | ---: | ---: |"
if [ "$install_only" != 1 ]; then
  read -r v_ms b_ms < <(ms_pair 2 "$ctcli" version bsdtar --version)
  row "start-up: version vs bsdtar --version [ms]" "$v_ms" "$b_ms"
fi

# install --no-start of the big package against tar + parallel umoci
R=$T/big; roots+=("$R"); "$ctcli" --root "$R" init >/dev/null
read -r inst_s inst_k < <(once "$ctcli" --root "$R" -y install --no-start "$T/big1.pkg")
mkdir -p "$T/floor"
floor_install() {
  tar -xf "$T/big1.pkg" -C "$T/floor"
  local pids=() img ref
  while read -r img ref; do
    umoci unpack --image "$T/floor/$img:$ref" "$T/floor/unpacked-$ref" >/dev/null 2>&1 & pids+=($!)
  done < <(lua5.4 -e '
    local cjson = require("cjson")
    local m = cjson.decode(io.open(arg[1]):read("a"))
    for _, a in ipairs(m.apps) do print(a.image.layout, a.image.ref) end' "$T/floor/manifest.json")
  wait "${pids[@]}"
}
floor_s() {
  local s
  s=$( { /usr/bin/time -f %e bash -c "$(declare -f floor_install); T=$T; floor_install" >/dev/null; } 2>&1 | tail -1)
  rm -rf "$T/floor"; mkdir -p "$T/floor"
  echo "$s"
}
if [ "$install_only" = 1 ]; then
  # R runs of each, alternating, each ctcli run into a fresh root. Also: the
  # zero backup's step alone (from -v's step times), and the floor followed
  # by a syncfs (ctcli's store is on disk when install returns; the floor's
  # files are only in the page cache).
  cs=() bs=() fls=() fds=()
  for i in $(seq 1 "$runs"); do
    Ri=$T/inst$i; roots+=("$Ri"); "$ctcli" --root "$Ri" init >/dev/null
    read -r s _ < <(once "$ctcli" --root "$Ri" -v -y install --no-start "$T/big1.pkg")
    cs+=("$s")
    bs+=("$(awk '$1 == "step" && $2 == "install:backup" {b = $4} $1 == "step" && $2 == "install:migrate" {m = $4}
      END {printf "%.3f", m - b}' "$T/err.out")")
    fls+=("$(floor_s)")
    fds+=("$( { /usr/bin/time -f %e bash -c "$(declare -f floor_install); T=$T; floor_install; sync -f '$T/floor'" \
      >/dev/null; } 2>&1 | tail -1)")
    rm -rf "$T/floor"; mkdir -p "$T/floor"
    "$ctcli" --root "$Ri" -y delete --purge >/dev/null 2>&1 || true
  done
  med() { printf '%s\n' "$@" | median; }
  c=$(med "${cs[@]}") b=$(med "${bs[@]}")
  row "install --no-start, 3 x $payload MiB, median of $runs [s]" "$c" "$(med "${fls[@]}")"
  row "  the same against the floor + syncfs [s]" "$c" "$(med "${fds[@]}")"
  row "  less its zero backup, against the floor + syncfs [s]" \
    "$(awk -v a="$c" -v b="$b" 'BEGIN{printf "%.2f", a - b}')" "$(med "${fds[@]}")"
  echo "(ctcli: ${cs[*]}; its backup step: ${bs[*]}; floor: ${fls[*]}; floor + syncfs: ${fds[*]})"
  exit 0
fi
fs=$(floor_s)
row "install --no-start, 3 x $payload MiB [s]" "$inst_s" "$fs"
rm -rf "$T/floor"

# status with 3 running apps against runc list
"$ctcli" --root "$R" start >/dev/null
read -r s_ms r_ms < <(ms_pair 5 "$ctcli" --root "$R" --json status runc --root "$R/runc-root" list --format json)
row "status --json, 3 running apps [ms]" "$s_ms" "$r_ms"

# backup against tar | zstd -T0 of what it reads
read -r bk_s bk_k < <(once "$ctcli" --root "$R" backup)
trees=()
for d in current-release images blobs config data uppers; do [ -e "$R/$d" ] && trees+=("$d/"); done
fb=$( { /usr/bin/time -f %e bash -c "tar -C '$R' -cf - ${trees[*]} | zstd -q -T0 > '$T/floor.tar.zst'" ; } 2>&1 | tail -1)
row "backup (zstd) [s]" "$bk_s" "$fb"

# upgrade (peak memory)
read -r _ up_k < <(once "$ctcli" --root "$R" -y upgrade "$T/big2.pkg")

# pack against tar --zstd of the same directory
mkdir -p "$T/dir"; tar -xf "$T/big1.pkg" -C "$T/dir"; rm -f "$T/dir/manifest.sig"
read -r pk_s _ < <(once "$ctcli" pack "$T/dir" -o "$T/repacked.pkg")
fp=$( { /usr/bin/time -f %e tar --zstd -cf "$T/floor.tar.zst" -C "$T/dir" . ; } 2>&1 | tail -1)
row "pack, 3 x $payload MiB [s]" "$pk_s" "$fp"

# the same commands on the small package: peak memory, flat in size?
S=$T/small; roots+=("$S"); "$ctcli" --root "$S" init >/dev/null
read -r _ si_k < <(once "$ctcli" --root "$S" -y install "$T/small1.pkg")
read -r _ sb_k < <(once "$ctcli" --root "$S" backup)
read -r _ su_k < <(once "$ctcli" --root "$S" -y upgrade "$T/small2.pkg")
echo
echo "| peak RSS of ctcli [MB] | small package | $payload MiB apps |"
echo "| --- | ---: | ---: |"
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
echo "| install | $(mb "$si_k") | $(mb "$inst_k") |"
echo "| upgrade | $(mb "$su_k") | $(mb "$up_k") |"
echo "| backup | $(mb "$sb_k") | $(mb "$bk_k") |"
