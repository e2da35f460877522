#!/usr/bin/env bash
# A local repository is private by default (0700 directories, 0600 objects,
# the catalog 0600), and objects follow the repository directory's mode when
# the owner opens it up (chmod 0750 to share with a group).
. "$(dirname "$0")/lib.sh"

cairn_repo_init
mkdir -p "$T/src/sub"
echo hello >"$T/src/a"
head -c 300000 /dev/urandom >"$T/src/sub/b"
cairn_ok backup "$T/src" >/dev/null

bad=$(find "$CAIRN_REPO" \( -type d ! -perm 0700 \) -o \( -type f ! -perm 0600 \) | head -n 5)
[ -z "$bad" ] || fail "repository objects are not private: $(stat -c '%a %n' $bad)"
[ "$(stat -c %a "$CAIRN_CATALOG")" = 600 ] || fail "catalog mode is $(stat -c %a "$CAIRN_CATALOG"), want 600"

chmod 0750 "$CAIRN_REPO"
echo changed >"$T/src/a"
head -c 300000 /dev/urandom >"$T/src/c"
cairn_ok backup "$T/src" >/dev/null
newest=$(find "$CAIRN_REPO/snapshots" -type f -newer "$CAIRN_REPO/config" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)
[ "$(stat -c %a "$newest")" = 640 ] || fail "a snapshot written after chmod 0750 has mode $(stat -c %a "$newest"), want 640"
pack=$(find "$CAIRN_REPO/data" -type f -perm 0640 | head -n 1)
[ -n "$pack" ] || fail "no pack written after chmod 0750 has mode 640: $(find "$CAIRN_REPO/data" -type f -printf '%m %p\n')"
echo "repo_modes: OK"
