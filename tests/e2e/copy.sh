#!/usr/bin/env bash
# cairn copy: snapshots copied between repositories with different keys
# (docs/user-guide.md "Off-site copies", docs/repository-format.md copied_from):
#  - plain -> encrypted: every snapshot restores from the copy with the full
#    fixture's metadata (compare_trees: bytes, modes, owners, hardlinks,
#    xattrs, ACLs, holes), check --read-data passes on the destination;
#  - a rerun copies nothing and writes no object;
#  - a new backup, then copy: only it is copied, with few new bytes stored
#    and few bytes read (the earlier copy is walked beside it);
#  - encrypted -> plain: the manifest records copied_from {repo, snapshot};
#  - kill -9 mid-copy leaves a repository check passes and no snapshot;
#    the rerun reuses what was stored and restores identically;
#  - prune of either repository is refused while a copy runs (its leases);
#  - --tag / SNAP selection, --dry-run, --json;
#  - bad inputs: missing destination (says cairn init), destination = source,
#    missing and wrong destination password, unknown snapshot, a damaged
#    source pack (that snapshot fails naming the pack and file, the other is
#    copied, exit 1), no --to (usage);
#  - a copy into an S3 bucket (s3rver behind the SigV4-checking proxy), also
#    with the destination's own credentials (CAIRN_TO_AWS_*), and from it
#    back into an encrypted local repository.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CAIRN_TEST_SCRYPT_N_LOG2=12 # the default scrypt cost is ~0.4 s per open
unset CAIRN_PASSWORD_FILE CAIRN_TO_PASSWORD_FILE CAIRN_TO_CATALOG
umask 077
printf 'dest-password-%s\n' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$T/pwb"
printf 'wrong\n' >"$T/bad"

A=$T/a B=$T/b C=$T/c
export CAIRN_REPO=$A CAIRN_CATALOG=$T/a.db
cairn_ok init >/dev/null
run_cairn --repo "$B" --catalog "$T/b-init.db" --password-file "$T/pwb" init --encrypt
expect_rc 0 "init --encrypt of the destination"
cairn_ok --repo "$C" --catalog "$T/c-init.db" init >/dev/null

# to B: the source is $CAIRN_REPO (plain), the destination encrypted
copy_b() { run_cairn copy --to "$B" --to-password-file "$T/pwb" --to-catalog "$T/b.db" "$@"; }
in_b() { cairn_ok --repo "$B" --catalog "$T/b.db" --password-file "$T/pwb" "$@"; }
objects() { (cd "$1" && find . -type f ! -path './locks/*' | sort); }

FIXTURE_SPARSE_MIB=64 make_fixture "$T/src"
mkdir -p "$T/other"
head -c 300000 /dev/urandom >"$T/other/blob"
id1=$(backup_id "$T/src" --tag nightly)
id2=$(backup_id "$T/other" --source other)

echo "== plain -> encrypted" >&2
copy_b
expect_rc 0 "copy into the encrypted repository"
expect_in "copied ${id1:0:12} -> " "the copy of the fixture snapshot is reported" "$OUT"
expect_in "copied ${id2:0:12} -> " "the copy of the other snapshot is reported" "$OUT"
expect_in "copied 2 snapshots, 0 already copied, 0 failed" "summary" "$OUT"
in_b snapshots --json >"$T/b.json"
[ "$(json_get "$T/b.json" 'len(j)')" = 2 ] || fail "the destination does not list 2 snapshots"
[ "$(json_get "$T/b.json" '[s["source"] for s in j if "nightly" in s["tags"]][0]')" = \
  "$(hostname):$T/src" ] || fail "the copy lost the snapshot's source or tags"
in_b restore "$(json_get "$T/b.json" '[s["id"] for s in j if "nightly" in s["tags"]][0]')" \
  --target "$T/r1" >/dev/null
compare_trees "$T/src" "$T/r1"
in_b restore "$(json_get "$T/b.json" '[s["id"] for s in j if s["source"] == "other"][0]')" \
  --target "$T/r2" >/dev/null
cmp "$T/other/blob" "$T/r2/blob" || fail "the other snapshot's file differs after the copy"
in_b check --read-data >/dev/null
# the destination really holds its own, encrypted data: no pack of A is in B
(cd "$A/data" && find . -type f | sort) >"$T/a.packs"
(cd "$B/data" && find . -type f | sort) >"$T/b.packs"
[ -z "$(comm -12 "$T/a.packs" "$T/b.packs")" ] || fail "packs were copied as they are, not re-encoded"

