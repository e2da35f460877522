#!/usr/bin/env bash
# kill -9 of backups at random moments: after each, `check --read-data` passes,
# every snapshot that was acknowledged restores identically, and a later backup
# completes and reuses what the killed ones stored.
. "$(dirname "$0")/lib.sh"

cairn_repo_init
mkdir -p "$T/src"
for i in $(seq 1 16); do head -c 8000000 /dev/urandom >"$T/src/f$i"; done
id0=$(backup_id "$T/src")
cp -a "$T/src" "$T/src0"

RANDOM=4242
for round in $(seq 1 8); do
  # change part of the tree so every run has new data to store
  head -c 4000000 /dev/urandom >"$T/src/f$(( (round % 12) + 1 ))"
  head -c 2000000 /dev/urandom >"$T/src/new$round"
  # --force re-reads everything, so the run lasts long enough to be hit
  "$CAIRN" backup --force --workers 1 "$T/src" >"$T/out.$round" 2>"$T/err.$round" &
  pid=$!
  sleep "0.$(( RANDOM % 3 ))$(( RANDOM % 10 ))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ! "$CAIRN" check --read-data >"$T/check.$round" 2>&1; then
    cat "$T/check.$round" >&2
    fail "check --read-data fails after kill -9 in round $round"
  fi
done

killed=0
for round in $(seq 1 8); do [ -s "$T/out.$round" ] || killed=$((killed + 1)); done
[ "$killed" -ge 2 ] || fail "only $killed of 8 backups were killed before they finished: the test did not exercise kills"

# every acknowledged snapshot restores; the first one exactly as its source
"$CAIRN" snapshots --json >"$T/snaps.json"
python3 -c 'import json,sys; [print(s["id"]) for s in json.load(open(sys.argv[1]))]' "$T/snaps.json" >"$T/ids"
while read -r sid; do
  rm -rf "$T/r"
  cairn_ok restore "$sid" --target "$T/r" >/dev/null
done <"$T/ids"
rm -rf "$T/r"
cairn_ok restore "$id0" --target "$T/r" >/dev/null
diff -r "$T/src0" "$T/r" || fail "the first snapshot does not restore identically"

# a final backup completes and restores identically
id=$(backup_id "$T/src")
rm -rf "$T/r"
cairn_ok restore "$id" --target "$T/r" >/dev/null
diff -r "$T/src" "$T/r" || fail "the final snapshot does not restore identically"
cairn_ok check --read-data >/dev/null
echo "kill_backup: OK ($killed of 8 backups killed mid-run, $(wc -l <"$T/ids") snapshots restored)"
