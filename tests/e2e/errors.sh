#!/usr/bin/env bash
# Bad input and damage: each gives a clear message and the documented exit
# status (0 ok, 1 error, 3 partial), never a crash.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# expect_re REGEX WHAT FILE...: case-insensitive extended regex in the output.
expect_re() {
  local re=$1 what=$2; shift 2
  if ! grep -qiE -- "$re" "$@"; then
    echo "--- output searched:" >&2; tail -n 30 "$@" >&2
    fail "$what: output does not match /$re/"
  fi
}
largest_file() { find "$1" -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-; }

MiB=$((1024 * 1024))
mkdir -p "$T/src/sub"
echo "hello" >"$T/src/hello.txt"
head -c 200000 /dev/urandom >"$T/src/sub/data.bin"
cairn_repo_init
id=$(backup_id "$T/src")

echo "== the repository URL forms work (--repo before/after the command, file://)" >&2
cairn_ok --repo "file://$CAIRN_REPO" snapshots >"$T/url1.txt"
expect_in "${id:0:8}" "--repo file://... snapshots" "$T/url1.txt"
cairn_ok snapshots --repo "$CAIRN_REPO" >"$T/url2.txt"
expect_in "${id:0:8}" "snapshots --repo PATH" "$T/url2.txt"

echo "== missing path" >&2
nsnap=$(find "$CAIRN_REPO/snapshots" -type f | wc -l)
run_cairn backup "$T/does-not-exist"
expect_error "backup of a missing path"
expect_in "$T/does-not-exist" "backup of a missing path" "$ERR" "$OUT"
[ "$(find "$CAIRN_REPO/snapshots" -type f | wc -l)" -eq "$nsnap" ] || fail "the failed backup of a missing path recorded a snapshot"

echo "== repository that does not exist" >&2
run_cairn --repo "$T/no-such-repo" snapshots
expect_rc 1 "snapshots on a missing repository"
expect_re 'not exist|no such|not found|no repository|not a repository|missing' "missing repository message" "$ERR" "$OUT"
expect_re 'init' "missing repository message suggests 'cairn init'" "$ERR" "$OUT"
run_cairn backup "$T/src" --repo "file://$T/no-such-repo"
expect_rc 1 "backup into a missing repository"
expect_re 'init' "backup into a missing repository suggests 'cairn init'" "$ERR" "$OUT"
[ ! -e "$T/no-such-repo/config" ] || fail "backup into a missing repository created one"

echo "== init twice" >&2
sum=$(sha256sum <"$CAIRN_REPO/config")
run_cairn init
expect_rc 1 "init over an existing repository"
expect_re 'exist|already' "init over an existing repository" "$ERR" "$OUT"
[ "$(sha256sum <"$CAIRN_REPO/config")" = "$sum" ] || fail "init over an existing repository changed its config"
run_cairn snapshots
expect_rc 0 "snapshots after a refused second init"
expect_in "${id:0:8}" "the snapshot survives a refused second init" "$OUT"

echo "== unknown snapshot" >&2
run_cairn restore 0000000000000000 --target "$T/unknown-target"
expect_rc 1 "restore of an unknown snapshot"
expect_in 0000000000000000 "restore of an unknown snapshot names it" "$ERR" "$OUT"

echo "== restore into a non-empty target" >&2
mkdir "$T/nonempty"; echo keep-me >"$T/nonempty/existing.txt"
run_cairn restore latest --target "$T/nonempty"
expect_rc 1 "restore into a non-empty target without --overwrite"
[ ! -e "$T/nonempty/hello.txt" ] || fail "refused restore still wrote files into the non-empty target"
[ "$(cat "$T/nonempty/existing.txt")" = keep-me ] || fail "refused restore touched an existing file"
cairn_ok restore latest --target "$T/nonempty" --overwrite >/dev/null
cmp "$T/src/sub/data.bin" "$T/nonempty/sub/data.bin" || fail "restore --overwrite: sub/data.bin differs"

echo "== repository not writable" >&2
if is_root; then
  # Root ignores permissions: back up as nobody into root's repository.
  unpriv_dir "$T/nobody-home"
  CAIRN_CATALOG=$T/nobody-home/catalog.db run_cairn_unpriv backup "$T/src"
else
  chmod -R a-w "$CAIRN_REPO"
  run_cairn backup "$T/src"
  chmod -R u+w "$CAIRN_REPO"
fi
expect_rc 1 "backup into a repository that is not writable"
expect_re 'permission|denied|not writable|read-only|EACCES' "backup into a read-only repository" "$ERR" "$OUT"
[ "$(find "$CAIRN_REPO/snapshots" -type f | wc -l)" -eq "$nsnap" ] || fail "backup into a read-only repository recorded a snapshot"

