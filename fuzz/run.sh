#!/bin/sh
# Runs one libFuzzer target for N seconds on its committed seed corpus:
#   fuzz/run.sh manifest|legacy|archive SECONDS [libFuzzer options...]
# Builds the targets first when fuzz/out/ lacks them (fuzz/build.sh).
# New inputs go to fuzz/out/corpus/TARGET (not committed; the seeds in
# fuzz/corpus/TARGET stay small); crashes to fuzz/out/crashes/TARGET/.
# -detect_leaks=0: the Lua state keeps memory between inputs by design, so
# libFuzzer would run LeakSanitizer after every input (100x slower); leaks in
# the C engine are checked by tests/valgrind-cycle.sh.
# The last "#N DONE ... exec/s" line of the log gives the executions.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
t=${1:?usage: run.sh TARGET SECONDS}
secs=${2:?usage: run.sh TARGET SECONDS}
shift 2
out=${FUZZ_OUT:-$here/out}
[ -x "$out/fuzz-$t" ] || "$here/build.sh" "$out"
mkdir -p "$out/corpus/$t" "$out/crashes/$t" "$out/tmp/$t"
dict=""
case $t in manifest|legacy) dict="-dict=$here/json.dict" ;; esac
# The archive target extracts into TMPDIR: keep it ours.
TMPDIR="$out/tmp/$t" exec "$out/fuzz-$t" -max_total_time="$secs" -max_len=65536 -timeout=30 \
  -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$out/crashes/$t/" \
  $dict "$@" "$out/corpus/$t" "$here/corpus/$t"
