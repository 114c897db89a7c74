#!/usr/bin/env bash
# test.sh: installs what the tests need, builds ctcli twice (Debug, and
# Sanitize with AddressSanitizer + UBSan) and runs every test with ctest in
# both builds (the sanitizer build leaves out the label heavy). Extra
# arguments go to ctest (e.g. -R lua.cli).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh"
# The Release build (-O2) sees warnings the others do not: it must build too.
"$here/scripts/build.sh" Release >/dev/null
status=0
for type in Debug Sanitize; do
  dir=$("$here/scripts/build.sh" "$type")
  echo "== ctest ($type build)"
  # Each run gets its own TMPDIR; the specs put their roots under it.
  tmp=$(mktemp -d)
  # Specs drop privileges in places (an unprivileged child): keep the dir traversable, as /tmp is.
  chmod 755 "$tmp"
  # The sanitizer build need not repeat the long end-to-end specs (label
  # heavy: the crash matrix, Ansible, the real services): the Debug build runs them.
  exclude="slow|valgrind"
  [ "$type" = Sanitize ] && exclude="slow|valgrind|heavy"
  if ! (cd "$dir" && TMPDIR="$tmp" ASAN_OPTIONS=detect_leaks=1 ctest -j3 -LE "$exclude" --output-on-failure "$@"); then
    status=1
  fi
  rm -rf "$tmp"
done
exit $status
