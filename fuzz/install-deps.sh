#!/bin/sh
# The fuzzing toolchain (not needed to build or test ctcli): clang and
# LLVM's compiler-rt with libFuzzer. Debian/Ubuntu.
set -eu
apt-get install -y --no-install-recommends clang libclang-rt-14-dev
