#!/usr/bin/env bash
# Install everything the test suite needs on Debian 12 (run as root): the
# build dependencies, then the tools the tests compare Cairn against.
# Idempotent; apt is only used for packages that are missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

bash "$here/install-build-deps.sh"
# shellcheck source=install-build-deps.sh
source "$here/install-build-deps.sh"   # for apt_install

# The one list of test dependencies. Add new ones here, with what needs them.
TEST_PACKAGES=(
  # --- core end-to-end tests (tests/e2e) ---
  attr              # getfattr/setfattr: xattrs in fixtures and comparisons
  acl               # getfacl/setfacl: POSIX ACLs
  xfsprogs          # XFS file systems (reflink snapshots)
  btrfs-progs       # btrfs file systems (snapshots)
  tar               # GNU tar reads `cairn dump`
  libarchive-tools  # bsdtar reads `cairn dump` (pax, zip)
  unzip             # reads `cairn dump --format zip`
  zstd              # reference compressor
  diffutils         # diff -r, cmp
  coreutils         # stat, du, dd, truncate, mknod, sha256sum
  findutils         # find
  util-linux        # runuser (tests run as nobody), fallocate
  procps            # ps, free: inspecting processes and memory
  python3           # JSON checks in the tests
  # --- later: database PITR tests (add when they land) ---
  # postgresql postgresql-contrib
  # mariadb-server mariadb-backup
  # --- later: S3 backend tests against s3rver (add when they land) ---
  # nodejs npm
)

apt_install "${TEST_PACKAGES[@]}"
