#!/usr/bin/env bash
# status.sh — `ctcli status --json` with N supervised apps, against its floor
# `runc list` on the same runc-root, in the same run (wall time, median).
#
# usage: bench/status.sh [--ctcli BIN] [--apps N] [--runs R]
#
# Builds a manifest package of N busybox apps with tests/support/mkpkg,
# installs it into a temp root (each app under its monitor), then times R
# runs of each command. Everything lives under one `mktemp -d` directory;
# the root is deleted through ctcli (its monitors told to stop first).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
ctcli=""; apps=10; runs=21
while [ $# -gt 0 ]; do
  case $1 in
    --ctcli) ctcli=$2; shift 2 ;;
    --apps) apps=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/status.sh [--ctcli BIN] [--apps N] [--runs R]" >&2; exit 2 ;;
  esac
done
[ -n "$ctcli" ] || ctcli=$("$here/scripts/build.sh" Release)/ctcli
T=$(mktemp -d); chmod 755 "$T"
export CTCLI_SUBID_DIR=$T/subid; mkdir -p "$CTCLI_SUBID_DIR"
R=$T/root
cleanup() { "$ctcli" --root "$R" -y delete >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
args=()
for i in $(seq 1 "$apps"); do args+=(--app "app$i:heartbeat=60"); done
"$here/tests/support/mkpkg" --out "$T/pkg.tar.gz" --format manifest "${args[@]}" --workdir "$T" >/dev/null
"$ctcli" --root "$R" init >/dev/null
"$ctcli" --root "$R" install "$T/pkg.tar.gz" >/dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_it() { # time_it CMD... -> median wall ms of $runs runs
  for _ in $(seq 1 "$runs"); do
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 ))
  done | median | awk '{printf "%.1f", $1 / 1000}'
}
c=$(time_it "$ctcli" --root "$R" --json status)
f=$(time_it runc --root "$R/runc-root" list --format json)
printf '%-46s %10s %10s %8s\n' measure ctcli floor ratio
printf '%-46s %10s %10s %8s\n' "status --json, $apps running apps [ms]" "$c" "$f" "$(awk -v a="$c" -v b="$f" 'BEGIN{printf "%.2f", a/b}')"
