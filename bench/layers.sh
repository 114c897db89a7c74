#!/usr/bin/env bash
# layers.sh — issue 15's figures for the layer store, against what the
# store before it did (one whole unpacked rootfs per app: `umoci unpack` of
# each image, measured here as the floor), in the same run.
#
# usage: bench/layers.sh [--ctcli BIN] [--base-mb N] [--apps N] [--mkpkg PATH]
#
# --mkpkg: the fixture builder to use (default tests/support/mkpkg; an older
# checkout's, to measure an older ctcli with the packages it was built for).
# Builds a package of N apps (default 10) on one base of --base-mb MiB
# (default 100; tests/support/mkpkg's MKPKG_BASE_MB) and one of 1 app, then:
#   - install --no-start of each into a fresh root: the time the 2nd..Nth
#     app adds, (t_N - t_1) / (N - 1);
#   - the disk the store takes (blobs/ + layers/ + images/ + uppers/) against
#     one app's unpacked rootfs, and against one app in the store before
#     (its rootfs and its own copy of its OCI layout, kept for reset: the
#     floor measured here with umoci unpack and du of the layout), and the
#     store before of N apps (N of those);
#   - the size of a delta (pack --base) whose only change is one app's top
#     layer, against the full package.
# Everything lives under one mktemp -d directory, removed on exit after the
# roots are deleted through ctcli.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
ctcli="" base=100 apps=10 mkpkg=""
while [ $# -gt 0 ]; do
  case $1 in
    --ctcli) ctcli=$2; shift 2 ;;
    --base-mb) base=$2; shift 2 ;;
    --apps) apps=$2; shift 2 ;;
    --mkpkg) mkpkg=$2; shift 2 ;;
    *) echo "usage: bench/layers.sh [--ctcli BIN] [--base-mb N] [--apps N] [--mkpkg PATH]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "layers.sh: run as root" >&2; exit 1; }
[ -n "$ctcli" ] || ctcli=$("$here/scripts/build.sh" Release)/ctcli
ctcli=$(realpath "$ctcli")
mkpkg=$(realpath "${mkpkg:-$here/tests/support/mkpkg}")
T=$(mktemp -d); chmod 711 "$T"
export CTCLI_SUBID_DIR=$T/subid; mkdir -p "$CTCLI_SUBID_DIR"
roots=()
cleanup() {
  for r in "${roots[@]}"; do "$ctcli" --root "$r" -y delete --purge >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/mk"
mk() { # mk OUT N MARK
  local a=() i
  for i in $(seq 1 "$2"); do a+=(--app "app$i:health=none,mark=$3"); done
  MKPKG_BASE_MB=$base "$mkpkg" --out "$1" --format manifest --version 1.0.0 "${a[@]}" \
    --workdir "$T/mk" >/dev/null
}
echo "== building packages ($apps apps and 1 app on a $base MiB base)" >&2
mk "$T/n.pkg" "$apps" one
mk "$T/one.pkg" 1 one
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); awk -v d=$((e - s)) 'BEGIN{printf "%.2f", d/1e9}'; }
R1=$T/r1; RN=$T/rn; roots+=("$R1" "$RN")
"$ctcli" --root "$R1" init >/dev/null; "$ctcli" --root "$RN" init >/dev/null
t1=$(secs "$ctcli" --root "$R1" -y install --no-start "$T/one.pkg")
tn=$(secs "$ctcli" --root "$RN" -y install --no-start "$T/n.pkg")
store_kb() { du -sk "$1"/blobs "$1"/layers "$1"/images "$1"/uppers 2>/dev/null | awk '{s += $1} END {print s}'; }
sn=$(store_kb "$RN")
# the floor: one app's image unpacked whole, as the store before kept it per
# app, beside its own copy of the image's OCI layout (images/<key>/oci/)
mkdir -p "$T/x"; tar -xf "$T/one.pkg" -C "$T/x"
umoci unpack --image "$T/x/images/app1:app1" "$T/x/bundle" >/dev/null 2>&1
one_kb=$(du -sk "$T/x/bundle/rootfs" | awk '{print $1}')
layout_kb=$(du -sk "$T/x/images/app1" | awk '{print $1}')
before_kb=$((one_kb + layout_kb))
echo "| measure | value | goal |"
echo "| --- | ---: | ---: |"
echo "| install --no-start, 1 app [s] | $t1 | |"
echo "| install --no-start, $apps apps [s] | $tn | |"
echo "| each of the 2nd..${apps}th app [s] | $(awk -v a="$tn" -v b="$t1" -v n="$apps" 'BEGIN{printf "%.3f", (a-b)/(n-1)}') | < 0.2 |"
echo "| store of $apps apps [MiB] | $(awk -v k="$sn" 'BEGIN{printf "%.1f", k/1024}') | |"
echo "| one app's unpacked rootfs [MiB] | $(awk -v k="$one_kb" 'BEGIN{printf "%.1f", k/1024}') | |"
echo "| one app in the store before (rootfs + its OCI layout) [MiB] | $(awk -v k="$before_kb" 'BEGIN{printf "%.1f", k/1024}') | |"
echo "| store / one app's rootfs | $(awk -v a="$sn" -v b="$one_kb" 'BEGIN{printf "%.2f", a/b}') | (blobs kept too: ~2 with an incompressible base) |"
echo "| store / one app in the store before | $(awk -v a="$sn" -v b="$before_kb" 'BEGIN{printf "%.2f", a/b}') | ≤ 1.1 |"
echo "| the store before ($apps apps) [MiB] | $(awk -v k="$before_kb" -v n="$apps" 'BEGIN{printf "%.1f", k*n/1024}') | |"
# a delta whose only change is app1's top layer
a=()
for i in $(seq 1 "$apps"); do m=one; [ "$i" = 1 ] && m=two; a+=(--app "app$i:health=none,mark=$m"); done
MKPKG_BASE_MB=$base "$mkpkg" --out "$T/n2.pkg" --format manifest --version 1.1.0 "${a[@]}" \
  --workdir "$T/mk" >/dev/null
mkdir -p "$T/d2"; tar -xf "$T/n2.pkg" -C "$T/d2"; rm -f "$T/d2/manifest.sig"
"$ctcli" pack "$T/d2" -o "$T/delta.pkg" --base "$T/n.pkg" >/dev/null
echo "| delta for a one-layer change [KiB] | $(( $(stat -c %s "$T/delta.pkg") / 1024 )) | |"
echo "| full package [KiB] | $(( $(stat -c %s "$T/n2.pkg") / 1024 )) | |"
