# shellcheck shell=bash
# Helpers for tests that run `cairn agent` against tests/k8s/fake_apiserver.py
# (the quiesce and snapshot tests). Source after lib.sh.
#
#   agent_fake_start            start the fake API server: $API, $TOKEN, ctl
#   ctl METHOD PATH [JSON]      the fake's control API
#   agent_volume NS PVC PV UID DIR   a PV + PVC (annotations from $ANN, a JSON
#                               object) + a pod on node-a mounting it; DIR is
#                               made the kubelet path (a symlink would not be
#                               a mount point, so DIR itself is bind-mounted
#                               there when AGENT_BIND=1)
#   agent_start [ENV=VAL...]    run the agent (tick 1 s, no jitter): $AGENT_PID,
#                               /metrics on 127.0.0.1:$AGENT_MPORT
#   agent_wait_status NS PVC SECONDS   wait until cairn.io/last-status changes
#                               from $AGENT_LAST (""), leaves it in $STATUS
#   wait_for SECONDS WHAT CMD...
#   agent_set_ann NS PVC JSON   merge JSON into the PVC's annotations
#   agent_quiesce METHOD [NS/PVC]  check cairn_quiesce_duration_seconds on the
#                               agent's /metrics: QN, QSUM (METHOD's _count,
#                               _sum), QLAST (the PVC's last hold, "-": none)
#   agent_quiesce_ms SNAP SECONDS MIN_FROZEN_MS   the manifest's quiesce_ms
#                               is the observed hold of SECONDS (±1 ms), at
#                               least its frozen_ms, itself >= MIN_FROZEN_MS
#   fcmp PYEXPR                 a float comparison

FAKE=$CAIRN_SRC/tests/k8s/fake_apiserver.py
need_cmd curl

agent_fake_start() {
  TOKEN=agent-token-$RANDOM$RANDOM
  python3 "$FAKE" --token "$TOKEN" --port-file "$T/port" >"$T/fake.log" 2>&1 &
  FAKE_PID=$!
  for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
  [ -s "$T/port" ] || { cat "$T/fake.log" >&2; fail "the fake API server did not start"; }
  API=http://127.0.0.1:$(cat "$T/port")
  cat >"$T/kubeconfig.json" <<EOF
{"apiVersion":"v1","kind":"Config","current-context":"fake",
 "clusters":[{"name":"fake","cluster":{"server":"$API"}}],
 "users":[{"name":"agent","user":{"token":"$TOKEN"}}],
 "contexts":[{"name":"fake","context":{"cluster":"fake","user":"agent","namespace":"cairn-system"}}]}
EOF
  PODS=$T/kubelet/pods
  mkdir -p "$PODS"
}

ctl() { # METHOD PATH [JSON]
  if [ $# -ge 3 ]; then
    curl -fsS -X "$1" -H 'Content-Type: application/json' --data-binary "$3" "$API/_control/$2"
  else
    curl -fsS -X "$1" "$API/_control/$2"
  fi
}

# agent_volume NS PVC PV PODUID: prints the kubelet path of the volume (the
# caller mounts or creates it there).
agent_volume() {
  local ns=$1 pvc=$2 pv=$3 uid=$4 ann=${ANN:-"{}"}
  local vol=$PODS/$uid/volumes/kubernetes.io~csi/$pv/mount
  mkdir -p "$vol"
  ctl POST pv '{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"'"$pv"'"},"spec":{"csi":{"driver":"fake.csi.example.com","volumeHandle":"vol-'"$pv"'"},"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}' >/dev/null
  ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"'"$pvc"'","namespace":"'"$ns"'","uid":"uid-'"$pvc"'","annotations":'"$ann"'},"spec":{"volumeName":"'"$pv"'","accessModes":["ReadWriteOnce"]},"status":{"phase":"Bound"}}' >/dev/null
  ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod-'"$pvc"'","namespace":"'"$ns"'","uid":"'"$uid"'"},"spec":{"nodeName":"node-a","volumes":[{"name":"v","persistentVolumeClaim":{"claimName":"'"$pvc"'"}}]},"status":{"phase":"Running"}}' >/dev/null
  echo "$vol"
}

