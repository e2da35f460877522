#!/usr/bin/env bash
# `cairn ls` lists the snapshot's paths depth-first in name order; `cairn diff`
# shows added, removed and modified files; `restore --include` restores only
# the selected paths.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ls prints one path per line, so leave out the name holding a newline.
FIXTURE_NEWLINE=0 FIXTURE_SPARSE_MIB=16 make_fixture "$T/src"
printf 'unchanged\n' >"$T/src/unchanged.txt"
printf 'will be removed\n' >"$T/src/removed.txt"
printf 'version one\n' >"$T/src/modified.txt"
mkdir "$T/src/sub"
printf 'inner one\n' >"$T/src/sub/inner.txt"
printf 'inner unchanged\n' >"$T/src/sub/inner-unchanged.txt"

cairn_repo_init
id1=$(backup_id "$T/src")

# --- ls: same set of paths as find, in depth-first name (byte) order.
cairn_ok ls "$id1" >"$T/ls.txt"
python3 - "$T/src" >"$T/expected-ls.txt" <<'PY'
import os, sys
root = os.fsencode(sys.argv[1])
out = sys.stdout.buffer
def walk(rel):
    full = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(full)):
        r = os.path.join(rel, name) if rel else name
        out.write(r + b"\n")
        p = os.path.join(root, r)
        if os.path.isdir(p) and not os.path.islink(p):
            walk(r)
walk(b"")
PY
# Accept "./path" or "/path" spellings, but not a different set or order.
sed -e 's|^\./||' -e 's|^/||' "$T/ls.txt" | grep -v -x -e '' -e '\.' >"$T/ls-norm.txt" || true
if ! diff <(LC_ALL=C sort "$T/expected-ls.txt") <(LC_ALL=C sort "$T/ls-norm.txt") >"$T/ls-set.diff"; then
  head -n 40 "$T/ls-set.diff" >&2
  fail "ls $id1: the listed paths differ from the source tree ('<' missing, '>' unexpected)"
fi
if ! diff "$T/expected-ls.txt" "$T/ls-norm.txt" >"$T/ls-order.diff"; then
  head -n 40 "$T/ls-order.diff" >&2
  fail "ls $id1: right paths, but not in depth-first name order"
fi

# ls SNAP PATH: only that subtree.
cairn_ok ls latest sub >"$T/ls-sub.txt"
sed -e 's|^\./||' -e 's|^/||' "$T/ls-sub.txt" | grep -v -x -e '' -e 'sub' >"$T/ls-sub-norm.txt" || true
printf 'sub/inner-unchanged.txt\nsub/inner.txt\n' >"$T/ls-sub-expected.txt"
diff "$T/ls-sub-expected.txt" "$T/ls-sub-norm.txt" >&2 ||
  fail "ls latest sub: expected exactly sub/inner-unchanged.txt and sub/inner.txt"

# ls -l: still names every entry.
cairn_ok ls latest -l >"$T/ls-l.txt"
for p in unchanged.txt sub/inner.txt "dir with spaces/file with spaces.txt" 日本/語.txt link-relative; do
  expect_in "$p" "ls -l" "$T/ls-l.txt"
done
[ "$(wc -l <"$T/ls-l.txt")" -ge "$(wc -l <"$T/expected-ls.txt")" ] ||
  fail "ls -l prints fewer lines than there are entries"

# --- diff: one added, one removed, two modified (one nested).
printf 'added\n' >"$T/src/added.txt"
rm "$T/src/removed.txt"
printf 'version two, longer\n' >"$T/src/modified.txt"
printf 'inner two\n' >"$T/src/sub/inner.txt"
id2=$(backup_id "$T/src")
[ "$id1" != "$id2" ] || fail "second backup after changes returned the same snapshot id"

cairn_ok diff "${id1:0:10}" latest >"$T/diff.txt"
sed -e 's|^\([-+M]\) \./|\1 |' -e 's|^\([-+M]\) /|\1 |' "$T/diff.txt" >"$T/diff-norm.txt"
for line in "+ added.txt" "- removed.txt" "M modified.txt" "M sub/inner.txt"; do
  grep -qxF -- "$line" "$T/diff-norm.txt" || { cat "$T/diff.txt" >&2; fail "diff: no line '$line'"; }
done
for p in unchanged.txt sub/inner-unchanged.txt files/random-5m sparse.img; do
  if grep -qE "^[-+M] (\./|/)?$(printf '%s' "$p" | sed 's/[.]/\\./g')\$" "$T/diff.txt"; then
    cat "$T/diff.txt" >&2; fail "diff: unchanged '$p' is reported"
  fi
done

# Reverse direction swaps + and -.
cairn_ok diff "$id2" "$id1" >"$T/diff-rev.txt"
sed -e 's|^\([-+M]\) \./|\1 |' -e 's|^\([-+M]\) /|\1 |' "$T/diff-rev.txt" >"$T/diff-rev-norm.txt"
for line in "- added.txt" "+ removed.txt" "M modified.txt"; do
  grep -qxF -- "$line" "$T/diff-rev-norm.txt" || { cat "$T/diff-rev.txt" >&2; fail "reverse diff: no line '$line'"; }
done

# --- partial restore with --include.
cairn_ok restore "$id2" --target "$T/partial" --include 'sub/*' >/dev/null
[ -f "$T/partial/sub/inner.txt" ] || fail "restore --include 'sub/*' did not restore sub/inner.txt"
cmp "$T/partial/sub/inner.txt" "$T/src/sub/inner.txt" || fail "restore --include: sub/inner.txt has wrong bytes"
for p in unchanged.txt added.txt files/random-5m sparse.img; do
  [ ! -e "$T/partial/$p" ] || fail "restore --include 'sub/*' also restored '$p'"
done

cairn_ok restore "$id1" --target "$T/partial2" --include modified.txt >/dev/null
[ "$(cat "$T/partial2/modified.txt")" = "version one" ] ||
  fail "restore $id1 --include modified.txt: wrong content (expected the first version)"
[ ! -e "$T/partial2/unchanged.txt" ] || fail "restore --include modified.txt also restored unchanged.txt"

echo "PASS: ls_diff"
