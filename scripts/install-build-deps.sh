#!/usr/bin/env bash
# Install what building Cairn needs on Debian 12 (run as root). Idempotent:
# packages already installed are left alone, and apt is not touched at all
# when nothing is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

BUILD_PACKAGES=(
  build-essential
  cmake
  pkg-config
  libarchive-dev
  libzstd-dev
  libcurl4-openssl-dev
  libssl-dev        # libcrypto (pkg-config), keyed BLAKE2b chunk ids
  libsqlite3-dev
  libsodium-dev
  libjansson-dev
  libpq-dev         # PostgreSQL client library: backup-pg (pg_backup_start/stop)
  # Nothing links these three: cairn loads them with dlopen only in the
  # commands that need them (engine/dl.h). The -dev packages above give the
  # headers; these are the libraries themselves, listed so they stay installed.
  libcurl4          # S3 repositories, the Kubernetes API
  libpq5            # PostgreSQL connections
  libarchive13      # backup of files, restore, dump
)

# apt_install PKG...: install the packages that are not installed yet.
# (Sourced by install-test-deps.sh too.)
apt_install() {
  local missing=() p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install: all $# packages already installed"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install: missing packages: ${missing[*]} -- run this script as root" >&2
    return 1
  fi
  echo "install: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  apt_install "${BUILD_PACKAGES[@]}"
fi