agent_start() { # [VAR=VALUE...]
  local mport a
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  for a in "$@"; do case $a in CAIRN_METRICS_PORT=*) mport=${a#*=} ;; esac; done
  AGENT_MPORT=$mport
  env KUBECONFIG="$T/kubeconfig.json" NODE_NAME=node-a POD_NAMESPACE=cairn-system \
    CAIRN_KUBELET_PODS_DIR="$PODS" CAIRN_METRICS_ADDR=127.0.0.1 CAIRN_METRICS_PORT="$mport" \
    CAIRN_AGENT_TICK=1 CAIRN_JITTER_MAX=0 CAIRN_LOG_LEVEL=debug CAIRN_PRUNE_INTERVAL=0 \
    CAIRN_STATE_DIR="$T/state" CAIRN_SNAPSHOT_POLL_MS=100 "$@" \
    "$CAIRN" agent >>"$T/agent.out" 2>>"$T/agent.err" &
  AGENT_PID=$!
}

agent_alive() { kill -0 "$AGENT_PID" 2>/dev/null; }

agent_stop() {
  agent_alive || return 0
  kill -TERM "$AGENT_PID"
  for _ in $(seq 1 150); do agent_alive || break; sleep 0.1; done
  agent_alive && { kill -KILL "$AGENT_PID"; fail "the agent did not stop within 15 s of SIGTERM"; }
  local rc=0
  wait "$AGENT_PID" || rc=$?
  check_no_crash "cairn agent" "$rc" "$T/agent.err"
}

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local n=$(($1 * 10)) what=$2
  shift 2
  while [ "$n" -gt 0 ]; do
    "$@" && return 0
    sleep 0.1
    n=$((n - 1))
  done
  tail -n 40 "$T/agent.err" >&2
  fail "timed out waiting for $what"
}

# The PVC's cairn.io/last-status, "" when none.
pvc_status() { # NS PVC
  ctl GET "pvc/$1/$2" >"$T/pvc.json" 2>/dev/null &&
    json_get "$T/pvc.json" 'j["metadata"]["annotations"].get("cairn.io/last-status","")'
}

agent_wait_status() { # NS PVC SECONDS: a new last-status, into $STATUS
  local before=${AGENT_LAST:-} n=$(($3 * 10))
  while [ "$n" -gt 0 ]; do
    STATUS=$(pvc_status "$1" "$2" || true)
    if [ -n "$STATUS" ] && [ "$STATUS" != "$before" ]; then
      AGENT_LAST=$STATUS
      return 0
    fi
    agent_alive || { tail -n 40 "$T/agent.err" >&2; fail "the agent exited"; }
    sleep 0.1
    n=$((n - 1))
  done
  tail -n 40 "$T/agent.err" >&2
  fail "timed out waiting for a backup of $1/$2"
}

# agent_wait_snapshot NS PVC SECONDS PYCOND: like agent_wait_status, but
# until an "ok" status whose manifest m satisfies the Python expression
# PYCOND (earlier results -- a request run twice because cairn.io/last-backup
# has whole seconds -- are skipped). Failures end the wait too.
agent_wait_snapshot() {
  local end=$((SECONDS + $3))
  while :; do
    agent_wait_status "$1" "$2" $((end - SECONDS > 0 ? end - SECONDS : 1))
    case $STATUS in
      ok\ *)
        python3 - "$CAIRN_REPO/snapshots/${STATUS#ok }" "$4" <<'EOF' && return 0
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
        ;;
      *) return 0 ;;
    esac
    [ "$SECONDS" -lt "$end" ] || fail "timed out waiting for a backup of $1/$2 with $4"
  done
}

# Asks for a backup now (cairn.io/backup-requested-at).
agent_request() { # NS PVC
  local now
  sleep 1.1 # last-backup has second resolution
  now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  ctl GET "pvc/$1/$2" >"$T/pvc.json"
  python3 - "$T/pvc.json" "$now" >"$T/pvc-new.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["metadata"]["annotations"]["cairn.io/backup-requested-at"] = sys.argv[2]
print(json.dumps(p))
EOF
  ctl POST pvc "$(cat "$T/pvc-new.json")" >/dev/null
}

# A loop device is usable here (root, /dev/loop-control, losetup works).
need_loop() {
  need_root "${1:-this test} (loop devices)"
  local f=$T/.loopcheck dev
  truncate -s 1M "$f"
  dev=$(losetup -f --show "$f" 2>/dev/null) || skip "loop devices are not permitted here"
  losetup -d "$dev"
  rm -f "$f"
}

