#!/usr/bin/env bash
# Installs every Debian package that building, testing and running ctcli need.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  liblua5.4-dev lua5.4 lua-cjson-dev
  libarchive-dev nettle-dev libzstd-dev
  runc umoci busybox-static
  lua-busted lua-check ansible-core
  zstd gzip tar strace valgrind openssl inotify-tools
  # bench/: bsdtar is the start-up floor (the same libarchive)
  libarchive-tools
  # tests/support/mkdebimg: Debian roots for the real-services tests (as root:
  # no uidmap needed)
  mmdebstrap
  # checks of the generated completion and man page
  zsh groff-base
  systemd
  # scripts/build-deb.sh (cpack's dpkg-shlibdeps) and its spec (deb_slow)
  dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
