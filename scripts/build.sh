#!/usr/bin/env bash
# build.sh [TYPE [DIR]]: configure and build ctcli (TYPE Release, Debug or Sanitize).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
type=${1:-Release}
dir=${2:-$here/build/$(echo "$type" | tr 'A-Z' 'a-z')}
cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
echo "$dir"
