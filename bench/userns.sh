#!/usr/bin/env bash
# userns.sh — the cost of the hardened defaults (user namespace, seccomp,
# cgroup namespace, confined log handling), measured side by side in one run.
#
# usage: bench/userns.sh [--ctcli PATH] [--runs N] [--payload-mb N]
#
# For a 3-app package (mkpkg, N MiB of payload per app, default 20), in fresh
# roots: `install --no-start` and a `start` of the 3 stopped apps, each with
# the default (a user namespace: the rootfs unpacked mapped, data/config/logs
# re-owned) and with every app opted out in <root>/ctcli.json. Floors run in
# the same invocation: `umoci unpack` of the three images with and without
# --uid-map (what install adds), and `runc run --detach` of the three bundles
# (what a start cannot go below). Medians of N runs (default 5).
#
# Needs root, runc, umoci, and what mkpkg needs. Everything is under one
# `mktemp -d`; on exit every root's apps are stopped and their containers
# deleted by id. The subordinate ids come from files in that directory
# (CTCLI_SUBID_DIR), so /etc/subuid is not touched.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/.." && pwd)
mkpkg=$here/tests/support/mkpkg
ctcli="" runs=5 payload=20
while (($#)); do
  case $1 in
    --ctcli) ctcli=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --payload-mb) payload=$2; shift 2 ;;
    *) echo "userns.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $ctcli ]] || ctcli=$("$here/scripts/build.sh" Release)/ctcli

work=$(mktemp -d)
chmod 711 "$work"
export CTCLI_SUBID_DIR=$work/subid
mkdir -p "$CTCLI_SUBID_DIR"
: >"$CTCLI_SUBID_DIR/subuid"
: >"$CTCLI_SUBID_DIR/subgid"
roots=()
cleanup() {
  local r id
  for r in "${roots[@]}"; do
    "$ctcli" --root "$r" stop --force >/dev/null 2>&1 || true
    for id in $(runc --root "$r/runc-root" list -q 2>/dev/null); do
      runc --root "$r/runc-root" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  for id in $(runc --root "$work/floor-runc" list -q 2>/dev/null); do
    runc --root "$work/floor-runc" delete --force "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }

echo "== building the package (3 apps x ${payload} MiB)" >&2
pkg=$work/pkg.tar.gz
"$mkpkg" --out "$pkg" --format manifest --workdir "$work" --payload-mb "$payload" \
  --app "a:health=none" --app "b:health=none" --app "c:health=none" >/dev/null

newroot() {
  local r=$work/root-$1
  "$ctcli" --root "$r" init >/dev/null
  roots+=("$r")
  if [[ $2 == privileged ]]; then
    echo '{"apps": {"a": {"user_namespace": false}, "b": {"user_namespace": false}, "c": {"user_namespace": false}}}' \
      >"$r/ctcli.json"
  fi
  echo "$r"
}

declare -A T
measure() { # mode
  local mode=$1 i r t0 t1 inst=() start=()
  for ((i = 0; i < runs; i++)); do
    r=$(newroot "$mode-$i" "$mode")
    t0=$(now); "$ctcli" --root "$r" install --no-start "$pkg" >/dev/null; t1=$(now)
    inst+=("$(elapsed "$t0" "$t1")")
    t0=$(now); "$ctcli" --root "$r" start >/dev/null; t1=$(now)
    start+=("$(elapsed "$t0" "$t1")")
    "$ctcli" --root "$r" stop --force >/dev/null
  done
  T[$mode.install]=$(printf '%s\n' "${inst[@]}" | median)
  T[$mode.start]=$(printf '%s\n' "${start[@]}" | median)
}

echo "== ctcli, user namespaces (default) and opted out, $runs runs each" >&2
measure userns
measure privileged

echo "== floors: umoci unpack (plain and mapped), runc run --detach" >&2
layouts=$work/layouts
mkdir -p "$layouts"
tar -C "$layouts" -xzf "$pkg" images
floor() { # extra umoci args...
  local i t0 t1 out=() app
  for ((i = 0; i < runs; i++)); do
    rm -rf "$work/unpack"
    mkdir -p "$work/unpack"
    t0=$(now)
    for app in a b c; do
      umoci unpack --image "$layouts/images/$app:$app" "$@" "$work/unpack/$app" >/dev/null
    done
    t1=$(now)
    out+=("$(elapsed "$t0" "$t1")")
  done
  printf '%s\n' "${out[@]}" | median
}
T[floor.unpack_mapped]=$(floor --uid-map 0:300000:65536 --gid-map 0:300000:65536)
T[floor.unpack]=$(floor)
# umoci's bundles want a terminal and hold no command of the app's (the
# manifest gives it): no terminal, the same command ctcli runs.
for app in a b c; do
  BUNDLE_CONFIG="$work/unpack/$app/config.json" lua5.4 -e 'local cjson = require("cjson")
    local p = os.getenv("BUNDLE_CONFIG")
    local f = assert(io.open(p)) local c = cjson.decode(f:read("a")) f:close()
    c.process.terminal = false
    c.process.args = { "/bin/sh", "/app/run.sh" }
    f = assert(io.open(p, "w")) f:write(cjson.encode(c)) f:close()'
done
runcs=()
for ((i = 0; i < runs; i++)); do
  t0=$(now)
  for app in a b c; do
    runc --root "$work/floor-runc" run --detach --bundle "$work/unpack/$app" "floor-$i-$app" \
      </dev/null >/dev/null 2>&1
  done
  t1=$(now)
  runcs+=("$(elapsed "$t0" "$t1")")
  for app in a b c; do runc --root "$work/floor-runc" delete --force "floor-$i-$app" >/dev/null 2>&1 || true; done
done
T[floor.runc]=$(printf '%s\n' "${runcs[@]}" | median)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '\n%-44s %10s %10s %8s\n' "figure (3 apps, ${payload} MiB each; median of $runs)" "seconds" "floor" "ratio"
printf '%-44s %10s %10s %8s\n' "install --no-start, user namespace" "${T[userns.install]}" "${T[floor.unpack_mapped]}" \
  "$(ratio "${T[userns.install]}" "${T[floor.unpack_mapped]}")"
printf '%-44s %10s %10s %8s\n' "install --no-start, opted out" "${T[privileged.install]}" "${T[floor.unpack]}" \
  "$(ratio "${T[privileged.install]}" "${T[floor.unpack]}")"
printf '%-44s %10s %10s %8s\n' "start of 3 apps, user namespace" "${T[userns.start]}" "${T[floor.runc]}" \
  "$(ratio "${T[userns.start]}" "${T[floor.runc]}")"
printf '%-44s %10s %10s %8s\n' "start of 3 apps, opted out" "${T[privileged.start]}" "${T[floor.runc]}" \
  "$(ratio "${T[privileged.start]}" "${T[floor.runc]}")"
printf '%-44s %10s\n' "user namespace / opted out: install" "$(ratio "${T[userns.install]}" "${T[privileged.install]}")"
printf '%-44s %10s\n' "user namespace / opted out: start" "$(ratio "${T[userns.start]}" "${T[privileged.start]}")"
