# shellcheck shell=bash
# Shared helpers for the end-to-end tests. Every tests/e2e/*.sh (except this
# file) sources it. ctest runs each test as `bash tests/e2e/NAME.sh` with
#   CAIRN      path of the cairn binary under test
#   CAIRN_SRC  the source tree
# Exit status: 0 pass, 1 fail, 77 skipped (ctest SKIP_RETURN_CODE).
#
# Run one by hand:  CAIRN=build/cairn bash tests/e2e/roundtrip.sh
# Keep the temp dir for inspection: CAIRN_KEEP_TMP=1.

# lib.sh itself is not a test: ctest globs tests/e2e/*.sh, so it is registered
# too; run directly it just passes.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib.sh: helper library, nothing to run"
  exit 0
fi

set -euo pipefail
shopt -s inherit_errexit  # set -e also inside $(...)
export LC_ALL=C.UTF-8 TZ=UTC

CAIRN_SRC=${CAIRN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CAIRN=${CAIRN:-$CAIRN_SRC/build/cairn}
case $CAIRN in /*) ;; *) CAIRN=$PWD/$CAIRN ;; esac
export CAIRN CAIRN_SRC

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
note() { echo "note: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }
need_root() { is_root || skip "${1:-this test} needs root"; }
need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 ||
      fail "required tool '$c' is not installed (run scripts/install-test-deps.sh)"
  done
}

[ -x "$CAIRN" ] || fail "cairn binary not found at '$CAIRN' (set CAIRN=... or build first)"
need_cmd diff stat find sort python3 sha256sum

T=$(mktemp -d /tmp/cairn-e2e.XXXXXX)
chmod 755 "$T"
_cleanup() {
  local rc=$?
  # Background jobs a test started (concurrent backups) must not outlive it.
  local j
  for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
  if [ -n "${CAIRN_KEEP_TMP:-}" ]; then
    echo "kept temp dir $T" >&2
  else
    # Fixtures hold read-only dirs; as non-root they must be made writable first.
    chmod -R u+rwx "$T" 2>/dev/null || true
    rm -rf "$T" 2>/dev/null || true
  fi
  exit "$rc"
}
trap _cleanup EXIT

# ---------------------------------------------------------------------------
# Running cairn.
#
# run_cairn ARGS...   runs "$CAIRN" ARGS; stdout goes to the file $OUT, stderr
#                     to $ERR, the exit status to $RC. It does not stop on a
#                     non-zero status, but fails the test if cairn crashed
#                     (signal, status >= 126) or a sanitizer reported.
# cairn_ok ARGS...    run_cairn, require status 0, print stdout.
# cairn ARGS...       plain "$CAIRN" ARGS.
_ncmd=0
cairn() { "$CAIRN" "$@"; }

check_no_crash() { # WHAT RC ERRFILE
  local what=$1 rc=$2 err=$3
  if [ "$rc" -ge 126 ]; then
    tail -n 40 "$err" >&2 || true
    fail "$what crashed or was killed (exit status $rc)"
  fi
  if grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$err"; then
    tail -n 60 "$err" >&2
    fail "$what: sanitizer report on stderr"
  fi
}

run_cairn() {
  _ncmd=$((_ncmd + 1))
  OUT=$T/cmd.$BASHPID.$_ncmd.out
  ERR=$T/cmd.$BASHPID.$_ncmd.err
  RC=0
  echo "+ cairn $*" >&2
  "$CAIRN" "$@" >"$OUT" 2>"$ERR" || RC=$?
  check_no_crash "cairn $*" "$RC" "$ERR"
}

cairn_ok() {
  run_cairn "$@"
  if [ "$RC" -ne 0 ]; then
    tail -n 40 "$ERR" >&2
    fail "cairn $* exited $RC (expected 0)"
  fi
  cat "$OUT"
}

# Fail unless the command's exit status (as left in $RC by run_cairn) is WANT.
expect_rc() { # WANT WHAT
  if [ "$RC" -ne "$1" ]; then
    echo "--- stdout" >&2; tail -n 20 "$OUT" >&2 || true
    echo "--- stderr" >&2; tail -n 20 "$ERR" >&2 || true
    fail "$2: exit status $RC, expected $1"
  fi
}

# Fail unless $RC is a clean error (1..125): not 0 and not a crash.
expect_error() { # WHAT
  if [ "$RC" -eq 0 ]; then
    echo "--- stdout" >&2; tail -n 20 "$OUT" >&2 || true
    fail "$1: exit status 0, expected an error"
  fi
}

# Fail unless FILE(s) contain the fixed string S (case-insensitive with -i).
expect_in() { # [-i] STRING WHAT FILE...
  local flags=-F
  if [ "$1" = -i ]; then flags=-Fi; shift; fi
  local s=$1 what=$2; shift 2
  if ! grep -q $flags -- "$s" "$@"; then
    echo "--- output searched:" >&2; tail -n 30 "$@" >&2
    fail "$what: output does not mention '$s'"
  fi
}

is_snapshot_id() { [[ $1 =~ ^[0-9a-f]{64}$ ]]; }

# backup_id ARGS...: run `cairn backup ARGS`, require exit 0 and a 64-hex id on
# stdout; print the id.
backup_id() {
  local out
  out=$(cairn_ok backup "$@")
  out=$(printf '%s' "$out" | tr -d '[:space:]')
  is_snapshot_id "$out" || fail "backup $*: stdout is not a 64-hex snapshot id: '$out'"
  printf '%s\n' "$out"
}

# json_get FILE EXPR: evaluate a python expression over the parsed JSON `j`.
json_get() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
v = eval(sys.argv[2], {"j": j})
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
EOF
}

# cairn_repo_init: a fresh local repository and catalog under $T.
cairn_repo_init() {
  export CAIRN_REPO=$T/repo
  export CAIRN_CATALOG=$T/catalog.db
  cairn_ok init >/dev/null
  [ -f "$CAIRN_REPO/config" ] || fail "init did not create $CAIRN_REPO/config"
}

# ---------------------------------------------------------------------------
# Unprivileged runs. As root: as user nobody, through a copy of the binary in
# $T (the build tree may not be reachable by nobody). As non-root: as self.
UNPRIV_USER=nobody
UNPRIV_GROUP=nogroup
unpriv_cairn_bin() {
  if is_root; then
    if [ ! -x "$T/bin/cairn" ]; then
      mkdir -p "$T/bin"; chmod 755 "$T/bin"
      cp "$CAIRN" "$T/bin/cairn"; chmod 755 "$T/bin/cairn"
      unpriv_dir "$T/home-unpriv"
    fi
    echo "$T/bin/cairn"
  else
    echo "$CAIRN"
  fi
}
# unpriv_dir DIR: create DIR owned by the unprivileged user.
unpriv_dir() {
  mkdir -p "$1"
  if is_root; then chown "$UNPRIV_USER:$UNPRIV_GROUP" "$1"; fi
}
# run_cairn_unpriv ARGS...: like run_cairn, as the unprivileged user. The
# environment (CAIRN_REPO, CAIRN_CATALOG, sanitizer options) is passed on.
run_cairn_unpriv() {
  local bin
  bin=$(unpriv_cairn_bin)
  _ncmd=$((_ncmd + 1))
  OUT=$T/cmd.$BASHPID.$_ncmd.out
  ERR=$T/cmd.$BASHPID.$_ncmd.err
  RC=0
  if is_root; then
    echo "+ (as $UNPRIV_USER) cairn $*" >&2
    runuser -u "$UNPRIV_USER" -- env HOME="$T/home-unpriv" "$bin" "$@" >"$OUT" 2>"$ERR" || RC=$?
  else
    echo "+ cairn $*" >&2
    "$bin" "$@" >"$OUT" 2>"$ERR" || RC=$?
  fi
  check_no_crash "cairn $* (unprivileged)" "$RC" "$ERR"
}

# ---------------------------------------------------------------------------
# make_fixture DIR: a tree holding every kind of entry Cairn must preserve.
# Tunables (environment):
#   FIXTURE_SPARSE_MIB  apparent size of the sparse file in MiB (default 1024)
#   FIXTURE_NEWLINE     0 to leave out the name with a newline (default 1)
# Sets FIX_XATTR, FIX_ACL, FIX_DEV, FIX_OWNER to 1 when that part was created,
# and FIX_SPARSE to the sparse file's path relative to DIR.
randfile() { head -c "$2" /dev/urandom >"$1"; }

make_fixture() {
  local d=$1 i p
  local sparse_mib=${FIXTURE_SPARSE_MIB:-1024}
  mkdir -p "$d"
  FIX_XATTR=0 FIX_ACL=0 FIX_DEV=0 FIX_OWNER=0

  # Regular files of varied sizes.
  mkdir "$d/files"
  : >"$d/files/empty"
  printf x >"$d/files/one-byte"
  randfile "$d/files/random-100k" 102400
  randfile "$d/files/random-5m" $((5 * 1024 * 1024))
  python3 -c 'import sys; sys.stdout.write("cairn compressible line\n" * 50000)' >"$d/files/compressible.txt"
  printf 'hello cairn\n' >"$d/files/small.txt"

  # Empty directories, one nested.
  mkdir -p "$d/empty-dir" "$d/nested-empty/a/b/c"

  # A deep path: 32 levels, > 255 bytes (beyond the plain ustar limit).
  p=$d/deep
  for i in $(seq -w 1 32); do p=$p/level-$i; done
  mkdir -p "$p"
  printf 'at the bottom\n' >"$p/leaf.txt"

  # Awkward names.
  mkdir "$d/dir with spaces"
  printf 'spaces\n' >"$d/dir with spaces/file with spaces.txt"
  if [ "${FIXTURE_NEWLINE:-1}" = 1 ]; then
    printf 'newline\n' >"$d/new"$'\n'"line.txt"
  fi
  printf 'e acute\n' >"$d/café-é.txt"
  mkdir "$d/日本"
  printf 'nihon\n' >"$d/日本/語.txt"

  # Symlinks: relative, absolute, dangling, to a directory.
  ln -s files/small.txt "$d/link-relative"
  ln -s /etc/hostname "$d/link-absolute"
  ln -s does/not/exist "$d/link-dangling"
  ln -s "dir with spaces" "$d/link-to-dir"

  # Hardlinks: three names for one inode, across directories.
  printf 'hardlinked content\n' >"$d/files/hardlink-a"
  ln "$d/files/hardlink-a" "$d/files/hardlink-b"
  ln "$d/files/hardlink-a" "$d/dir with spaces/hardlink-c"

  # A FIFO.
  mkfifo "$d/fifo"

  # Device nodes (root only; a container may forbid mknod).
  if is_root; then
    mkdir "$d/dev"
    if mknod "$d/dev/char-1-3" c 1 3 2>/dev/null && mknod "$d/dev/block-7-200" b 7 200 2>/dev/null; then
      FIX_DEV=1
    else
      rm -f "$d/dev/char-1-3" "$d/dev/block-7-200"
      note "mknod not permitted here; no device nodes in the fixture"
    fi
  else
    note "not root: no device nodes in the fixture"
  fi

  # A sparse file with a few data extents.
  FIX_SPARSE=sparse.img
  truncate -s "${sparse_mib}M" "$d/sparse.img"
  dd if=/dev/urandom of="$d/sparse.img" bs=1M seek=0 count=1 conv=notrunc status=none
  dd if=/dev/urandom of="$d/sparse.img" bs=1M seek=$((sparse_mib / 4 + 3)) count=1 conv=notrunc status=none
  dd if=/dev/urandom of="$d/sparse.img" bs=64K seek=$((sparse_mib * 16 * 2 / 3 + 5)) count=8 conv=notrunc status=none
  dd if=/dev/urandom of="$d/sparse.img" bs=4K seek=$((sparse_mib * 256 - 1)) count=1 conv=notrunc status=none

  # Modes.
  mkdir "$d/modes"
  printf 'private\n' >"$d/modes/mode-0600"; chmod 0600 "$d/modes/mode-0600"
  printf '#!/bin/sh\necho hi\n' >"$d/modes/mode-0755"; chmod 0755 "$d/modes/mode-0755"
  printf 'read only\n' >"$d/modes/mode-0444"; chmod 0444 "$d/modes/mode-0444"
  mkdir "$d/modes/setgid-dir"; chmod 2775 "$d/modes/setgid-dir"
  printf 'in setgid\n' >"$d/modes/setgid-dir/inside"
  mkdir "$d/modes/sticky-dir"; chmod 1777 "$d/modes/sticky-dir"
  mkdir "$d/modes/private-dir"; chmod 0700 "$d/modes/private-dir"
  mkdir "$d/modes/readonly-dir"
  printf 'inside a read-only dir\n' >"$d/modes/readonly-dir/inside"

  # Extended attributes (skipped when the file system refuses user.*).
  if setfattr -n user.cairn.probe -v 1 "$d/files/small.txt" 2>/dev/null; then
    setfattr -x user.cairn.probe "$d/files/small.txt"
    FIX_XATTR=1
    setfattr -n user.cairn -v value "$d/files/small.txt"
    setfattr -n user.cairn.binary -v 0x00ff10e9 "$d/files/small.txt"
    setfattr -n user.cairn.empty "$d/files/random-100k"
    mkdir "$d/xattr-dir"
    setfattr -n user.cairn.dir -v 'directory value' "$d/xattr-dir"
  else
    note "file system does not support user xattrs; none in the fixture"
  fi

  # POSIX ACLs: an access ACL on a file, a default ACL on a directory (and a
  # file created inside it, which inherits).
  if command -v setfacl >/dev/null && setfacl -m u:nobody:r-- "$d/files/one-byte" 2>/dev/null; then
    FIX_ACL=1
    mkdir "$d/acl-default-dir"
    setfacl -d -m u:nobody:r-x "$d/acl-default-dir"
    printf 'inherits\n' >"$d/acl-default-dir/inherited"
    # the same on a private (0700) directory: restore's direct writer once
    # dropped this default ACL
    mkdir -m 0700 "$d/acl-private-dir"
    setfacl -d -m u:nobody:r-x "$d/acl-private-dir"
  else
    note "file system does not support POSIX ACLs; none in the fixture"
  fi

  # Owners other than the caller (root only); one uid without a passwd entry.
  if is_root; then
    printf 'owned by nobody\n' >"$d/files/owned-nobody"
    chown nobody:nogroup "$d/files/owned-nobody"
    printf 'numeric owner\n' >"$d/files/owned-numeric"
    chown 4321:8765 "$d/files/owned-numeric"
    mkdir "$d/nobody-dir"
    chown nobody:nogroup "$d/nobody-dir"
    FIX_OWNER=1
  else
    note "not root: all entries owned by the caller"
  fi

  # Nanosecond mtimes, on a file and on a symlink itself.
  touch -h -d '2020-01-02 03:04:05.123456789' "$d/files/random-100k"
  touch -h -d '1999-12-31 23:59:59.999999999' "$d/link-relative"
  touch -h -d '2001-02-03 04:05:06.000000007' "$d/fifo"

  # Last: the read-only dir, then directory mtimes (creating entries above
  # changed them), deepest first so parents keep theirs.
  chmod 0555 "$d/modes/readonly-dir"
  find "$d" -mindepth 1 -depth -type d -exec touch -h -d '2021-06-07 08:09:10.987654321' {} +
  touch -h -d '2022-03-04 05:06:07.000000001' "$d/empty-dir"
}

# ---------------------------------------------------------------------------
# compare_trees A B: every entry under A and B (not A and B themselves, whose
# metadata belongs to the restore target) must match: bytes (diff -r), type,
# permissions, owner, link count, hardlink grouping, size, nanosecond mtime,
# device numbers, xattrs (getfattr), ACLs (getfacl); a sparse file in A must
# not take more than twice its allocated size in B.
_manifest_n=0
tree_manifest() { # DIR -> stdout, one "path field value" line per fact
  local dir=$1
  (
    declare -A first_of_inode=()
    cd "$dir"
    find . -mindepth 1 -print0 | sort -z | while IFS= read -r -d '' p; do
      q=$(printf '%q' "${p#./}")
      IFS='|' read -r t perm uid gid nlink size mtime rmaj rmin ino < <(
        stat -c '%F|%a|%u|%g|%h|%s|%y|%t|%T|%i' -- "$p")
      echo "$q type $t"
      echo "$q mode $perm"
      echo "$q owner $uid:$gid"
      echo "$q mtime $mtime"
      case $t in
        directory) echo "$q nlink $nlink" ;;
        regular*|symbolic*) echo "$q size $size"; echo "$q nlink $nlink" ;;
        *special*) echo "$q rdev $rmaj:$rmin"; echo "$q nlink $nlink" ;;
        *) echo "$q nlink $nlink" ;;
      esac
      if [ "$t" != directory ] && [ "$nlink" -gt 1 ]; then
        if [ -z "${first_of_inode[$ino]:-}" ]; then first_of_inode[$ino]=$q; fi
        echo "$q hardlink-group ${first_of_inode[$ino]}"
      fi
      getfattr -h -d -m - -e hex --absolute-names -- "$p" 2>/dev/null |
        while IFS= read -r line; do
          case $line in '# file:'*|'') ;; *) echo "$q xattr $line" ;; esac
        done || true
      # getfacl follows symlinks; a link's own ACL does not exist.
      if [ "$t" != "symbolic link" ]; then
        getfacl -p -n -- "$p" 2>/dev/null |
          while IFS= read -r line; do
            case $line in '# file:'*|'') ;; *) echo "$q acl $line" ;; esac
          done || true
      fi
    done
  )
}

compare_trees() {
  local a=$1 b=$2 out rc=0
  need_cmd getfattr getfacl
  [ -d "$a" ] || fail "compare_trees: $a is not a directory"
  [ -d "$b" ] || fail "compare_trees: $b is not a directory"
  _manifest_n=$((_manifest_n + 1))
  local mdir=$T/compare.$_manifest_n
  mkdir -p "$mdir"

  # 1. Bytes and structure. diff reports two FIFOs (or two sockets) as
  #    different even when both are the same kind; types are checked below.
  diff -r --no-dereference -- "$a" "$b" >"$mdir/diff" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    out=$(grep -v -E '^File .* is a (fifo|socket|character special file|block special file) while file .* is a \1$' "$mdir/diff" || true)
    if [ -n "$out" ] || [ "$rc" -gt 1 ]; then
      printf '%s\n' "$out" | head -n 40 >&2
      fail "compare_trees: diff -r $a $b found differences (listed above)"
    fi
  fi

  # 2. Metadata, per path and field.
  tree_manifest "$a" >"$mdir/a"
  tree_manifest "$b" >"$mdir/b"
  if ! diff "$mdir/a" "$mdir/b" >"$mdir/meta.diff"; then
    echo "metadata differences ('<' source $a, '>' restored $b), as: path field value" >&2
    head -n 60 "$mdir/meta.diff" >&2
    fail "compare_trees: metadata differs (paths and fields listed above)"
  fi

  # 3. Holes stay holes: sparse files (allocated < half the size) may take at
  #    most twice their source allocation.
  local p size alloc_a alloc_b
  while IFS= read -r -d '' p; do
    size=$(stat -c %s -- "$a/$p")
    [ "$size" -ge $((1024 * 1024)) ] || continue
    alloc_a=$(( $(stat -c '%b * %B' -- "$a/$p") ))
    [ $((alloc_a * 2)) -lt "$size" ] || continue
    alloc_b=$(( $(stat -c '%b * %B' -- "$b/$p") ))
    if [ "$alloc_b" -gt $((alloc_a * 2)) ]; then
      fail "compare_trees: sparse file '$p' allocates $alloc_b bytes restored vs $alloc_a in the source (holes were filled)"
    fi
  done < <(cd "$a" && find . -type f -print0)
  echo "compare_trees: $a and $b match ($(wc -l <"$mdir/a") facts)" >&2
}

# Sorted list of snapshot-relative paths under DIR, one per line.
list_paths() { (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort); }

# validate_obj FILE: a Kubernetes object (JSON, YAML's subset) against the
# Kubernetes schemas with tests/k8s/validate.js, when tests/k8s/node_modules
# is installed (tests/e2e/k8s_manifests.sh runs 'npm ci'); else a note, once.
_VALIDATE=
validate_obj() {
  local k8s=$CAIRN_SRC/tests/k8s
  if [ -z "$_VALIDATE" ]; then
    _VALIDATE=no
    if command -v node >/dev/null 2>&1 && [ -d "$k8s/node_modules/kubernetes-models" ]; then
      _VALIDATE=yes
    else
      note "tests/k8s/node_modules is not installed (tests/e2e/k8s_manifests.sh runs 'npm ci'): the schema validation of Kubernetes objects is skipped"
    fi
  fi
  [ "$_VALIDATE" = yes ] || return 0
  node "$k8s/validate.js" "$1" >"$T/validate.out" 2>&1 ||
    { cat "$T/validate.out" >&2; fail "$(basename "$1") does not validate against the Kubernetes schemas"; }
}
