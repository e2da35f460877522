# shellcheck shell=bash
# bench/lib_dataset.sh — the mixed dataset some benchmarks share (sourced).
#
# mixed_dataset DIR SEED RANDOM_MIB RECORD_FILES
#   Builds DIR once (DIR.complete marks it done): a copy of /usr/include,
#   RANDOM_MIB MiB of seeded random bytes (random.bin, incompressible) and
#   RECORD_FILES files of 100,000 generated CSV records (compressible).
mixed_dataset() {
  local dir=$1 seed=$2 random_mib=$3 record_files=$4
  [ -e "$dir.complete" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir"
  cp -a /usr/include "$dir/usr-include"
  python3 - "$dir" "$seed" "$random_mib" "$record_files" <<'PY'
import random, sys, os
d, seed, mib, nrec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
with open(os.path.join(d, "random.bin"), "wb") as f:
    for _ in range(mib):
        f.write(rng.randbytes(1 << 20))
os.mkdir(os.path.join(d, "records"))
words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
for i in range(nrec):
    with open(os.path.join(d, "records", "r%02d.csv" % i), "w") as f:
        for j in range(100000):
            f.write("%d,%s,%s,%d.%02d\n" % (j, rng.choice(words), rng.choice(words),
                                            rng.randrange(100000), rng.randrange(100)))
PY
  touch "$dir.complete"
}
