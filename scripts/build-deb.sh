#!/usr/bin/env bash
# build-deb.sh [DIR]: builds the Debian package ctcli_<version>-1_<arch>.deb
# with `cpack -G DEB` in DIR (default build/deb) and prints its path.
#
# A Release build with the prefix /usr and no tests; the package holds what
# `cmake --install` installs (binary, man page, completions, schema, docs,
# systemd units, see cmake/Install.cmake), and its Depends: line names runc,
# umoci and the shared libraries dpkg-shlibdeps finds. Needs cmake, a C
# compiler, the build's -dev packages (scripts/install-deps.sh) and dpkg-dev.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$here/build/deb}
command -v dpkg-shlibdeps >/dev/null || { echo "build-deb.sh: dpkg-shlibdeps not found (apt-get install dpkg-dev)" >&2; exit 1; }
cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DCTCLI_TESTS=OFF >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
rm -f "$dir"/ctcli_*.deb
(cd "$dir" && cpack -G DEB >"$dir/cpack.log" 2>&1) || { cat "$dir/cpack.log" >&2; exit 1; }
deb=$(ls "$dir"/ctcli_*.deb)
echo "$deb"
