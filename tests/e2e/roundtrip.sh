#!/usr/bin/env bash
# Round trip: a tree with every kind of entry -> backup -> restore -> the
# restored tree matches the source (bytes, type, mode, owner, link count,
# hardlinks, nanosecond mtimes, device numbers, xattrs, ACLs, holes).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

is_root || note "not root: device nodes and foreign owners are not covered by this run"
make_fixture "$T/src"
echo "fixture: xattrs=$FIX_XATTR acls=$FIX_ACL devices=$FIX_DEV owners=$FIX_OWNER" >&2

cairn_repo_init
id=$(backup_id "$T/src")

# The snapshot is listed, and restore by id prefix gives the source tree.
cairn_ok snapshots >"$T/snapshots.txt"
expect_in "${id:0:8}" "snapshots lists the new snapshot" "$T/snapshots.txt"

cairn_ok restore "${id:0:12}" --target "$T/restored" >/dev/null
compare_trees "$T/src" "$T/restored"

# Restore by `latest` into an existing, empty directory.
mkdir "$T/empty-target"
cairn_ok restore latest --target "$T/empty-target" >/dev/null
compare_trees "$T/src" "$T/empty-target"

echo "PASS: roundtrip"
