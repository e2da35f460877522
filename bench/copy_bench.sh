#!/usr/bin/env bash
# bench/copy_bench.sh — off-site copies: `cairn copy` against `restic copy`
# (not a test; not registered with ctest). Both sides of both tools are
# encrypted local repositories (restic always encrypts); restic's destination
# is made with --copy-chunker-params, its best case. Each run: init, back up
# the dataset into the source (not timed), copy it (timed: the first copy),
# change ~1% of it, back up again, copy again (timed: the incremental copy).
# The first run also restores the copied snapshot from each destination and
# compares it with the dataset (diff -r). Reports medians of RUNS runs, peak
# RSS, and cairn/restic ratios; writes the "copy" section of docs/benchmarks.md
# unless --no-doc.
#
# Usage: bash bench/copy_bench.sh [--no-doc]   RUNS (default 3), CAIRN (build/cairn)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
W=$ROOT/bench/work/copy
DOC=$ROOT/docs/benchmarks.md
RUNS=${RUNS:-3}
CAIRN=${CAIRN:-$ROOT/build/cairn}
WRITE_DOC=1
[ "${1:-}" = --no-doc ] && WRITE_DOC=0
die() { echo "copy_bench: $*" >&2; exit 1; }
say() { echo "copy_bench: $*" >&2; }
command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
[ -x "$CAIRN" ] || die "no cairn binary at $CAIRN (build first)"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (apt-get install time)"

DATA=$W/data
mkdir -p "$W"
# shellcheck source=bench/lib_dataset.sh
source "$(dirname "$0")/lib_dataset.sh"
mixed_dataset "$DATA" 20261122 64 20
SIZE=$(du -sb "$DATA" | cut -f1)
NFILES=$(find "$DATA" -type f | wc -l)
say "dataset: $((SIZE / 1048576)) MiB, $NFILES files"
printf 'bench-password\n' >"$W/pw"

# timed STEP CMD...: appends "STEP seconds peak_kib" to $W/times
timed() {
  local step=$1
  shift
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >"$W/step.log" 2>&1 ||
    { tail -n 20 "$W/step.log" >&2; die "$step failed"; }
  echo "$step $(cat "$W/time.out")" >>"$W/times"
}
change_data() { # ~1% of the bytes: a new file and appended records
  cp "$W/orig-r00.csv" "$DATA/records/r00.csv"
  rm -f "$DATA/new.bin"
  head -c $((SIZE / 200)) /dev/urandom >"$DATA/new.bin"
  head -c $((SIZE / 200)) /dev/urandom | base64 >>"$DATA/records/r00.csv"
}
restore_data() {
  cp "$W/orig-r00.csv" "$DATA/records/r00.csv"
  rm -f "$DATA/new.bin"
}
[ -e "$W/orig-r00.csv" ] || cp "$DATA/records/r00.csv" "$W/orig-r00.csv"
restore_data
trap restore_data EXIT

