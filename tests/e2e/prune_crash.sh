#!/usr/bin/env bash
# Crash safety of prune: a loop over injected crash points. The test hook
# CAIRN_PRUNE_CRASH_AT=N makes prune _exit(137) right before its Nth store
# mutation (pack or index put, delete, lock release), as a kill -9 there would.
# For N = 1, 2, ... until a prune completes: start from the same repository,
# crash at N, then `check --read-data` must pass and every kept snapshot must
# restore identically; then a prune without the hook must complete (it also
# cleans up the crash's leftovers), leaving a clean repository: check passes
# with no unindexed packs and another prune finds nothing to do.
# Packs are made small (1 MiB) so a few MiB give a plan with every kind of
# step: deleted packs, repacked packs, rewritten indexes, a leftover pack;
# --max-unused 0 makes every partly used pack a repack. About 10 crash points.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cairn_repo_init
python3 - "$CAIRN_REPO/config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["pack_size"] = 1 << 20
open(sys.argv[1], "w").write(json.dumps(c, indent=2, sort_keys=True))
PY

# Each backup stores, in file order: grow/g$i (2.5 MiB, kept by every later
# snapshot: at least one pack of live data only), static/ (first backup only:
# live, packed with dead data), unique-$i (data only its own snapshot uses) and
# the trees. Forgetting snapshots 1 and 3 thus leaves packs to delete, packs to
# repack, and index objects that name both packs that go and packs that stay
# (those get a new index entry: "kept pack" in the report).
src=$T/src
mkdir -p "$src/static" "$src/grow"
head -c $((400 * 1024)) /dev/urandom >"$src/static/shared.bin"
for i in $(seq 1 10); do echo "static $i" >"$src/static/s$i.txt"; done
declare -a id
for i in 1 2 3 4 5; do
  head -c $((2500 * 1024)) /dev/urandom >"$src/grow/g$i.bin"
  head -c $((4000 * 1024)) /dev/urandom >"$src/unique-$i.bin"
  rm -f "$src/unique-$((i - 1)).bin"
  echo "step $i" >"$src/step.txt"
  cp -a "$src" "$T/copy$i"
  id[$i]=$(backup_id "$src" --source crash)
done
cairn_ok tag "${id[2]}" --add keep >"$T/tag.out"
id[2]=$(tr -d '[:space:]' <"$T/tag.out")
cairn_ok forget --keep-last 2 >"$T/forget.out"
expect_in "removed 2 snapshots" "forget" "$T/forget.out"
kept="2 4 5"

# a leftover of an interrupted backup: a pack no index names
some_pack=$(find "$CAIRN_REPO/data" -type f | head -n 1)
leftover=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$CAIRN_REPO/data/${leftover:0:2}"
cp "$some_pack" "$CAIRN_REPO/data/${leftover:0:2}/$leftover"

cp -a "$CAIRN_REPO" "$T/pristine"

verify_kept() { # WHAT
  local n
  for n in $kept; do
    rm -rf "$T/out"
    cairn_ok restore "${id[$n]}" --target "$T/out" >/dev/null
    diff -r "$T/copy$n" "$T/out" >/dev/null || fail "$1: snapshot $n does not restore identically"
  done
}

N=0 completed=0
while [ "$N" -lt 200 ]; do
  N=$((N + 1))
  rm -rf "$CAIRN_REPO"
  cp -a "$T/pristine" "$CAIRN_REPO"
  export CAIRN_CATALOG=$T/catalog.$N.db   # a fresh cache each round: the store is the truth
  rc=0
  echo "+ CAIRN_PRUNE_CRASH_AT=$N cairn prune --grace 0 --max-unused 0" >&2
  CAIRN_PRUNE_CRASH_AT=$N "$CAIRN" prune --grace 0 --max-unused 0 --verbose >"$T/crash.out" 2>"$T/crash.err" || rc=$?
  if [ "$rc" -eq 0 ]; then
    completed=1
    note "prune completed with the hook at $N: it makes $((N - 1)) store mutations"
    break
  fi
  [ "$rc" -eq 137 ] || { cat "$T/crash.err" >&2; fail "prune with crash point $N exited $rc, not 137"; }

  # right after the crash
  run_cairn check --read-data
  if [ "$RC" -ne 0 ]; then
    cat "$OUT" "$ERR" >&2
    fail "check --read-data fails after a crash before mutation $N"
  fi
  verify_kept "after a crash before mutation $N"

  # recovery: a normal prune completes and the repository ends clean
  cairn_ok prune --grace 0 --max-unused 0 >/dev/null
  cairn_ok check --read-data >"$T/check.out"
  if grep -q "not in any index" "$T/check.out"; then
    fail "after recovering from crash point $N: packs in no index remain"
  fi
  cairn_ok prune --grace 0 --max-unused 0 --json >"$T/again.json"
  json_get "$T/again.json" 'j["deleted_packs"] + j["repacked_packs"] + j["unindexed_packs"] + j["indexes_deleted"]' >"$T/work"
  [ "$(cat "$T/work")" = 0 ] || fail "after recovering from crash point $N, prune still finds work"
  verify_kept "after recovering from crash point $N"
  rm -f "$T"/catalog.$N.db*
done
[ "$completed" = 1 ] || fail "prune never completed"
[ "$N" -ge 6 ] || fail "the plan has only $((N - 1)) mutations: the test covers too little"

# the completed run did every kind of step
cat "$T/crash.out" >&2
for what in "repack pack" "no snapshot uses it" "in no index" "new pack" "kept pack" "deleted index"; do
  expect_in "$what" "the uninterrupted prune" "$T/crash.out"
done
cairn_ok check --read-data >"$T/check.out"
if grep -q "not in any index" "$T/check.out"; then fail "the completed prune left unindexed packs"; fi
verify_kept "after the completed prune"
[ -z "$(ls -A "$CAIRN_REPO/locks" 2>/dev/null)" ] || fail "prune left a lock behind"

echo "PASS: prune_crash ($((N - 1)) crash points)"