echo "== rerun: nothing to copy" >&2
objects "$B" >"$T/b.before"
copy_b --json
expect_rc 0 "rerun"
[ "$(json_get "$OUT" 'j["copied"]')" = 0 ] || fail "a rerun copied again"
[ "$(json_get "$OUT" 'j["skipped"]')" = 2 ] || fail "a rerun did not report 2 skipped"
objects "$B" >"$T/b.after"
diff "$T/b.before" "$T/b.after" >&2 || fail "a rerun wrote objects into the destination"

echo "== a new backup: only it is copied, deduplicated" >&2
printf 'a small change\n' >"$T/src/files/changed.txt"
id3=$(backup_id "$T/src" --tag nightly)
copy_b --json
expect_rc 0 "incremental copy"
[ "$(json_get "$OUT" 'j["copied"]')" = 1 ] || fail "the incremental copy did not copy exactly 1 snapshot"
[ "$(json_get "$OUT" '[s["snapshot"] for s in j["snapshots"] if s["status"] == "copied"][0]')" = "$id3" ] ||
  fail "the incremental copy copied another snapshot than the new one"
stored=$(json_get "$OUT" 'j["bytes_stored"]')
read_b=$(json_get "$OUT" 'j["bytes_read"]')
[ "$stored" -lt 100000 ] || fail "the incremental copy stored $stored bytes (expected a few KiB: dedup)"
[ "$read_b" -lt 100000 ] || fail "the incremental copy read $read_b bytes from the source (unchanged files should not be read)"
in_b snapshots --json >"$T/b.json"
rm -rf "$T/r3"
in_b restore "$(json_get "$T/b.json" '[s["id"] for s in j if "nightly" in s["tags"]][-1]')" \
  --target "$T/r3" >/dev/null
compare_trees "$T/src" "$T/r3"

echo "== encrypted -> plain, selected by tag and by id" >&2
run_cairn --repo "$B" --catalog "$T/b.db" --password-file "$T/pwb" copy --to "$C" \
  --to-catalog "$T/c.db" --tag nightly --dry-run
expect_rc 0 "dry run"
[ "$(grep -c '^would copy ' "$OUT")" = 2 ] || fail "the dry run does not list the 2 nightly snapshots"
[ ! -d "$C/snapshots" ] || [ -z "$(ls "$C/snapshots")" ] || fail "the dry run wrote a snapshot"
bid=$(json_get "$T/b.json" '[s["id"] for s in j if s["source"] == "other"][0]')
run_cairn --repo "$B" --catalog "$T/b.db" --password-file "$T/pwb" copy --to "$C" \
  --to-catalog "$T/c.db" "${bid:0:10}"
expect_rc 0 "copy of one snapshot by id prefix"
[ "$(ls "$C/snapshots" | wc -l)" = 1 ] || fail "copy SNAP did not copy exactly that snapshot"
python3 - "$C/snapshots" "$B/config" "$bid" <<'EOF' || fail "copied_from is not recorded in the manifest"
import json, os, sys
d, cfgp, bid = sys.argv[1:]
m = json.load(open(os.path.join(d, os.listdir(d)[0])))
cfg = json.load(open(cfgp))
assert m["copied_from"] == {"repo": cfg["id"], "snapshot": bid}, m.get("copied_from")
assert m["source"] == "other"
EOF
run_cairn --repo "$B" --catalog "$T/b.db" --password-file "$T/pwb" copy --to "$C" --to-catalog "$T/c.db"
expect_rc 0 "copy of the rest"
expect_in "copied 2 snapshots, 1 already copied" "copy of the rest: summary" "$OUT"
cairn_ok --repo "$C" --catalog "$T/c.db" snapshots --json >"$T/c.json"
cairn_ok --repo "$C" --catalog "$T/c.db" restore \
  "$(json_get "$T/c.json" '[s["id"] for s in j if "nightly" in s["tags"]][-1]')" --target "$T/r4" >/dev/null
compare_trees "$T/src" "$T/r4"
cairn_ok --repo "$C" --catalog "$T/c.db" check --read-data >/dev/null

echo "== bad inputs" >&2
run_cairn copy --to "$T/nope" --to-catalog "$T/nope.db"
expect_error "copy into a missing repository"
expect_in "cairn init" "missing destination: says to init it" "$ERR"
run_cairn copy --to "$A" --to-catalog "$T/a2.db"
expect_error "copy into the source itself"
expect_in "is the source repository" "destination = source" "$ERR"
run_cairn copy --to "$B" --to-catalog "$T/b.db"
expect_error "encrypted destination without a password"
expect_in "--to-password-file" "missing destination password: names the option" "$ERR"
run_cairn copy --to "$B" --to-catalog "$T/b.db" --to-password-file "$T/bad"
expect_error "wrong destination password"
expect_in "wrong password" "wrong destination password" "$ERR"
run_cairn copy --to "$B" --to-catalog "$T/b.db" --to-password-file "$T/pwb" 0123456789abcdef
expect_error "unknown snapshot"
expect_in "no snapshot '0123456789abcdef'" "unknown snapshot is named" "$ERR"
run_cairn copy
expect_rc 2 "copy without --to"
objects "$B" >"$T/b.after2"
in_b snapshots --json >"$T/b.json2"
[ "$(json_get "$T/b.json2" 'len(j)')" = 3 ] || fail "a refused copy changed the destination's snapshots"

