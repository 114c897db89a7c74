#!/bin/sh
# Builds the libFuzzer targets: fuzz/build.sh [OUTDIR] (default fuzz/out).
# The engine (engine/*.c but main.c) and the embedded Lua
# modules are compiled again here with clang -fsanitize=fuzzer,address,undefined;
# Lua and lua-cjson are the same static libraries the main build links.
# Needs clang and libFuzzer's runtime: fuzz/install-deps.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
out=${1:-$here/out}
mkdir -p "$out"
lua_static=$(for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib; do
  [ -f "$d/liblua5.4.a" ] && echo "$d/liblua5.4.a" && break; done)
cjson_static=$(dirname "$lua_static")/liblua5.4-cjson.a
[ -f "$lua_static" ] && [ -f "$cjson_static" ] || { echo "build.sh: liblua5.4.a / liblua5.4-cjson.a not found" >&2; exit 1; }
engine=""
for f in "$src"/engine/*.c; do
  case $(basename "$f") in main.c) ;; *) engine="$engine $f" ;; esac
done
# The embedded modules, compiled to bytecode by the build's own tool.
cc -O1 -I"$(pkg-config --variable=includedir lua5.4)/lua5.4" $(pkg-config --cflags lua5.4) -o "$out/runlua" \
  "$src/tools/runlua.c" "$lua_static" -lm -ldl
(cd "$src/lua" && find . -name '*.lua' | sed 's|^\./||' | LC_ALL=C sort) > "$out/lua-files"
# The manifest's rule tables, generated from its schema as the main build does.
mkdir -p "$out/generated/ctcli/model"
"$out/runlua" "$src/tools/genschema.lua" "$src/manifests/release.schema.json" \
  "$out/generated/ctcli/model/schema_tables.lua"
# shellcheck disable=SC2046
"$out/runlua" "$src/tools/embedlua.lua" "$out/embedded_lua.c" "$src" $(cat "$out/lua-files") \
  --generated "$out/generated" ctcli/model/schema_tables.lua
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -D_GNU_SOURCE -DCTCLI_VERSION=\"fuzz\" -I$src/engine $(pkg-config --cflags lua5.4 libarchive nettle hogweed libzstd)"
libs="$cjson_static $lua_static $(pkg-config --libs libarchive nettle hogweed libzstd) -lm -ldl -lpthread"
for t in manifest legacy archive; do
  echo "build.sh: fuzz-$t"
  # shellcheck disable=SC2086
  clang $cflags -DCT_FUZZ_TARGET=\"$t\" -o "$out/fuzz-$t" "$here/fuzz_target.c" $engine \
    "$out/embedded_lua.c" $libs
done
