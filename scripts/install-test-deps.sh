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
  strace            # tests/e2e/check_subset.sh counts the packs a check opens
  python3           # JSON checks in the tests
  valgrind          # memcheck of the round trip (tests/e2e/valgrind_roundtrip.sh)
  cppcheck          # static analysis gate in scripts/test.sh
  clang             # libFuzzer targets (scripts/fuzz.sh)
  libclang-rt-14-dev # libFuzzer and sanitizer runtimes for clang
  # --- PostgreSQL PITR tests (tests/e2e/pg_*.sh, a real server in a temp dir) ---
  postgresql          # server 15: initdb, postgres, pg_ctl, psql, pg_dump
  postgresql-contrib  # pgbench and the contrib extensions
  # --- MariaDB binlog tests (tests/e2e/mysql_*.sh, a real 10.11 server in a temp dir) ---
  mariadb-server      # mariadbd, mariadb-install-db
  mariadb-backup      # mariabackup, mbstream (base backups)
  mariadb-client      # mariadb, mariadb-admin, mariadb-binlog
  # --- S3 backend tests (tests/e2e/s3_*.sh, tests/s3/) ---
  nodejs            # runs s3rver, the S3 test server (npm ci in tests/s3), and the
                    # manifest validator (tests/k8s: kubernetes-models, npm ci)
  python3-botocore  # tests/s3/sigv4_proxy.py recomputes every SigV4 signature
  awscli            # interop: aws s3 ls/cp of what cairn wrote; creates the test bucket
  # --- agent tests (tests/e2e/agent_*.sh) ---
  python3-prometheus-client # parses the agent's /metrics text (exposition format)
  sqlite3           # tests/e2e/agent_metrics.sh adds WAL/binlog rows to the agent's catalog
)
# npm: NodeSource's nodejs ships npm and conflicts with Debian's npm package,
# so install it only when no npm is there.
command -v npm >/dev/null 2>&1 || TEST_PACKAGES+=(npm)
# kubectl: `kubectl kustomize daemonset/` in tests/e2e/k8s_manifests.sh (optional
# there). Debian 12's kubernetes-client (1.20) renders it; a kubectl already on
# the machine (e.g. Google's kubectl package) owns /usr/bin/kubectl, so only
# when there is none.
command -v kubectl >/dev/null 2>&1 || TEST_PACKAGES+=(kubernetes-client)

apt_install "${TEST_PACKAGES[@]}"