echo "== a damaged source pack" >&2
E=$T/e F=$T/f
cairn_ok --repo "$E" --catalog "$T/e.db" init >/dev/null
cairn_ok --repo "$F" --catalog "$T/f.db" init >/dev/null
mkdir -p "$T/d1" "$T/d2"
head -c 200000 /dev/urandom >"$T/d1/damaged-file"
head -c 200000 /dev/urandom >"$T/d2/fine-file"
cairn_ok --repo "$E" --catalog "$T/e.db" backup "$T/d1" --source d1 >/dev/null
pack=$(cd "$E/data" && find . -type f | sed 's|^\./||')
cairn_ok --repo "$E" --catalog "$T/e.db" backup "$T/d2" --source d2 >/dev/null
python3 - "$E/data/$pack" <<'EOF'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(5000)
    b = f.read(16)
    f.seek(5000)
    f.write(bytes(x ^ 0x5A for x in b))
EOF
run_cairn --repo "$E" --catalog "$T/e.db" copy --to "$F" --to-catalog "$T/f.db"
expect_rc 1 "copy from a damaged source"
expect_in "${pack#*/}" "the damaged pack is named" "$ERR"
expect_in "damaged-file" "the file in the damaged pack is named" "$ERR"
expect_in "copied 1 snapshots, 0 already copied, 1 failed" "the undamaged snapshot is copied" "$OUT"
cairn_ok --repo "$F" --catalog "$T/f.db" snapshots --json >"$T/f.json"
[ "$(json_get "$T/f.json" '[s["source"] for s in j]')" = '["d2"]' ] ||
  fail "the destination should hold only the undamaged snapshot"
cairn_ok --repo "$F" --catalog "$T/f.db" check --read-data >/dev/null

