#!/usr/bin/env bash
# The main job, end to end: build Cairn, back up a sample directory into a
# local repository, list snapshots, restore, and show the result is identical.
# Set KEEP=1 to keep the temporary directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

echo "=== building"
cmake -B build -S .
cmake --build build -j"$(nproc)"
cairn=$root/build/cairn
[ -x "$cairn" ] || { echo "demo: build/cairn was not built" >&2; exit 1; }

work=$(mktemp -d /tmp/cairn-demo.XXXXXX)
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; else echo "keeping $work"; fi

echo "=== sample directory $work/sample"
src=$work/sample
mkdir -p "$src/docs/notes"
printf 'Cairn demo\n' >"$src/README.txt"
printf 'line %s\n' $(seq 1 1000) >"$src/docs/lines.txt"
printf 'a note\n' >"$src/docs/notes/note.md"
: >"$src/empty.txt"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$src/random-2MiB.bin"
ln -s docs/notes/note.md "$src/link-to-note"
chmod 0600 "$src/docs/notes/note.md"
ls -lR "$src"

export CAIRN_REPO=$work/repo CAIRN_CATALOG=$work/catalog.db
run() { echo "+ cairn $*"; "$cairn" "$@"; }

echo "=== repository $CAIRN_REPO"
run init
run backup "$src" --tag demo
run snapshots
run restore latest --target "$work/restored"

echo "=== comparing $src with $work/restored"
if diff -r --no-dereference "$src" "$work/restored"; then
  echo "restored tree is identical"
else
  echo "demo: the restored tree differs from the source" >&2
  exit 1
fi
