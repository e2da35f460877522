#!/usr/bin/env bash
# bench/prune_bench.sh — retention benchmark: cairn against restic (not a test;
# not registered with ctest).
#
# Builds a seeded dataset (BASE_MIB MiB in about 1500 files, half of them
# text-like so both tools compress it about 2x), takes SNAPS snapshots of it
# with both tools, changing it between snapshots (about 2% of the files get a
# few pages rewritten in place, 1% are added, 1% deleted), then forgets all
# but the last 5 and prunes:
#   cairn forget --keep-last 5 --prune --grace 0 --max-unused 5%
#   restic forget --keep-last 5 --prune            (restic's default: 5% unused)
# (cairn's default grace of 1 h would keep every pack of this young repository.)
# Each prune runs PRUNE_RUNS times, interleaved, on fresh copies of the two
# repositories (and their local caches/catalog) made before the first prune, with
# cold caches (`sync; echo 3 > /proc/sys/vm/drop_caches`) before each. Measured per
# run: wall time, peak RSS (GNU time, largest single process), bytes read from and
# written to disk by the process (GNU time %I/%O, 512-byte blocks, which with cold
# caches is what it read from the repository and wrote to it), and bytes passed to
# read()/write() (rchar/wchar of the process tree from /proc). After the last
# run both repositories are checked (`cairn check`, `restic check`) and the
# latest snapshot of each is restored and compared with the dataset (diff -r).
# Results go to docs/benchmarks.md between the prune markers (bench/run.sh
# keeps that section when it rewrites the page).
#
# Usage (as root, Debian 12, restic installed):
#   bash bench/prune_bench.sh [--no-doc]
# Environment: CAIRN (default build/cairn), SNAPS (50), BASE_MIB (300),
# PRUNE_RUNS (3), SEED (20241121). Everything lives under bench/work/prune
# (deleted at the start of each run).
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
CAIRN_SRC=${CAIRN:-$ROOT/build/cairn}
SNAPS=${SNAPS:-50}
BASE_MIB=${BASE_MIB:-300}
PRUNE_RUNS=${PRUNE_RUNS:-3}
SEED=${SEED:-20241121}
DOC=$ROOT/docs/benchmarks.md
WRITE_DOC=1
[ "${1:-}" = --no-doc ] && WRITE_DOC=0
W=$BENCH_DIR/work/prune
say() { echo "prune_bench: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (drop_caches)"
[ -x "$CAIRN_SRC" ] || die "no cairn binary at $CAIRN_SRC (set CAIRN)"
command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
[ -x /usr/bin/time ] || die "GNU time is not installed (apt-get install time)"
START=$SECONDS

rm -rf "$W"
mkdir -p "$W/logs"
cp "$CAIRN_SRC" "$W/cairn" # the build directory may change while this runs
CAIRN=$W/cairn
DATA=$W/data

# ---- the dataset and its changes (deterministic: SEED and the step number)
cat >"$W/gen.py" <<'PY'
import os, random, sys
root, seed, step, base_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed * 1000 + step)
PAGE = 8192

