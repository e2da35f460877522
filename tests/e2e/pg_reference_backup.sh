#!/usr/bin/env bash
# A PostgreSQL base backup whose files are in a storage snapshot (the agent's
# quiesce: postgres with snapshot: csi or exec, without cairn.io/csi-copy)
# cannot be restored from the repository. restore-pg must pass over it and
# take the newest base backup whose files are in the repository, say so when
# it is the one asked for (--from), and pg-backups must mark it. The two
# manifests are made with `cairn backup --meta` (the way the agent's copy Job
# records its sections), so no server is needed: restore-pg's plan is what is
# tested, up to its WAL check.
source "$(dirname "$0")/lib.sh"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
mkdir -p "$T/pgdata" "$T/empty"
echo 15 >"$T/pgdata/PG_VERSION"
pg_meta() { # START STOP TIME_S
  printf '"postgres":{"system_id":"7300000000000000001","start_lsn":"%s","stop_lsn":"%s","timeline":1,"start_time_ns":%s000000000,"stop_time_ns":%s000000000,"segment_size":16777216,"server_version":150005,"backup_label":"START WAL LOCATION: %s\\n"}' \
    "$1" "$2" "$3" "$(($3 + 1))" "$1"
}
FILES=$(cairn_ok backup "$T/pgdata" --source postgres:db --consistency app \
  --meta "{$(pg_meta 0/2000028 0/2000100 1700000000)}")
REF=$(cairn_ok backup "$T/empty" --source k8s:app/db --consistency app \
  --meta "{$(pg_meta 0/5000028 0/5000100 1700000900),\"snapshot\":{\"method\":\"csi\",\"quiesce\":\"postgres\",\"data\":\"reference\",\"volume_snapshot\":\"cairn-db-1\",\"namespace\":\"app\",\"handle\":\"snap-1\"}}")

# pg-backups: both listed, the storage snapshot marked
cairn_ok pg-backups >"$T/list"
[ "$(grep -c '^' "$T/list")" -eq 2 ] || { cat "$T/list" >&2; fail "pg-backups should list 2 base backups"; }
grep "^${REF:0:12} " "$T/list" | grep -q "storage snapshot" || fail "pg-backups does not mark the storage snapshot"
grep "^${FILES:0:12} " "$T/list" | grep -q "storage snapshot" && fail "pg-backups marks the base backup in the repository"
cairn_ok pg-backups --json >"$T/list.json"
[ "$(json_get "$T/list.json" '{b["id"]: b["data"] for b in j} == {"'"$FILES"'": "files", "'"$REF"'": "reference"}')" = true ] ||
  fail "pg-backups --json: data is not files/reference"

# --latest: the newer storage snapshot is passed over for the one in the
# repository (which then needs its WAL: the archive is empty, so the plan
# stops there, naming that base backup)
run_cairn restore-pg --target "$T/r1" --latest
expect_rc 1 "restore-pg --latest with no WAL archived"
expect_in "base backup ${FILES:0:12}" "restore-pg planned from the base backup in the repository" "$ERR"
expect_in "000000010000000000000002" "restore-pg names the first missing segment" "$ERR"
[ ! -e "$T/r1" ] || fail "restore-pg created its target although the plan failed"

# --from the storage snapshot: refused, saying why
run_cairn restore-pg --target "$T/r2" --latest --from "${REF:0:12}"
expect_rc 1 "restore-pg --from a storage snapshot"
expect_in "${REF:0:12} is a storage snapshot" "restore-pg says the base backup is a storage snapshot" "$ERR"
expect_in "csi-copy" "restore-pg says how to get its files into the repository" "$ERR"
[ ! -e "$T/r2" ] || fail "restore-pg created its target for a storage snapshot"
echo "PASS: pg_reference_backup"
