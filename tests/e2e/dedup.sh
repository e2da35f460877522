#!/usr/bin/env bash
# Dedup: an unchanged second backup stores no new pack and reads no file data;
# changing 1 MiB inside a 100 MiB file stores less than 5 MiB.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd du dd

MiB=$((1024 * 1024))
count_data() { find "$CAIRN_REPO/data" -type f | wc -l; }
data_bytes() { du -sb "$CAIRN_REPO/data" | cut -f1; }
check_json_keys() { # FILE
  python3 - "$1" <<'PY' || fail "backup --json: bad summary object (see above)"
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j, dict), "not a JSON object"
missing = [k for k in ("id", "files", "bytes_read", "bytes_new", "bytes_stored", "duration", "partial") if k not in j]
assert not missing, f"missing keys {missing} in {j}"
assert isinstance(j["id"], str) and len(j["id"]) == 64, f"id is not a 64-hex string: {j['id']!r}"
for k in ("files", "bytes_read", "bytes_new", "bytes_stored"):
    assert isinstance(j[k], int) and not isinstance(j[k], bool) and j[k] >= 0, f"{k} is not a count: {j[k]!r}"
assert j["partial"] is False, f"partial is {j['partial']!r}, expected false"
PY
}

mkdir -p "$T/src/sub"
head -c $((3 * MiB)) /dev/urandom >"$T/src/a.bin"
head -c $((700 * 1024)) /dev/urandom >"$T/src/sub/b.bin"
for i in $(seq 1 50); do echo "small file $i" >"$T/src/sub/small-$i.txt"; done
cairn_repo_init

# --- 1. An unchanged second backup adds nothing under data/.
cairn_ok backup "$T/src" --json >"$T/b1.json"
check_json_keys "$T/b1.json"
n1=$(count_data)
[ "$n1" -gt 0 ] || fail "first backup stored no object under data/"
[ "$(json_get "$T/b1.json" 'j["files"]')" -ge 52 ] || fail "first backup: files < 52 ($(cat "$T/b1.json"))"
[ "$(json_get "$T/b1.json" 'j["bytes_new"]')" -ge $((3 * MiB)) ] || fail "first backup: bytes_new below the 3.7 MiB of random data"

cairn_ok backup "$T/src" --json >"$T/b2.json"
check_json_keys "$T/b2.json"
n2=$(count_data)
[ "$n2" -eq "$n1" ] || fail "unchanged second backup added $((n2 - n1)) object(s) under data/ ($n1 -> $n2)"
[ "$(json_get "$T/b2.json" 'j["bytes_new"]')" -eq 0 ] || fail "unchanged second backup: bytes_new is not 0 ($(cat "$T/b2.json"))"
# Files whose dev/inode/size/mtime/ctime match the parent are not read again.
[ "$(json_get "$T/b2.json" 'j["bytes_read"]')" -eq 0 ] ||
  fail "unchanged second backup re-read file data: bytes_read=$(json_get "$T/b2.json" 'j["bytes_read"]')"
[ "$(json_get "$T/b1.json" 'j["id"]')" != "$(json_get "$T/b2.json" 'j["id"]')" ] ||
  fail "the second backup returned the first snapshot's id"

# --- 2. 1 MiB changed inside a 100 MiB file stores < 5 MiB.
rm -rf "$T/src"; mkdir "$T/src"
head -c $((100 * MiB)) /dev/urandom >"$T/src/big.bin"
cairn_ok backup "$T/src" --json >"$T/b3.json"
check_json_keys "$T/b3.json"
[ "$(json_get "$T/b3.json" 'j["bytes_new"]')" -ge $((100 * MiB)) ] ||
  fail "backup of 100 MiB of new random data: bytes_new=$(json_get "$T/b3.json" 'j["bytes_new"]')"
before=$(data_bytes)

dd if=/dev/urandom of="$T/src/big.bin" bs=1M seek=50 count=1 conv=notrunc status=none
cairn_ok backup "$T/src" --json >"$T/b4.json"
check_json_keys "$T/b4.json"
after=$(data_bytes)
growth=$((after - before))
echo "repo/data grew by $growth bytes; summary: $(cat "$T/b4.json")" >&2
[ "$growth" -lt $((5 * MiB)) ] || fail "changing 1 MiB of a 100 MiB file grew repo/data by $growth bytes (>= 5 MiB)"
bytes_new=$(json_get "$T/b4.json" 'j["bytes_new"]')
bytes_read=$(json_get "$T/b4.json" 'j["bytes_read"]')
[ "$bytes_new" -ge "$MiB" ] || fail "bytes_new=$bytes_new is below the 1 MiB that changed"
[ "$bytes_new" -le $((4 * MiB)) ] || fail "bytes_new=$bytes_new: more than 4 MiB new for a 1 MiB change"
[ "$bytes_read" -ge $((100 * MiB)) ] || fail "the changed 100 MiB file was not read in full: bytes_read=$bytes_read"

# And the changed file restores to its new bytes.
id4=$(json_get "$T/b4.json" 'j["id"]')
cairn_ok restore "$id4" --target "$T/restored" >/dev/null
cmp "$T/src/big.bin" "$T/restored/big.bin" || fail "restored big.bin differs from the source"

echo "PASS: dedup"