echo "== kill -9 mid-copy" >&2
G=$T/g
mkdir -p "$T/big"
for i in $(seq 1 12); do head -c 6000000 /dev/urandom >"$T/big/f$i"; done
idb=$(backup_id "$T/big" --source big)
# a destination with 1 MiB packs (the smallest a config allows), so the
# copy writes index objects (every 16 packs) well before it ends
new_g() {
  rm -rf "$G" "$T/g.db"*
  cairn_ok --repo "$G" --catalog "$T/g.db" init >/dev/null
  python3 - "$G/config" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["pack_size"] = 1 << 20
open(p, "w").write(json.dumps(c))
EOF
}
killed=0
for attempt in 1 2 3; do
  new_g
  "$CAIRN" copy --to "$G" --to-catalog "$T/g.db" --workers 1 "$idb" >"$T/kill.out" 2>"$T/kill.err" &
  pid=$!
  # kill -9 as soon as the first index object is there: data is then stored
  # and indexed, but the copy is far from done
  for _ in $(seq 1 2000); do
    [ -n "$(ls "$G/index" 2>/dev/null)" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ! grep -q '^copied 1 snapshots' "$T/kill.out"; then killed=1; break; fi
  note "attempt $attempt: the copy finished before the kill"
done
[ "$killed" = 1 ] || fail "every copy finished before the kill: the test did not exercise a kill"
[ -z "$(ls "$G/snapshots" 2>/dev/null)" ] || fail "a killed copy wrote a snapshot"
[ -n "$(ls "$G/index" 2>/dev/null)" ] || fail "the killed copy had indexed nothing: the test did not exercise reuse"
cairn_ok --repo "$G" --catalog "$T/g.db" check --read-data >/dev/null
run_cairn copy --to "$G" --to-catalog "$T/g.db" "$idb" --json
expect_rc 0 "rerun after kill -9"
[ "$(json_get "$OUT" 'j["copied"]')" = 1 ] || fail "the rerun after kill -9 did not copy the snapshot"
new=$(json_get "$OUT" 'j["bytes_new"]')
note "the rerun after kill -9 stored $new new bytes of 72000000"
[ "$new" -lt 72000000 ] || fail "the rerun after kill -9 reused nothing the killed copy had stored"
cairn_ok --repo "$G" --catalog "$T/g.db" check --read-data >/dev/null
cairn_ok --repo "$G" --catalog "$T/g.db" restore latest --target "$T/r5" >/dev/null
diff -r "$T/big" "$T/r5" || fail "the snapshot copied after a kill -9 does not restore identically"

echo "== prune waits for a running copy (leases on both sides)" >&2
G=$T/h
new_g
"$CAIRN" copy --to "$G" --to-catalog "$T/g.db" --workers 1 "$idb" >"$T/lease.out" 2>"$T/lease.err" &
pid=$!
for _ in $(seq 1 2000); do
  [ -n "$(ls "$G/locks" 2>/dev/null)" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
run_cairn --repo "$G" --catalog "$T/h-prune.db" prune
dst_rc=$RC dst_err=$ERR
run_cairn prune --catalog "$T/a-prune.db"
src_rc=$RC src_err=$ERR
if kill -0 "$pid" 2>/dev/null; then
  [ "$dst_rc" != 0 ] || fail "prune of the destination ran during a copy"
  expect_in "of copy" "prune of the destination names the copy's lease" "$dst_err"
  [ "$src_rc" != 0 ] || fail "prune of the source ran during a copy"
  expect_in "of copy" "prune of the source names the copy's lease" "$src_err"
else
  note "the copy ended before prune ran; lease part not exercised"
fi
wait "$pid" || fail "the copy failed while prune was refused: $(cat "$T/lease.err")"
cairn_ok --repo "$G" --catalog "$T/g.db" check --read-data >/dev/null

echo "== S3 destination" >&2
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"
  export CAIRN_REPO=$A CAIRN_CATALOG=$T/a.db # s3_start exports its own
  s3_start
  export CAIRN_REPO=$A CAIRN_CATALOG=$T/a.db
  S3=s3://$S3_BUCKET/offsite
  cairn_ok --repo "$S3" --catalog "$T/s3-init.db" init >/dev/null
  run_cairn copy --to "$S3" --to-catalog "$T/s3.db" --tag nightly
  expect_rc 0 "copy into S3"
  expect_in "copied 2 snapshots" "copy into S3: summary" "$OUT"
  run_cairn copy --to "$S3" --to-catalog "$T/s3.db" --tag nightly
  expect_in "copied 0 snapshots, 2 already copied" "S3 rerun" "$OUT"
  cairn_ok --repo "$S3" --catalog "$T/s3-fresh.db" restore latest --target "$T/r6" >/dev/null
  compare_trees "$T/src" "$T/r6"
  cairn_ok --repo "$S3" --catalog "$T/s3.db" check --read-data >/dev/null
  # the destination's own credentials (CAIRN_TO_AWS_*): a second account
  AWS_SECRET_ACCESS_KEY=not-the-secret run_cairn copy --to "$S3" --to-catalog "$T/s3.db" --source other
  expect_error "copy into S3 with a wrong secret"
  AWS_SECRET_ACCESS_KEY=not-the-secret CAIRN_TO_AWS_ACCESS_KEY_ID=$S3_KEY2 \
    CAIRN_TO_AWS_SECRET_ACCESS_KEY=wrong-$S3_SECRET2 \
    run_cairn copy --to "$S3" --to-catalog "$T/s3.db" --source other
  expect_error "copy into S3 with a wrong CAIRN_TO_AWS_SECRET_ACCESS_KEY"
  AWS_SECRET_ACCESS_KEY=not-the-secret CAIRN_TO_AWS_ACCESS_KEY_ID=$S3_KEY2 \
    CAIRN_TO_AWS_SECRET_ACCESS_KEY=$S3_SECRET2 \
    run_cairn copy --to "$S3" --to-catalog "$T/s3.db" --source other
  expect_rc 0 "copy into S3 with the destination's own credentials (CAIRN_TO_AWS_*)"
  expect_in "copied 1 snapshots" "copy with CAIRN_TO_AWS_*: summary" "$OUT"
  ! grep -rqF -- "$S3_SECRET2" "$T"/cmd.* || fail "the destination's secret appears in cairn's output"
  # and back: S3 as the source, into a new encrypted local repository
  cairn_ok --repo "$T/back" --catalog "$T/back-init.db" --password-file "$T/pwb" init --encrypt >/dev/null
  run_cairn --repo "$S3" --catalog "$T/s3.db" copy --to "$T/back" --to-catalog "$T/back.db" \
    --to-password-file "$T/pwb" --tag nightly
  expect_rc 0 "copy from S3 into an encrypted local repository"
  expect_in "copied 2 snapshots" "copy from S3: summary" "$OUT"
  cairn_ok --repo "$T/back" --catalog "$T/back.db" --password-file "$T/pwb" restore latest \
    --target "$T/r7" >/dev/null
  compare_trees "$T/src" "$T/r7"
else
  note "node/npm not installed: the S3 part is skipped"
fi

echo "PASS: copy"