def content(n):
    # half the files text-like (hex: compresses about 2x), half random
    if rng.random() < 0.5:
        return rng.randbytes((n + 1) // 2).hex().encode()[:n]
    return rng.randbytes(n)

def size():
    # mostly small and medium files, a few large ones (database-like)
    r = rng.random()
    if r < 0.70:
        return rng.randint(4, 64) * 1024
    if r < 0.98:
        return rng.randint(64, 512) * 1024
    return rng.randint(2, 8) << 20

def new_name():
    while True:
        p = os.path.join(root, "d%02d" % rng.randrange(40), "f%06d.bin" % rng.randrange(10**6))
        if not os.path.exists(p):
            return p

if step == 0:
    total = 0
    for d in range(40):
        os.makedirs(os.path.join(root, "d%02d" % d), exist_ok=True)
    while total < base_mib << 20:
        n = size()
        with open(new_name(), "wb") as f:
            f.write(content(n))
        total += n
    sys.exit(0)

files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in fs)
k = max(1, len(files) // 100)
# 2%: a few pages rewritten in place (or appended to)
for p in rng.sample(files, 2 * k):
    sz = os.path.getsize(p)
    with open(p, "r+b") as f:
        for _ in range(rng.randint(1, 4)):
            off = rng.randrange(max(1, sz // PAGE)) * PAGE if rng.random() < 0.8 else sz
            f.seek(off)
            f.write(content(PAGE))
# 1% deleted, 1% added
for p in rng.sample(files, k):
    os.unlink(p)
for _ in range(k):
    with open(new_name(), "wb") as f:
        f.write(content(size()))
PY

say "dataset: $BASE_MIB MiB (seed $SEED)"
python3 "$W/gen.py" "$DATA" "$SEED" 0 "$BASE_MIB" || die "building the dataset failed"
DATA_MIB=$(du -sm "$DATA" | cut -f1)
DATA_FILES=$(find "$DATA" -type f | wc -l)

# ---- SNAPS snapshots with both tools
export RESTIC_PASSWORD=cairn-bench
c_env=(env CAIRN_REPO="$W/cairn-repo" CAIRN_CATALOG="$W/cairn-catalog.db" XDG_CACHE_HOME="$W/cairn-cache")
r_env=(env RESTIC_REPOSITORY="$W/restic-repo" RESTIC_CACHE_DIR="$W/restic-cache")
"${c_env[@]}" "$CAIRN" init >"$W/logs/cairn-init.log" 2>&1 || die "cairn init failed"
"${r_env[@]}" restic init >"$W/logs/restic-init.log" 2>&1 || die "restic init failed"
CB_SECS=0 RB_SECS=0
for ((i = 1; i <= SNAPS; i++)); do
  if ((i > 1)); then python3 "$W/gen.py" "$DATA" "$SEED" "$i" "$BASE_MIB" || die "changing the dataset failed"; fi
  t0=$EPOCHREALTIME
  "${c_env[@]}" "$CAIRN" backup "$DATA" >>"$W/logs/cairn-backup.log" 2>&1 || die "cairn backup $i failed"
  t1=$EPOCHREALTIME
  "${r_env[@]}" restic backup -q "$DATA" >>"$W/logs/restic-backup.log" 2>&1 || die "restic backup $i failed"
  t2=$EPOCHREALTIME
  CB_SECS=$(echo "$CB_SECS + $t1 - $t0" | bc -l)
  RB_SECS=$(echo "$RB_SECS + $t2 - $t1" | bc -l)
  ((i % 10 == 0)) && say "snapshot $i of $SNAPS (backups so far: cairn $(printf %.1f "$CB_SECS") s, restic $(printf %.1f "$RB_SECS") s)"
done
END_MIB=$(du -sm "$DATA" | cut -f1)
END_FILES=$(find "$DATA" -type f | wc -l)
C_BEFORE=$(du -sm "$W/cairn-repo" | cut -f1)
R_BEFORE=$(du -sm "$W/restic-repo" | cut -f1)

# ---- pristine copies to prune again and again
mkdir -p "$W/cairn-cache" "$W/restic-cache" "$W/orig"
for d in "$W"/cairn-repo "$W"/cairn-cache "$W"/restic-repo "$W"/restic-cache "$W"/cairn-catalog.db*; do
  cp -a "$d" "$W/orig/" || die "copying $d failed"
done
reset_repos() {
  rm -rf "$W/cairn-repo" "$W/cairn-cache" "$W/restic-repo" "$W/restic-cache" "$W"/cairn-catalog.db*
  cp -a "$W"/orig/* "$W"/ || die "restoring the copies failed"
}

# measure NAME CMD... — cold caches, GNU time and the process tree's /proc io
declare -A WALL RSS RDISK WDISK RCHAR WCHAR
measure() {
  local name=$1 tf=$W/logs/$1.time log=$W/logs/$1.log e m i o rc wc
  shift
  sync
  echo 3 >/proc/sys/vm/drop_caches
  # the shell's /proc/self/io includes the children it waited for
  LOG=$log IO=$W/logs/$name.io /usr/bin/time -f '%e %M %I %O' -o "$tf" \
    bash -c '"$@" >"$LOG" 2>&1 || exit $?; grep -E "^(rchar|wchar)" /proc/$$/io >"$IO"' _ "$@" ||
    die "$name failed (see $log)"
  read -r e m i o <"$tf"
  rc=$(awk '/^rchar/ { print $2 }' "$W/logs/$name.io")
  wc=$(awk '/^wchar/ { print $2 }' "$W/logs/$name.io")
  WALL[$name]=$e RSS[$name]=$m RDISK[$name]=$((i * 512)) WDISK[$name]=$((o * 512))
  RCHAR[$name]=$rc WCHAR[$name]=$wc
  say "$(printf '%-14s %6.2f s  %6.1f MiB RSS  disk read %7.1f MiB, written %7.1f MiB; read() %7.1f MiB, write() %7.1f MiB' \
    "$name" "$e" "$(echo "$m / 1024" | bc -l)" "$(echo "$i * 512 / 1048576" | bc -l)" \
    "$(echo "$o * 512 / 1048576" | bc -l)" "$(echo "$rc / 1048576" | bc -l)" "$(echo "$wc / 1048576" | bc -l)")"
}

for ((r = 1; r <= PRUNE_RUNS; r++)); do
  reset_repos
  measure "cairn.$r" "${c_env[@]}" "$CAIRN" forget --keep-last 5 --prune --grace 0 --max-unused 5%
  measure "restic.$r" "${r_env[@]}" restic forget --keep-last 5 --prune
done
C_AFTER=$(du -sm "$W/cairn-repo" | cut -f1)
R_AFTER=$(du -sm "$W/restic-repo" | cut -f1)

# ---- the pruned repositories are sound and restore the current dataset
"${c_env[@]}" "$CAIRN" check >"$W/logs/cairn-check.log" 2>&1 || die "cairn check failed after prune"
"${r_env[@]}" restic check >"$W/logs/restic-check.log" 2>&1 || die "restic check failed after prune"
C_SNAPS=$("${c_env[@]}" "$CAIRN" snapshots --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
R_SNAPS=$("${r_env[@]}" restic snapshots --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
rm -rf "$W/restore-cairn" "$W/restore-restic"
"${c_env[@]}" "$CAIRN" restore latest --target "$W/restore-cairn" >"$W/logs/cairn-restore.log" 2>&1 ||
  die "cairn restore after prune failed"
"${r_env[@]}" restic restore latest --target "$W/restore-restic" >"$W/logs/restic-restore.log" 2>&1 ||
  die "restic restore after prune failed"
diff -r "$DATA" "$W/restore-cairn" >/dev/null || die "cairn: the latest snapshot differs from the dataset after prune"
diff -r "$DATA" "$W/restore-restic$DATA" >/dev/null || die "restic: the latest snapshot differs from the dataset after prune"
VERIFY="both: check passes, $C_SNAPS/$R_SNAPS snapshots left, the latest restores identical to the dataset (diff -r)"
say "$VERIFY"
rm -rf "$W/orig" "$W/restore-cairn" "$W/restore-restic"

# ---- report
median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
col() { # col ARRAY TOOL -> every run's value
  local -n arr=$1
  local r
  for ((r = 1; r <= PRUNE_RUNS; r++)); do echo "${arr[$2.$r]}"; done
}
max() { sort -g | tail -n 1; }
mib() { printf '%.1f' "$(echo "$1 / 1048576" | bc -l)"; }
C_WALL=$(col WALL cairn | median) R_WALL=$(col WALL restic | median)
C_RSS=$(col RSS cairn | max) R_RSS=$(col RSS restic | max)
C_RD=$(col RDISK cairn | median) R_RD=$(col RDISK restic | median)
C_WD=$(col WDISK cairn | median) R_WD=$(col WDISK restic | median)
C_RC=$(col RCHAR cairn | median) R_RC=$(col RCHAR restic | median)
C_WC=$(col WCHAR cairn | median) R_WC=$(col WCHAR restic | median)
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
every() { col WALL "$1" | tr '\n' ' ' | sed 's/ $//'; }
verdict() { awk -v c="$C_WALL" -v r="$R_WALL" 'BEGIN { print (c < r) ? "PASS" : "MISS" }'; }
ELAPSED=$((SECONDS - START))
SECTION=$(cat <<DOC_EOF
<!-- prune:begin (written by bench/prune_bench.sh; rerun it to update) -->
## Retention: forget + prune, cairn against restic

\`bash bench/prune_bench.sh\` (as root; $(restic version | cut -d' ' -f1-2), cairn at git
$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); $(nproc) CPUs, load average at the end
$(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); the whole run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s).
A seeded dataset of $DATA_MIB MiB in $DATA_FILES files (half text-like, half random;
seed $SEED) is backed up $SNAPS times by both tools into local repositories on the same
disk; between snapshots about 2% of the files get one to four 8 KiB pages rewritten in
place (or appended), 1% are deleted and 1% added (at the end: $END_MIB MiB in $END_FILES files).
The $SNAPS backups took $(printf %.1f "$CB_SECS") s with cairn and $(printf %.1f "$RB_SECS") s with restic.
Then all but the last 5 snapshots are forgotten and the repository pruned:

- cairn: \`cairn forget --keep-last 5 --prune --grace 0 --max-unused 5%\` (\`--grace 0\`:
  the default grace of 1 h would keep every pack of this young repository; 5% to match restic)
- restic: \`restic forget --keep-last 5 --prune\` (its default \`--max-unused 5%\`)

Each prune runs $PRUNE_RUNS times, interleaved, on fresh copies of the repositories (and their
local caches; cairn's catalog) with cold caches (\`echo 3 > /proc/sys/vm/drop_caches\`).
Disk read/written: the process's block I/O (GNU time %I/%O); with cold caches that is
what it read from the repository (and its cache/catalog) and wrote to them.
read()/write(): bytes passed through those calls (rchar/wchar), cached or not.

| measurement | cairn | restic | cairn / restic |
|---|---:|---:|---:|
| forget + prune, median of $PRUNE_RUNS (s) | $(printf %.2f "$C_WALL") | $(printf %.2f "$R_WALL") | $(ratio "$C_WALL" "$R_WALL") |
| peak RSS (MiB) | $(printf %.1f "$(echo "$C_RSS / 1024" | bc -l)") | $(printf %.1f "$(echo "$R_RSS / 1024" | bc -l)") | $(ratio "$C_RSS" "$R_RSS") |
| read from disk (MiB) | $(mib "$C_RD") | $(mib "$R_RD") | |
| written to disk (MiB) | $(mib "$C_WD") | $(mib "$R_WD") | |
| read() (MiB) | $(mib "$C_RC") | $(mib "$R_RC") | |
| write() (MiB) | $(mib "$C_WC") | $(mib "$R_WC") | |
| repository before / after (MiB) | $C_BEFORE / $C_AFTER | $R_BEFORE / $R_AFTER | |

Every run (s): cairn $(every cairn); restic $(every restic).
After the last run: $VERIFY.

Target (issue 7): faster than restic ($(verdict)) with bounded memory.
<!-- prune:end -->
DOC_EOF
)
echo "$SECTION"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$BENCH_DIR/doc_section.py" "$DOC" prune "$SECTION" || die "cannot write $DOC"
  say "wrote the retention section of $DOC"
fi
