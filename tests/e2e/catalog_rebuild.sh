#!/usr/bin/env bash
# The repository is the truth: delete the catalog, `cairn catalog rebuild`,
# and `snapshots --json` is the same as before.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$T/one/sub" "$T/two"
head -c 300000 /dev/urandom >"$T/one/data.bin"
echo hello >"$T/one/sub/hello.txt"
echo other >"$T/two/other.txt"

cairn_repo_init
id1=$(backup_id "$T/one" --source alpha --tag t1 --tag daily)
echo changed >"$T/one/sub/hello.txt"
id2=$(backup_id "$T/one" --source alpha)
id3=$(backup_id "$T/two" --source beta --tag t2)

cairn_ok snapshots --json >"$T/before.json"
python3 - "$T/before.json" "$id1" "$id2" "$id3" <<'PY' || fail "snapshots --json before the rebuild is wrong (see above)"
import json, sys
snaps = json.load(open(sys.argv[1]))
id1, id2, id3 = sys.argv[2:5]
assert isinstance(snaps, list), "not a JSON array"
keys = ["id", "short_id", "time", "source", "hostname", "paths", "tags", "tree", "parent",
        "partial", "files", "bytes_read", "bytes_new", "bytes_stored"]
for s in snaps:
    missing = [k for k in keys if k not in s]
    assert not missing, f"snapshot {s.get('id')} lacks keys {missing}"
by = {s["id"]: s for s in snaps}
assert set(by) == {id1, id2, id3}, f"ids {sorted(by)} != the three backups"
for i in (id1, id2, id3):
    assert i.startswith(by[i]["short_id"]) and len(by[i]["short_id"]) >= 8, f"short_id of {i}: {by[i]['short_id']!r}"
    assert by[i]["partial"] is False, f"{i} partial={by[i]['partial']!r}"
assert by[id1]["source"] == "alpha" and by[id3]["source"] == "beta", "source names not recorded"
assert sorted(by[id1]["tags"]) == ["daily", "t1"], f"tags of first: {by[id1]['tags']!r}"
assert by[id3]["tags"] == ["t2"], f"tags of third: {by[id3]['tags']!r}"
assert by[id2]["tags"] in ([], None), f"tags of second: {by[id2]['tags']!r}"
p = by[id2]["parent"]
assert isinstance(p, str) and len(p) >= 8 and id1.startswith(p), f"parent of the second alpha snapshot is {p!r}, expected {id1}"
assert by[id1]["files"] >= 2, f"files of first: {by[id1]['files']!r}"
PY

cairn_ok snapshots --json --source beta >"$T/beta.json"
[ "$(json_get "$T/beta.json" '[s["id"] for s in j]')" = "[\"$id3\"]" ] ||
  fail "snapshots --source beta: expected only $id3, got $(cat "$T/beta.json")"

rm -f "$CAIRN_CATALOG" "$CAIRN_CATALOG-wal" "$CAIRN_CATALOG-shm" "$CAIRN_CATALOG-journal"
[ ! -e "$CAIRN_CATALOG" ] || fail "could not delete the catalog"
cairn_ok catalog rebuild >/dev/null
[ -s "$CAIRN_CATALOG" ] || fail "catalog rebuild did not create $CAIRN_CATALOG"
cairn_ok snapshots --json >"$T/after.json"

python3 - "$T/before.json" "$T/after.json" <<'PY' || fail "snapshots --json differs after catalog rebuild"
import json, sys
def canon(path):
    return json.dumps(sorted(json.load(open(path)), key=lambda s: s["id"]), sort_keys=True, indent=1)
a, b = canon(sys.argv[1]), canon(sys.argv[2])
if a != b:
    import difflib
    sys.stderr.writelines(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "before", "after"))
    sys.exit(1)
PY

# The rebuilt catalog is usable: restore and a new backup with dedup work.
cairn_ok restore "$id1" --target "$T/restored" >/dev/null
cmp "$T/one/data.bin" "$T/restored/data.bin" || fail "restore after rebuild: data.bin differs"
[ "$(cat "$T/restored/sub/hello.txt")" = hello ] || fail "restore after rebuild: sub/hello.txt is not the first version"
n1=$(find "$CAIRN_REPO/data" -type f | wc -l)
backup_id "$T/one" --source alpha >/dev/null
n2=$(find "$CAIRN_REPO/data" -type f | wc -l)
[ "$n2" -eq "$n1" ] || fail "unchanged backup after rebuild stored $((n2 - n1)) new pack(s): dedup lost with the catalog"

echo "PASS: catalog_rebuild"
