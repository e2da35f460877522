#!/usr/bin/env bash
# Binlog shipping into an encrypted repository with a real MariaDB 10.11:
# binlog-push ships the closed files, binlog-fetch gives each back
# byte-identical (cmp) and mariadb-binlog reads it; the binlog objects are
# sealed (CAIRNENC header; a marker written into a table is in the binlog
# files but not readable in the repository); binlog-list and binlog-verify
# work; a wrong password is refused by push and fetch with a clear error and
# nothing written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"

export CAIRN_TEST_SCRYPT_N_LOG2=12
export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
MARK=BINMARK-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf 'binlog-password-%s\n' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$T/pw")
printf 'wrong\n' >"$T/bad"
cairn_ok init --encrypt --password-file "$T/pw" >/dev/null
export CAIRN_PASSWORD_FILE=$T/pw
my_init main
my_start main
DD=$(my_datadir main)
my_sql main "CREATE DATABASE d; CREATE TABLE d.t(i INT PRIMARY KEY, s VARCHAR(100)) ENGINE=InnoDB"
for round in 1 2 3; do
  my_sql main "INSERT INTO d.t SELECT seq + $round * 1000, CONCAT('$MARK', seq) FROM d.seq_1_to_500"
  my_sql main "FLUSH BINARY LOGS"
done
closed=$(sed 's|.*/||' "$DD/binlog.index" | sed '$d')
[ "$(echo "$closed" | wc -l)" -ge 3 ] || fail "expected 3 closed binlog files"
grep -qa -- "$MARK" "$DD"/binlog.0* || fail "control: the marker is not in the binlog files"

cairn_ok binlog-push "$DD" >/dev/null
n=0
while read -r f; do
  [ "$(head -c 8 "$f")" = CAIRNENC ] || fail "binlog object '$f' is not encrypted"
  n=$((n + 1))
done < <(find "$CAIRN_REPO/binlog" -type f)
[ "$n" -ge 3 ] || fail "expected at least 3 binlog objects, found $n"
if grep -rla -- "$MARK" "$CAIRN_REPO"; then fail "the marker is readable in the encrypted repository"; fi

for f in $closed; do
  run_cairn binlog-fetch "$f" "$T/fetched"
  expect_rc 0 "binlog-fetch $f"
  cmp -s "$DD/$f" "$T/fetched" || fail "binlog-fetch $f is not byte-identical"
  mariadb-binlog --no-defaults "$T/fetched" >/dev/null || fail "mariadb-binlog cannot read fetched $f"
  rm -f "$T/fetched"
done
cairn_ok binlog-list >/dev/null
cairn_ok binlog-verify >/dev/null

snap() { (cd "$CAIRN_REPO" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
snap >"$T/before.txt"
my_sql main "INSERT INTO d.t VALUES (1, 'one more'); FLUSH BINARY LOGS"
CAIRN_PASSWORD_FILE=$T/bad run_cairn binlog-push "$DD"
expect_error "binlog-push with a wrong password"
expect_in "wrong password or not a key of this repository" "binlog-push with a wrong password" "$ERR"
first=$(echo "$closed" | head -n 1)
CAIRN_PASSWORD_FILE=$T/bad run_cairn binlog-fetch "$first" "$T/bad-fetch"
expect_error "binlog-fetch with a wrong password"
expect_in "wrong password" "binlog-fetch with a wrong password" "$ERR"
[ ! -e "$T/bad-fetch" ] || fail "binlog-fetch with a wrong password wrote its destination"
snap >"$T/after.txt"
diff "$T/before.txt" "$T/after.txt" || fail "the repository changed after a wrong password"
echo "encrypt_binlog: ok"
