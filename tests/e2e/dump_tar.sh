#!/usr/bin/env bash
# `cairn dump` streams a snapshot as an archive that tools we did not write
# read: GNU tar (--format tar), bsdtar (--format pax, the default), unzip and
# bsdtar (--format zip).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd tar bsdtar unzip cmp

# A smaller sparse file keeps the streams short; it still has holes.
FIXTURE_SPARSE_MIB=64 make_fixture "$T/src"
cairn_repo_init
id=$(backup_id "$T/src")

# Names as tar/find print them (raw bytes, so a name with a newline spans two
# lines on both sides), without "./" prefixes or trailing slashes.
norm_names() { sed -e 's|^\./||' -e 's|/$||' | grep -v -x -e '' -e '\.' | LC_ALL=C sort || true; }
list_paths "$T/src" >"$T/expected-paths.txt"
# bsdtar -t prints a newline inside a name as the two characters \n.
bsdtar_paths() { # DIR [find tests...]
  local d=$1; shift
  (cd "$d" && find . -mindepth 1 "$@" -printf '%P\0') |
    python3 -c 'import sys; sys.stdout.buffer.write(b"".join(n.replace(b"\n", b"\\n") + b"\n" for n in sys.stdin.buffer.read().split(b"\0") if n))' |
    LC_ALL=C sort
}
bsdtar_paths "$T/src" >"$T/expected-bsdtar-paths.txt"

# --- tar: GNU tar lists the same paths and extracts the same bytes.
cairn_ok dump "$id" --format tar >"$T/snap.tar"
[ -s "$T/snap.tar" ] || fail "dump --format tar wrote nothing"
tar -t --quoting-style=literal -f "$T/snap.tar" >"$T/tar-list.raw" 2>"$T/tar-list.err" ||
  { cat "$T/tar-list.err" >&2; fail "GNU tar cannot list the dump --format tar stream"; }
norm_names <"$T/tar-list.raw" >"$T/tar-paths.txt"
if ! diff "$T/expected-paths.txt" "$T/tar-paths.txt" >"$T/tar-paths.diff"; then
  head -n 40 "$T/tar-paths.diff" >&2
  fail "tar -t lists different paths than the source ('<' missing from the archive, '>' extra)"
fi
mkdir "$T/x-tar"
tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -f "$T/snap.tar" -C "$T/x-tar" 2>"$T/tar-x.err" ||
  { cat "$T/tar-x.err" >&2; fail "GNU tar cannot extract the dump --format tar stream"; }
diff -r --no-dereference "$T/src" "$T/x-tar" >"$T/tar.diff" 2>&1 || true
if grep -v -E '^File .* is a (fifo|character special file|block special file) while file .* is a \1$' "$T/tar.diff" >"$T/tar.diff.real"; then
  head -n 40 "$T/tar.diff.real" >&2
  fail "GNU tar extraction differs from the source (diff -r above)"
fi
# Types survive too (diff -r does not compare FIFOs and symlink kinds).
[ -p "$T/x-tar/fifo" ] || fail "tar: fifo is not a FIFO after extraction"
[ -L "$T/x-tar/link-dangling" ] || fail "tar: link-dangling is not a symlink after extraction"
[ "$(stat -c %h "$T/x-tar/files/hardlink-a")" -eq 3 ] || fail "tar: the hardlink triple is not hardlinked after extraction"

# --- dump of one path: only that subtree.
cairn_ok dump "$id" "dir with spaces" --format tar >"$T/sub.tar"
tar -t --quoting-style=literal -f "$T/sub.tar" | norm_names >"$T/sub-list.txt"
grep -q 'file with spaces\.txt$' "$T/sub-list.txt" || { cat "$T/sub-list.txt" >&2; fail "dump SNAP 'dir with spaces': file with spaces.txt missing"; }
if grep -qE '(^|/)(files|sparse\.img|fifo|deep)(/|$)' "$T/sub-list.txt"; then
  cat "$T/sub-list.txt" >&2; fail "dump SNAP 'dir with spaces': archive holds paths outside that directory"
fi