echo "== flipped byte in a pack" >&2
export CAIRN_REPO=$T/repo-flip CAIRN_CATALOG=$T/catalog-flip.db
cairn_ok init >/dev/null
mkdir "$T/src-flip"
head -c $((4 * MiB)) /dev/urandom >"$T/src-flip/victim.bin"
echo small >"$T/src-flip/small.txt"
fid=$(backup_id "$T/src-flip")
cairn_ok check --read-data >/dev/null
pack=$(largest_file "$CAIRN_REPO/data")
[ -n "$pack" ] || fail "no pack under $CAIRN_REPO/data"
packid=$(basename "$pack")
python3 - "$pack" <<'PY'
import os, sys
p = sys.argv[1]
os.chmod(p, 0o644)
with open(p, "r+b") as f:
    size = f.seek(0, 2)
    f.seek(size // 2)      # the middle of the largest pack is victim.bin data
    b = f.read(1)
    f.seek(size // 2)
    f.write(bytes([b[0] ^ 0x01]))
PY
run_cairn check --read-data
expect_rc 1 "check --read-data on a repository with a flipped byte"
expect_in "$packid" "check --read-data names the damaged pack" "$OUT" "$ERR"
expect_in "${fid:0:8}" "check --read-data names the affected snapshot" "$OUT" "$ERR"
expect_in "victim.bin" "check --read-data names the affected file" "$OUT" "$ERR"

echo "== deleted pack at restore time" >&2
export CAIRN_REPO=$T/repo-del CAIRN_CATALOG=$T/catalog-del.db
cairn_ok init >/dev/null
mkdir "$T/src-del"
echo "keep me" >"$T/src-del/keep.txt"
head -c $((1 * MiB)) /dev/urandom >"$T/src-del/keep.bin"
backup_id "$T/src-del" >/dev/null
find "$CAIRN_REPO/data" -type f | sort >"$T/packs-before"
# 40 MiB of new data fills at least two ~16 MiB packs of lost.bin chunks only.
head -c $((40 * MiB)) /dev/urandom >"$T/src-del/lost.bin"
did=$(backup_id "$T/src-del")
find "$CAIRN_REPO/data" -type f | sort >"$T/packs-after"
gone=$(comm -13 "$T/packs-before" "$T/packs-after" | xargs -r -d '\n' ls -S | head -n 1)
[ -n "$gone" ] || fail "the backup adding lost.bin stored no new pack"
rm -f "$gone"
gone_id=$(basename "$gone")
run_cairn check
expect_rc 1 "check with a deleted pack"
expect_in "$gone_id" "check names the missing pack" "$OUT" "$ERR"
run_cairn restore "$did" --target "$T/out-del"
expect_error "restore with a deleted pack"
expect_in "lost.bin" "restore with a deleted pack names the affected file" "$OUT" "$ERR"
for f in keep.txt keep.bin; do
  cmp -s "$T/src-del/$f" "$T/out-del/$f" ||
    fail "restore with a deleted pack did not restore the unaffected $f (missing or wrong bytes)"
done

echo "== unreadable file during backup" >&2
U=$T/unpriv
unpriv_dir "$U"
mkdir -p "$U/src/locked-dir"
echo ok >"$U/src/ok.txt"
echo secret >"$U/src/secret.txt"
echo hidden >"$U/src/locked-dir/inner.txt"
if is_root; then chown -R "$UNPRIV_USER:$UNPRIV_GROUP" "$U/src"; fi
chmod 000 "$U/src/secret.txt" "$U/src/locked-dir"
export CAIRN_REPO=$U/repo CAIRN_CATALOG=$U/catalog.db
run_cairn_unpriv init
expect_rc 0 "init as an unprivileged user"
run_cairn_unpriv backup "$U/src"
expect_rc 3 "backup with an unreadable file"
expect_in "secret.txt" "backup warning names the unreadable file" "$ERR"
expect_in "locked-dir" "backup warning names the unreadable directory" "$ERR"
pid=$(tr -d '[:space:]' <"$OUT")
is_snapshot_id "$pid" || fail "partial backup printed '$pid', not a snapshot id"
run_cairn_unpriv snapshots --json
expect_rc 0 "snapshots --json"
python3 - "$OUT" "$pid" <<'PY' || fail "snapshots --json does not mark the snapshot partial"
import json, sys
s = {x["id"]: x for x in json.load(open(sys.argv[1]))}[sys.argv[2]]
assert s["partial"] is True, f"partial={s['partial']!r}"
PY
run_cairn_unpriv backup "$U/src" --json
expect_rc 3 "backup --json with an unreadable file"
json_get "$OUT" 'j["partial"]' | grep -qx true || fail "backup --json: partial is not true ($(cat "$OUT"))"
run_cairn_unpriv restore "$pid" --target "$U/out"
expect_rc 0 "restore of a partial snapshot"
[ "$(cat "$U/out/ok.txt")" = ok ] || fail "restore of a partial snapshot lacks ok.txt"
chmod 755 "$U/src/locked-dir"

echo "PASS: errors"
