#!/usr/bin/env bash
# bench/encrypt_bench.sh — cost of encryption at rest (not a test; not
# registered with ctest). Builds a mixed dataset (a copy of /usr/include,
# 96 MiB of seeded random bytes, ~150 MiB of compressible generated records)
# and times backup and restore into a local repository, unencrypted and
# encrypted (scrypt at the default cost), RUNS times each, interleaved.
# Prints the medians and the encrypted/unencrypted ratios.
#
# Usage: bash bench/encrypt_bench.sh [WORKDIR] (default bench/work/encrypt)
#   RUNS (default 3), CAIRN (default build/cairn)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-$ROOT/bench/work/encrypt}
RUNS=${RUNS:-3}
CAIRN=${CAIRN:-$ROOT/build/cairn}
DATA=$W/data
mkdir -p "$W"
# shellcheck source=bench/lib_dataset.sh
source "$(dirname "$0")/lib_dataset.sh"
mixed_dataset "$DATA" 20261121 96 30
size=$(du -sb "$DATA" | cut -f1)
echo "dataset: $((size / 1048576)) MiB, $(find "$DATA" -type f | wc -l) files"
printf 'bench-password\n' >"$W/pw"
chmod 600 "$W/pw"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -A B R
for ((i = 1; i <= RUNS; i++)); do
  for mode in plain enc; do
    rm -rf "$W/repo-$mode" "$W/cat-$mode.db" "$W/out-$mode"
    if [ "$mode" = enc ]; then
      export CAIRN_PASSWORD_FILE=$W/pw
      "$CAIRN" init -q --repo "$W/repo-$mode" --encrypt
    else
      unset CAIRN_PASSWORD_FILE
      "$CAIRN" init -q --repo "$W/repo-$mode"
    fi
    sync
    b=$(t "$CAIRN" backup -q --repo "$W/repo-$mode" --catalog "$W/cat-$mode.db" "$DATA")
    sync
    r=$(t "$CAIRN" restore -q latest --repo "$W/repo-$mode" --catalog "$W/cat-$mode.db" --target "$W/out-$mode")
    diff -r --no-dereference "$DATA" "$W/out-$mode" >/dev/null 2>&1 ||
      echo "WARNING: run $i $mode: the restored tree differs from the dataset"
    B[$mode]+="$b "
    R[$mode]+="$r "
    echo "run $i $mode: backup ${b}s restore ${r}s (repo $(du -sm "$W/repo-$mode" | cut -f1) MiB)"
    rm -rf "$W/out-$mode"
  done
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bp=$(echo "${B[plain]}" | med); be=$(echo "${B[enc]}" | med)
rp=$(echo "${R[plain]}" | med); re=$(echo "${R[enc]}" | med)
echo "median backup: plain ${bp}s, encrypted ${be}s, ratio $(echo "scale=3; $be / $bp" | bc)"
echo "median restore: plain ${rp}s, encrypted ${re}s, ratio $(echo "scale=3; $re / $rp" | bc)"
rm -rf "$W/repo-plain" "$W/repo-enc" "$W"/cat-*.db*
