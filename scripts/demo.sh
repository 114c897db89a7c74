#!/usr/bin/env bash
# demo.sh [--keep]: the main job on a bundled demo package, from scratch:
# installs the Debian packages, builds ctcli, builds the demo package from
# busybox-static, creates a demo root in a temp dir, installs the package,
# starts its apps and shows their status. Without --keep the demo stops its
# apps and removes its root at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1

"$here/scripts/install-deps.sh"
bin=$("$here/scripts/build.sh" Release)/ctcli

demo=$(mktemp -d /tmp/ctcli-demo-XXXXXX)
# Traversable, as /tmp is: the root's user namespace must reach its images.
chmod 711 "$demo"
root=$demo/root
cleanup() {
  if [ "$keep" = 0 ]; then
    "$bin" --root "$root" stop >/dev/null 2>&1 || true
    rm -rf "$demo"
  fi
}
trap cleanup EXIT

run() { echo "\$ ctcli $*"; "$bin" "$@"; echo; }

echo "== building the demo package in $demo: two busybox images, then manifests/demo packed"
"$here/tests/support/mkpkg" --format manifest --out "$demo/images.tar.gz" --version 1.0.0 \
  --app web:mark=demo-web --app worker:heartbeat=2 --workdir "$demo" >/dev/null
mkdir "$demo/src"
cp -r "$here/manifests/demo/manifest.json" "$here/manifests/demo/hooks" "$demo/src/"
tar -xzf "$demo/images.tar.gz" -C "$demo/src" images
run validate "$demo/src"
run pack "$demo/src" -o "$demo/demo-1.0.0.tar.zst"

run --root "$root" init
run --root "$root" install "$demo/demo-1.0.0.tar.zst"
run --root "$root" start
run --root "$root" status
sleep 1
run --root "$root" logs --tail 3 web

if [ "$keep" = 1 ]; then
  echo "The demo root stays at $root; try: $bin --root $root release-info"
else
  echo "Stopping the demo apps and removing $demo (run with --keep to keep it)."
fi