: >"$W/times"
for run in $(seq 1 "$RUNS"); do
  say "run $run of $RUNS"
  # ---- cairn ----
  rm -rf "$W/c-src" "$W/c-dst" "$W"/c-*.db "$W/c-restored"
  export CAIRN_PASSWORD_FILE=$W/pw
  "$CAIRN" --repo "$W/c-src" init --encrypt >/dev/null
  "$CAIRN" --repo "$W/c-dst" init --encrypt >/dev/null
  "$CAIRN" --repo "$W/c-src" --catalog "$W/c-src.db" backup "$DATA" >/dev/null
  timed cairn-copy "$CAIRN" --repo "$W/c-src" --catalog "$W/c-src.db" copy --to "$W/c-dst" \
    --to-password-file "$W/pw" --to-catalog "$W/c-dst.db"
  change_data
  "$CAIRN" --repo "$W/c-src" --catalog "$W/c-src.db" backup "$DATA" >/dev/null
  timed cairn-copy2 "$CAIRN" --repo "$W/c-src" --catalog "$W/c-src.db" copy --to "$W/c-dst" \
    --to-password-file "$W/pw" --to-catalog "$W/c-dst.db"
  restore_data
  if [ "$run" = 1 ]; then
    first=$("$CAIRN" --repo "$W/c-dst" --catalog "$W/c-dst.db" snapshots --json |
      python3 -c 'import json,sys; print(sorted(json.load(sys.stdin), key=lambda s: s["time"])[0]["id"])')
    "$CAIRN" --repo "$W/c-dst" --catalog "$W/c-dst.db" restore "$first" --target "$W/c-restored" >/dev/null
    diff -r --no-dereference "$DATA" "$W/c-restored" >/dev/null || die "cairn: the copied snapshot does not restore to the dataset"
  fi
  unset CAIRN_PASSWORD_FILE
  C_DST_BYTES=$(du -sb "$W/c-dst" | cut -f1)

  # ---- restic ----
  rm -rf "$W/r-src" "$W/r-dst" "$W/r-restored"
  export RESTIC_PASSWORD_FILE=$W/pw RESTIC_FROM_PASSWORD_FILE=$W/pw RESTIC_CACHE_DIR=$W/restic-cache
  restic -q -r "$W/r-src" init >/dev/null
  restic -q -r "$W/r-dst" init --from-repo "$W/r-src" --copy-chunker-params >/dev/null
  restic -q -r "$W/r-src" backup "$DATA" >/dev/null
  timed restic-copy restic -q -r "$W/r-dst" copy --from-repo "$W/r-src"
  change_data
  restic -q -r "$W/r-src" backup "$DATA" >/dev/null
  timed restic-copy2 restic -q -r "$W/r-dst" copy --from-repo "$W/r-src"
  restore_data
  if [ "$run" = 1 ]; then
    first=$(restic -q -r "$W/r-dst" snapshots --json | python3 -c 'import json,sys; print(sorted(json.load(sys.stdin), key=lambda s: s["time"])[0]["id"])')
    restic -q -r "$W/r-dst" restore "$first" --target "$W/r-restored" >/dev/null
    diff -r --no-dereference "$DATA" "$W/r-restored$DATA" >/dev/null || die "restic: the copied snapshot does not restore to the dataset"
  fi
  R_DST_BYTES=$(du -sb "$W/r-dst" | cut -f1)
  unset RESTIC_PASSWORD_FILE RESTIC_FROM_PASSWORD_FILE
done
rm -rf "$W/c-restored" "$W/r-restored"

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v s="$2" '$1 == s {print $'"$1"'}' "$W/times" | median; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
C1=$(col 2 cairn-copy) R1=$(col 2 restic-copy) C2=$(col 2 cairn-copy2) R2=$(col 2 restic-copy2)
CM=$(awk '$1 ~ /^cairn/ {print $3}' "$W/times" | sort -n | tail -n 1)
RM=$(awk '$1 ~ /^restic/ {print $3}' "$W/times" | sort -n | tail -n 1)
SECTION="<!-- copy:begin (written by bench/copy_bench.sh) -->
## Off-site copies: \`cairn copy\` and \`restic copy\`

\`bench/copy_bench.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs, restic $(restic version | awk '{print $2}'). Dataset: $((SIZE / 1048576)) MiB in $NFILES files (a copy of /usr/include, 64 MiB of random bytes, generated CSV records). Both tools copy between two encrypted local repositories; restic's destination shares the source's chunker parameters (\`init --copy-chunker-params\`, its best case), while cairn re-hashes every chunk with the destination's own key. The incremental copy follows a change of about 1% of the bytes. Median of $RUNS runs; the copied snapshot restores to the dataset (\`diff -r\`) for both.

| step | cairn | restic | cairn / restic |
|---|---:|---:|---:|
| first copy (s) | $(printf %.2f "$C1") | $(printf %.2f "$R1") | $(ratio "$C1" "$R1") |
| incremental copy (s) | $(printf %.2f "$C2") | $(printf %.2f "$R2") | $(ratio "$C2" "$R2") |
| peak RSS of a copy (MiB) | $((CM / 1024)) | $((RM / 1024)) | $(ratio "$CM" "$RM") |
| destination size after both (MiB) | $((C_DST_BYTES / 1048576)) | $((R_DST_BYTES / 1048576)) | $(ratio "$C_DST_BYTES" "$R_DST_BYTES") |

cairn's peak RSS is dominated by unlocking the two encrypted repositories (scrypt at its default cost, about 64 MiB each time); \`cairn copy\` between unencrypted repositories measured 42 MiB on the same data when this section was added.
<!-- copy:end -->"
echo "$SECTION"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$BENCH_DIR/doc_section.py" "$DOC" copy "$SECTION" || die "cannot write $DOC"
  say "wrote the copy section of $DOC"
fi
