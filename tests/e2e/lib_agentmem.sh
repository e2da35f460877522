# shellcheck shell=bash
# Peak RSS of `cairn agent` backing up volumes on a fake node, for
# tests/e2e/agent_memory.sh and bench/agent_mem.sh. Source after lib.sh.
#
#   am_measure LABEL N_PVCS FILES_PER_PVC [FILE_BYTES [BIG_MIB]]
#       A fresh fake API server, repository and catalog under $AM_ROOT/LABEL; N_PVCS
#       PVCs on node-a, each mounted by its own pod and asking for one backup
#       now (cairn.io/backup-requested-at); each volume holds FILES_PER_PVC
#       distinct files of FILE_BYTES (default 256) bytes in directories of at
#       most 1000 files, plus one file of BIG_MIB MiB of pseudo-random bytes
#       when given. Runs the agent (AM_AGENT_ENV: more VAR=VALUE settings)
#       until every PVC has been backed up once, then reads the agent's
#       VmHWM (peak RSS) from /proc/PID/status before stopping it.
#       Sets AM_HWM_KIB, AM_SECS (backups' wall time) and AM_FILES (files
#       in all snapshots); fails if a backup failed or the agent exited.
#   am_mib KIB          KiB as MiB with one decimal
#
# The volumes, repository and catalog live under AM_ROOT: by default a
# directory in /dev/shm (tmpfs: creating 200,000 files there takes a second,
# on a loaded ext4 disk tens of seconds; the agent's RSS does not include the
# tmpfs pages it reads), removed on exit; $T where /dev/shm is not usable.