agent_set_ann() { # NS PVC JSON: merged into the PVC's annotations
  ctl GET "pvc/$1/$2" >"$T/pvc.json"
  python3 - "$T/pvc.json" "$3" >"$T/pvc-new.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["metadata"]["annotations"].update(json.loads(sys.argv[2]))
print(json.dumps(p))
EOF
  ctl POST pvc "$(cat "$T/pvc-new.json")" >/dev/null
}

# agent_quiesce METHOD [NS/PVC]: reads the running agent's /metrics and
# checks the cairn_quiesce_duration_seconds histogram: parsed by the
# Prometheus client library (python3-prometheus-client) when it is
# installed, the three methods present, the fixed le bounds in order ending
# with +Inf, buckets non-decreasing (cumulative), +Inf = _count, _sum >= 0.
# Sets QN and QSUM to METHOD's _count and _sum, and QLAST to the PVC's
# cairn_last_quiesce_duration_seconds{method=METHOD} ("" when absent).
agent_quiesce() {
  curl -fsS "http://127.0.0.1:$AGENT_MPORT/metrics" >"$T/qm.txt" || fail "cannot read /metrics"
  /usr/bin/python3 - "$T/qm.txt" "$1" "${2:-}" >"$T/qm.out" <<'EOF' || fail "the quiesce histogram on /metrics is not right (page in $T/qm.txt)"
import re, sys
text, want, pvc = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
H = "cairn_quiesce_duration_seconds"
BOUNDS = ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "+Inf"]
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
if "# TYPE %s histogram\n" % H not in text or "# HELP %s " % H not in text:
    die("no HELP/TYPE histogram lines for " + H)
s = {}
for l in text.splitlines():
    if not l.startswith(H):
        continue
    m = re.fullmatch(H + r'(_bucket|_sum|_count)\{method="(fsfreeze|postgres|mysql)"(?:,le="([^"]+)")?\} (\S+)', l)
    if not m or (m.group(1) == "_bucket") != (m.group(3) is not None):
        die("bad histogram line %r" % l)
    s[(m.group(1), m.group(2), m.group(3))] = float(m.group(4))
for meth in ("fsfreeze", "postgres", "mysql"):
    les = [le for (k, mm, le) in s if k == "_bucket" and mm == meth]
    if les != BOUNDS:
        die("method %s: le bounds %r" % (meth, les))
    b = [s[("_bucket", meth, le)] for le in les]
    n, total = s.get(("_count", meth, None)), s.get(("_sum", meth, None))
    if any(x > y for x, y in zip(b, b[1:])) or b[-1] != n:
        die("method %s: buckets %r not cumulative up to _count %r" % (meth, b, n))
    if total is None or total < 0:
        die("method %s: _sum %r" % (meth, total))
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("note: python3-prometheus-client is not installed: the page is not parsed", file=sys.stderr)
else:
    try:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
    except Exception as e:
        die("the Prometheus parser rejects the page: %s" % e)
    if H not in fams or fams[H].type != "histogram":
        die("%s is not a histogram for the parser: %r" % (H, fams.get(H)))
    g = fams.get("cairn_last_quiesce_duration_seconds")
    if not g or g.type != "gauge":
        die("cairn_last_quiesce_duration_seconds is not a gauge for the parser")
last = "-"
if pvc:
    ns, name = pvc.split("/")
    key = 'cairn_last_quiesce_duration_seconds{namespace="%s",pvc="%s",method="%s"} ' % (ns, name, want)
    for l in text.splitlines():
        if l.startswith(key):
            last = l[len(key):]
print("%d %.17g %s" % (s[("_count", want, None)], s[("_sum", want, None)], last))
EOF
  read -r QN QSUM QLAST <"$T/qm.out"
}

agent_quiesce_ms() { # SNAP SECONDS MIN_FROZEN_MS
  python3 - "$CAIRN_REPO/snapshots/$1" "$2" "$3" <<'EOF' || fail "quiesce_ms of snapshot $1 is not the observed $2 s (or frozen_ms is not below it)"
import json, sys
s = json.load(open(sys.argv[1]))["snapshot"]
assert int(sys.argv[3]) <= s.get("frozen_ms", 0) <= s["quiesce_ms"], s
assert abs(s["quiesce_ms"] - float(sys.argv[2]) * 1000) <= 1, (s, sys.argv[2])
EOF
}

# fcmp PYEXPR: true when the Python expression holds ("$QSUM >= 1.5").
fcmp() { python3 -c "import sys; sys.exit(0 if ($1) else 1)"; }