# --- pax (also the default format): bsdtar lists and extracts it.
cairn_ok dump "$id" --format pax >"$T/snap.pax"
cairn_ok dump "$id" >"$T/snap.default"
cmp -s "$T/snap.pax" "$T/snap.default" || {
  # Not necessarily byte-identical (times in headers); the listings must be.
  bsdtar -tf "$T/snap.default" | norm_names >"$T/default-paths.txt" || fail "bsdtar cannot read the default dump format"
  diff "$T/expected-bsdtar-paths.txt" "$T/default-paths.txt" >&2 || fail "default dump format lists different paths"
}
bsdtar -tf "$T/snap.pax" >"$T/pax-list.raw" 2>"$T/pax-list.err" ||
  { cat "$T/pax-list.err" >&2; fail "bsdtar cannot list the dump --format pax stream"; }
norm_names <"$T/pax-list.raw" >"$T/pax-paths.txt"
diff "$T/expected-bsdtar-paths.txt" "$T/pax-paths.txt" >&2 || fail "bsdtar -t (pax) lists different paths than the source"
mkdir "$T/x-pax"
bsdtar -x -p --xattrs --acls -f "$T/snap.pax" -C "$T/x-pax" 2>"$T/pax-x.err" ||
  { cat "$T/pax-x.err" >&2; fail "bsdtar cannot extract the dump --format pax stream"; }
diff -r --no-dereference "$T/src" "$T/x-pax" >"$T/pax.diff" 2>&1 || true
if grep -v -E '^File .* is a (fifo|character special file|block special file) while file .* is a \1$' "$T/pax.diff" >"$T/pax.diff.real"; then
  head -n 40 "$T/pax.diff.real" >&2
  fail "bsdtar extraction of the pax dump differs from the source (diff -r above)"
fi
# pax carries nanosecond mtimes.
[ "$(stat -c %y "$T/x-pax/files/random-100k")" = "$(stat -c %y "$T/src/files/random-100k")" ] ||
  fail "pax: nanosecond mtime of files/random-100k lost ($(stat -c %y "$T/x-pax/files/random-100k"))"

# --- zip: unzip tests it, bsdtar lists it, and regular files have the bytes.
# zip cannot hold FIFOs or device nodes: those may be skipped with a warning
# naming them and exit status 3 (partial); anything else must be complete.
run_cairn dump "$id" --format zip
[ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || { tail -n 20 "$ERR" >&2; fail "dump --format zip exited $RC (expected 0, or 3 for skipped special files)"; }
if [ "$RC" -eq 3 ]; then
  expect_in fifo "dump --format zip exit 3: the skipped FIFO is named" "$ERR"
fi
cp "$OUT" "$T/snap.zip"
unzip -tq "$T/snap.zip" >"$T/unzip-t.out" 2>&1 || { cat "$T/unzip-t.out" >&2; fail "unzip -t rejects the dump --format zip stream"; }
unzip -l "$T/snap.zip" >"$T/unzip-l.out" 2>&1 || { cat "$T/unzip-l.out" >&2; fail "unzip -l cannot list the zip"; }
bsdtar -tf "$T/snap.zip" >"$T/zip-list.raw" 2>"$T/zip-list.err" ||
  { cat "$T/zip-list.err" >&2; fail "bsdtar cannot list the dump --format zip stream"; }
norm_names <"$T/zip-list.raw" >"$T/zip-paths.txt"
# zip has no FIFOs or device nodes: every directory, regular file and symlink
# must be there.
bsdtar_paths "$T/src" \( -type f -o -type d -o -type l \) >"$T/zip-expected.txt"
missing=$(LC_ALL=C comm -23 "$T/zip-expected.txt" "$T/zip-paths.txt")
[ -z "$missing" ] || { printf '%s\n' "$missing" | head -n 20 >&2; fail "zip lacks the paths listed above"; }
mkdir "$T/x-zip"
bsdtar -x -f "$T/snap.zip" -C "$T/x-zip" 2>"$T/zip-x.err" || { cat "$T/zip-x.err" >&2; fail "bsdtar cannot extract the zip"; }
while IFS= read -r -d '' p; do
  cmp -s "$T/src/$p" "$T/x-zip/$p" || fail "zip: '$p' has different bytes after extraction"
done < <(cd "$T/src" && find . -type f -print0)

echo "PASS: dump_tar"