if [ -z "${AM_ROOT:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ] &&
    AM_ROOT=$(mktemp -d /dev/shm/cairn-agentmem.XXXXXX 2>/dev/null); then
    # lib.sh's _cleanup takes the exit status from $?: keep it
    trap '_am_rc=$?; rm -rf "$AM_ROOT"; (exit $_am_rc); _cleanup' EXIT
  else
    AM_ROOT=$T
  fi
fi

# Creates the volumes under $1 (the kubelet pods dir) and the PVs, PVCs and
# pods through the fake's control API, in one process.
_am_populate() { # PODS API N FILES BYTES BIG_MIB
  python3 - "$@" <<'PY'
import json, os, random, sys, urllib.request
pods, api, n, files, size, big = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def post(kind, obj):
    req = urllib.request.Request(api + "/_control/" + kind, data=json.dumps(obj).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
rnd = random.Random(42)
for i in range(n):
    pvc, pv, uid = "data-%04d" % i, "pv-%04d" % i, "00000000-0000-0000-0000-%012d" % i
    vol = os.path.join(pods, uid, "volumes", "kubernetes.io~csi", pv, "mount")
    for f in range(files):
        d = os.path.join(vol, "d%04d" % (f // 1000))
        if f % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        # distinct content: every file is new data for the repository
        head = ("%s file %d\n" % (pvc, f)).encode()
        with open(os.path.join(d, "f%06d" % f), "wb") as fh:
            fh.write(head + rnd.randbytes(max(0, size - len(head))))
    os.makedirs(vol, exist_ok=True)
    if big:
        with open(os.path.join(vol, "big.bin"), "wb") as fh:
            for _ in range(big):
                fh.write(rnd.randbytes(1 << 20))
    post("pv", {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-" + pv},
                         "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})
    post("pvc", {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": pvc, "namespace": "app", "uid": "uid-" + pvc,
                              "annotations": {"cairn.io/backup-requested-at": "2026-01-01T00:00:00Z"}},
                 "spec": {"volumeName": pv, "accessModes": ["ReadWriteOnce"]},
                 "status": {"phase": "Bound"}})
    post("pod", {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": pvc + "-pod", "namespace": "app", "uid": uid},
                 "spec": {"nodeName": "node-a",
                          "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": pvc}}]},
                 "status": {"phase": "Running"}})
PY
}

am_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

am_measure() { # LABEL N_PVCS FILES_PER_PVC [FILE_BYTES [BIG_MIB]]
  local label=$1 n=$2 files=$3 bytes=${4:-256} big=${5:-0}
  local d=$AM_ROOT/$label tok port api pid ok failed t0 mport i
  mkdir -p "$d/pods"
  tok=am-token-$RANDOM$RANDOM
  python3 "$CAIRN_SRC/tests/k8s/fake_apiserver.py" --token "$tok" --port-file "$d/fake.port" \
    >"$d/fake.log" 2>&1 &
  AM_FAKE_PID=$!
  for i in $(seq 1 100); do [ -s "$d/fake.port" ] && break; sleep 0.1; done
  [ -s "$d/fake.port" ] || { cat "$d/fake.log" >&2; fail "the fake API server did not start"; }
  port=$(cat "$d/fake.port")
  api=http://127.0.0.1:$port
  cat >"$d/kubeconfig.json" <<EOF
{"apiVersion":"v1","kind":"Config","current-context":"fake",
 "clusters":[{"name":"fake","cluster":{"server":"$api"}}],
 "users":[{"name":"agent","user":{"token":"$tok"}}],
 "contexts":[{"name":"fake","context":{"cluster":"fake","user":"agent","namespace":"cairn-system"}}]}
EOF
  _am_populate "$d/pods" "$api" "$n" "$files" "$bytes" "$big" ||
    fail "$label: could not create the volumes and the cluster objects"
  CAIRN_REPO=$d/repo CAIRN_CATALOG=$d/catalog.db "$CAIRN" init >/dev/null 2>"$d/init.err" ||
    { cat "$d/init.err" >&2; fail "$label: cairn init failed"; }
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  t0=$(date +%s.%N)
  # the log exists before the loop reads it: the background shell may not have
  # opened it yet (grep on a missing file made the loop end at once under load)
  : >"$d/agent.err"
  # shellcheck disable=SC2086
  env CAIRN_REPO="$d/repo" CAIRN_CATALOG="$d/catalog.db" KUBECONFIG="$d/kubeconfig.json" \
    NODE_NAME=node-a POD_NAMESPACE=cairn-system CAIRN_KUBELET_PODS_DIR="$d/pods" \
    CAIRN_METRICS_ADDR=127.0.0.1 CAIRN_METRICS_PORT="$mport" CAIRN_AGENT_TICK=1 \
    CAIRN_JITTER_MAX=0 CAIRN_LOG_LEVEL=info CAIRN_PRUNE_INTERVAL=0 CAIRN_STATE_DIR="$d/state" \
    ${AM_AGENT_ENV:-} "$CAIRN" agent >"$d/agent.out" 2>"$d/agent.err" &
  pid=$!
  while :; do
    ok=$(grep -c ': snapshot [0-9a-f]* of ' "$d/agent.err" || true)
    failed=$(grep -c ': backup of .* failed' "$d/agent.err" || true)
    [ "$failed" -eq 0 ] || { tail -n 20 "$d/agent.err" >&2; fail "$label: a backup failed"; }
    [ "$ok" -lt "$n" ] || break
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$d/agent.err" >&2; fail "$label: the agent exited"; }
    sleep 0.2
  done
  AM_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  AM_HWM_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  [ -z "${AM_DEBUG:-}" ] || grep -E "^(VmHWM|VmRSS|RssAnon|RssFile|Threads)" "/proc/$pid/status" >&2
  echo "$label: $n PVCs, $((n * files)) files: peak RSS $(am_mib "$AM_HWM_KIB") MiB, backups took $AM_SECS s" >&2
  AM_FILES=$(sed -n 's/.*: snapshot [0-9a-f]* of .*: \([0-9]*\) files,.*/\1/p' "$d/agent.err" |
    awk '{ s += $1 } END { print s + 0 }')
  kill -TERM "$pid"
  for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    fail "$label: the agent did not stop within 15 s of SIGTERM"
  fi
  local rc=0
  wait "$pid" || rc=$?
  check_no_crash "$label: cairn agent" "$rc" "$d/agent.err"
  [ "$rc" -eq 0 ] || fail "$label: the agent exited with status $rc after SIGTERM"
  kill "$AM_FAKE_PID" 2>/dev/null || true
  wait "$AM_FAKE_PID" 2>/dev/null || true
  [ -n "$AM_HWM_KIB" ] || fail "$label: no VmHWM for the agent"
  [ "$AM_FILES" -ge $((n * files)) ] ||
    fail "$label: the snapshots hold $AM_FILES files, expected at least $((n * files))"
  rm -rf "$d/pods" "$d/repo"
}
