#!/usr/bin/env bash
# forget + prune end to end: six snapshots of a changing tree (distinct content
# each time, a copy of the source saved at every step); `forget` without keep
# options refuses; a pinned snapshot (`tag --add keep`) survives; --dry-run of
# forget and prune changes no file of the repository; the grace period spares
# young packs; then forget --keep-last 2 and prune --grace 0 shrink data/,
# `check --read-data` passes, every kept snapshot restores identically, the
# removed ones are gone from `snapshots --json`, and a second prune finds
# nothing to do.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd du

repo_sums() { # checksums of every object file (tmp/ holds only spool files)
  (cd "$CAIRN_REPO" && find . -type f ! -path './tmp/*' -print0 | LC_ALL=C sort -z |
    xargs -0 -r sha256sum)
}
data_bytes() { du -sb "$CAIRN_REPO/data" | cut -f1; }

cairn_repo_init
src=$T/src
mkdir -p "$src/static" "$src/docs"
head -c $((512 * 1024)) /dev/urandom >"$src/static/shared.bin"   # in every snapshot
for i in $(seq 1 20); do echo "static file $i" >"$src/static/s$i.txt"; done

declare -a id
for i in 1 2 3 4 5 6; do
  head -c $((2 * 1024 * 1024)) /dev/urandom >"$src/unique-$i.bin"
  rm -f "$src/unique-$((i - 1)).bin"              # each unique file is in one snapshot
  echo "step $i" >>"$src/docs/log.txt"
  mkdir -p "$src/docs/d$i"; echo "dir $i" >"$src/docs/d$i/f.txt"
  touch -d "2024-01-0$i 12:00:00" "$src/docs/log.txt"
  cp -a "$src" "$T/copy$i"
  id[$i]=$(backup_id "$src" --source app --tag nightly)
done

# --- tag: pin snapshot 2 (a new manifest replaces the old one) ---
pinned=$(cairn_ok tag "${id[2]}" --add keep | tr -d '[:space:]')
is_snapshot_id "$pinned" || fail "tag did not print a snapshot id: '$pinned'"
[ "$pinned" != "${id[2]}" ] || fail "tag did not write a new manifest"
[ ! -e "$CAIRN_REPO/snapshots/${id[2]}" ] || fail "tag left the old manifest"
python3 - "$CAIRN_REPO/snapshots/$pinned" "${id[2]}" <<'PY' || fail "retagged manifest is wrong"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["tags"] == ["nightly", "keep"], m["tags"]
assert m["original"] == sys.argv[2], m.get("original")
PY

# --- forget without any keep option refuses and removes nothing ---
run_cairn forget
expect_rc 2 "forget without keep options"
expect_in "refusing to forget without a keep rule" "forget refusal" "$ERR"
[ "$(ls "$CAIRN_REPO/snapshots" | wc -l)" -eq 6 ] || fail "forget without options removed snapshots"

# --- dry runs change nothing ---
repo_sums >"$T/sums.before"
cairn_ok forget --keep-last 2 --dry-run >"$T/forget-dry.out"
expect_in "would remove 3 snapshots" "forget --dry-run" "$T/forget-dry.out"
repo_sums >"$T/sums.after"
cmp -s "$T/sums.before" "$T/sums.after" || fail "forget --dry-run changed the repository"

# --- forget --keep-last 2: keeps 5, 6 and the pinned one ---
cairn_ok forget --keep-last 2 --json >"$T/forget.json"
python3 - "$T/forget.json" "${id[5]}" "${id[6]}" "$pinned" "${id[1]}" "${id[3]}" "${id[4]}" <<'PY' ||
import json, sys
j = json.load(open(sys.argv[1]))
keep_want, rm_want = set(sys.argv[2:5]), set(sys.argv[5:8])
(g,) = j["groups"]
assert g["source"] == "app", g
keep = {k["id"]: k["reasons"] for k in g["keep"]}
assert set(keep) == keep_want, (keep, keep_want)
assert {r["id"] for r in g["remove"]} == rm_want, g["remove"]
assert keep[sys.argv[4]] == ["tagged 'keep'"], keep[sys.argv[4]]
assert keep[sys.argv[3]] == ["last snapshot"], keep[sys.argv[3]]
assert j["removed"] == 3 and j["kept"] == 3, j
PY
  fail "forget --keep-last 2 --json: wrong decision (see above)"
cairn_ok snapshots --json >"$T/snaps.json"
python3 - "$T/snaps.json" "${id[5]}" "${id[6]}" "$pinned" <<'PY' || fail "snapshots --json after forget"
import json, sys
ids = {s["id"] for s in json.load(open(sys.argv[1]))}
assert ids == set(sys.argv[2:]), ids
PY

# --- prune --dry-run changes nothing; the grace period spares young packs ---
before=$(data_bytes)
repo_sums >"$T/sums.before"
cairn_ok prune --dry-run --grace 0 >"$T/prune-dry.out"
expect_in "would delete" "prune --dry-run" "$T/prune-dry.out"
repo_sums >"$T/sums.after"
cmp -s "$T/sums.before" "$T/sums.after" || fail "prune --dry-run changed the repository"
cairn_ok prune >"$T/prune-grace.out"      # default grace 1h: every pack is minutes old
expect_in "younger than the grace period" "prune with the default grace" "$T/prune-grace.out"
[ "$(data_bytes)" -eq "$before" ] || fail "prune deleted packs younger than the grace period"

# --- prune for real ---
cairn_ok prune --grace 0 --json >"$T/prune.json"
after=$(data_bytes)
note "data/: $before bytes before prune, $after after"
[ "$after" -lt $((before * 3 / 4)) ] || fail "prune did not shrink data/ enough ($before -> $after bytes)"
python3 - "$T/prune.json" <<'PY' || fail "prune --json summary"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["deleted_packs"] + j["repacked_packs"] >= 1, j
assert j["freed_bytes"] > 0, j
assert j["young_packs"] == 0, j
PY
[ -z "$(ls -A "$CAIRN_REPO/locks" 2>/dev/null)" ] || fail "prune left a lock behind"

cairn_ok check --read-data >"$T/check.out"
if grep -q "not in any index" "$T/check.out"; then fail "prune left unindexed packs"; fi

# --- every kept snapshot restores identically ---
for pair in "5:${id[5]}" "6:${id[6]}" "2:$pinned"; do
  n=${pair%%:*} s=${pair#*:}
  cairn_ok restore "$s" --target "$T/out$n" >/dev/null
  compare_trees "$T/copy$n" "$T/out$n"
done

# --- nothing left to do; a fresh catalog sees the same ---
cairn_ok prune --grace 0 --json >"$T/prune2.json"
python3 - "$T/prune2.json" <<'PY' || fail "a second prune still found work"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["deleted_packs"] == 0 and j["repacked_packs"] == 0 and j["unindexed_packs"] == 0, j
assert j["indexes_deleted"] == 0 and j["freed_bytes"] == 0, j
PY
CAIRN_CATALOG=$T/fresh.db cairn_ok snapshots --json >"$T/snaps2.json"
cmp -s <(json_get "$T/snaps.json" 'sorted(s["id"] for s in j)') \
       <(json_get "$T/snaps2.json" 'sorted(s["id"] for s in j)') ||
  fail "a fresh catalog lists other snapshots"

echo "PASS: forget_prune"
