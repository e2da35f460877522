#!/usr/bin/env bash
# cairn trigger end to end, against tests/k8s/fake_apiserver.py with the agent
# running: PVC app/data (labelled cairn.io/nightly=true) has a schedule that is
# not due ("0 0 1 1 *", backed up two minutes ago), so only the trigger makes
# the agent back it up.
# `cairn trigger --namespace app --selector cairn.io/nightly=true --wait` must
# list the PVCs of the namespace with the label selector, skip the matching PVC
# without cairn.io/ annotations, merge-patch exactly
# cairn.io/backup-requested-at, wait for the result and report "ok <snapshot>";
# the snapshot restores identically. A selector matching nothing exits 1 with a
# message; a 403 names the RBAC to check; --timeout 3s with the agent stopped
# exits 1 naming the pending PVC; bad options exit 2.
. "$(dirname "$0")/lib.sh"

FAKE=$CAIRN_SRC/tests/k8s/fake_apiserver.py
[ -f "$FAKE" ] || skip "tests/k8s/fake_apiserver.py is not there (the fake API server is needed)"
need_cmd curl

cairn_repo_init
TOKEN=trigger-e2e-token-$RANDOM
python3 "$FAKE" --token "$TOKEN" --port-file "$T/port" >"$T/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || { cat "$T/fake.log" >&2; fail "the fake API server did not start"; }
API=http://127.0.0.1:$(cat "$T/port")

ctl() { # METHOD PATH [JSON]
  if [ $# -ge 3 ]; then
    curl -fsS -X "$1" -H 'Content-Type: application/json' --data-binary "$3" "$API/_control/$2"
  else
    curl -fsS -X "$1" "$API/_control/$2"
  fi
}

# ---- the cluster ----
PODS=$T/kubelet/pods
UID_A=11111111-2222-3333-4444-555555555555
VOL=$PODS/$UID_A/volumes/kubernetes.io~csi/pv-data/mount
mkdir -p "$VOL/sub"
printf 'hello from a triggered pvc\n' >"$VOL/hello.txt"
head -c 200000 /dev/urandom >"$VOL/sub/random.bin"
ctl POST pv '{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv-data"},"spec":{"csi":{"driver":"ebs.csi.aws.com","volumeHandle":"vol-data"},"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}' >/dev/null
# A recent cairn.io/last-backup: with none, the agent would take the missed
# yearly run at once (missed-run behaviour).
LAST=$(date -u -d '-2 minutes' +%Y-%m-%dT%H:%M:%SZ)
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"app","uid":"pvc-uid-data","labels":{"cairn.io/nightly":"true"},"annotations":{"cairn.io/schedule":"0 0 1 1 *","cairn.io/last-backup":"'"$LAST"'","unrelated.example.com/x":"y"}},"spec":{"volumeName":"pv-data","accessModes":["ReadWriteOnce"]},"status":{"phase":"Bound"}}' >/dev/null
# matches the selector but is not annotated for cairn: left alone
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"plain","namespace":"app","labels":{"cairn.io/nightly":"true","tier":"plain"}},"spec":{"volumeName":"pv-plain"},"status":{"phase":"Bound"}}' >/dev/null
# annotated but not labelled, and one in another namespace: not selected
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"unlabelled","namespace":"app","annotations":{"cairn.io/schedule":"0 0 1 1 *"}},"spec":{"volumeName":"pv-x"}}' >/dev/null
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"other","labels":{"cairn.io/nightly":"true"},"annotations":{"cairn.io/schedule":"0 0 1 1 *"}},"spec":{"volumeName":"pv-y"}}' >/dev/null
ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"app","uid":"'$UID_A'"},"spec":{"nodeName":"node-a","volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data"}}]},"status":{"phase":"Running"}}' >/dev/null

cat >"$T/kubeconfig.json" <<EOF
{"apiVersion":"v1","kind":"Config","current-context":"fake",
 "clusters":[{"name":"fake","cluster":{"server":"$API"}}],
 "users":[{"name":"trigger","user":{"token":"$TOKEN"}}],
 "contexts":[{"name":"fake","context":{"cluster":"fake","user":"trigger","namespace":"cairn-system"}}]}
EOF
export KUBECONFIG=$T/kubeconfig.json

# ---- usage errors (no API call needed) ----
run_cairn trigger --namespace app --all-namespaces
expect_rc 2 "--namespace with --all-namespaces"
run_cairn trigger --namespace app --timeout soon
expect_rc 2 "--timeout soon"
run_cairn trigger extra-arg
expect_rc 2 "a positional argument"

# ---- the agent ----
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env NODE_NAME=node-a POD_NAMESPACE=cairn-system \
  CAIRN_KUBELET_PODS_DIR="$PODS" CAIRN_METRICS_ADDR=127.0.0.1 CAIRN_METRICS_PORT="$MPORT" \
  CAIRN_AGENT_TICK=1 CAIRN_JITTER_MAX=0 CAIRN_LOG_LEVEL=debug CAIRN_PRUNE_INTERVAL=0 \
  "$CAIRN" agent >"$T/agent.out" 2>"$T/agent.err" &
AGENT_PID=$!
agent_alive() { kill -0 "$AGENT_PID" 2>/dev/null; }
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1 && break
  agent_alive || { tail -n 30 "$T/agent.err" >&2; fail "the agent exited"; }
  sleep 0.1
done
sleep 2.5 # a few ticks: the schedule is not due, nothing may happen
ctl GET log >"$T/log0.json"
python3 - "$T/log0.json" <<'EOF' || fail "the agent backed up although nothing was due or requested"
import json, sys
sys.exit(1 if [r for r in json.load(open(sys.argv[1])) if r["method"] == "PATCH"] else 0)
EOF
ctl POST reset-log >/dev/null

# ---- trigger --wait ----
run_cairn trigger --namespace app --selector cairn.io/nightly=true --wait --timeout 60s
expect_rc 0 "trigger --wait"
cat "$OUT" >&2
grep -Eq '^app/data: backup requested at [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' "$OUT" ||
  fail "no 'backup requested' line for app/data"
grep -Eq '^app/data: ok [0-9a-f]{64}$' "$OUT" || fail "no 'app/data: ok <snapshot>' line"
grep -q plain "$OUT" && fail "app/plain (no cairn.io/ annotation) was triggered"
SNAP=$(sed -n 's|^app/data: ok \([0-9a-f]\{64\}\)$|\1|p' "$OUT")
ctl GET log >"$T/log.json"
ctl GET pvc/app/data >"$T/pvc.json"
python3 - "$T/log.json" "$T/pvc.json" "$SNAP" <<'EOF' || fail "the trigger's requests are not as expected"
import json, re, sys
log = json.load(open(sys.argv[1]))
pvc = json.load(open(sys.argv[2]))
snap = sys.argv[3]
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
if any(r["auth"] != "ok" for r in log):
    die("requests without the token")
mine = [r for r in log if r["method"] == "PATCH" and
        "cairn.io/backup-requested-at" in json.dumps(r["body"])]
if len(mine) != 1:
    die("expected one PATCH with backup-requested-at, got %d: %r" % (len(mine), mine))
p = mine[0]
if p["path"] != "/api/v1/namespaces/app/persistentvolumeclaims/data":
    die("PATCH path %s" % p["path"])
if p["content_type"] != "application/merge-patch+json":
    die("PATCH content type %r" % p["content_type"])
b = p["body"]
if set(b) != {"metadata"} or set(b["metadata"]) != {"annotations"} or \
        set(b["metadata"]["annotations"]) != {"cairn.io/backup-requested-at"}:
    die("the PATCH carries more than the backup-requested-at annotation: %r" % b)
req = b["metadata"]["annotations"]["cairn.io/backup-requested-at"]
if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", req):
    die("backup-requested-at is not RFC 3339 UTC: %r" % req)
if any(r["method"] == "PATCH" and not r["path"].endswith("/app/persistentvolumeclaims/data")
       for r in log):
    die("another PVC was patched: %r" % [r["path"] for r in log if r["method"] == "PATCH"])
lists = [r for r in log if r["method"] == "GET" and r["path"] == "/api/v1/namespaces/app/persistentvolumeclaims"]
if len(lists) < 2:
    die("expected a list to find the PVCs and lists to wait: %r" % lists)
for r in lists:
    if r["query"].get("labelSelector") != "cairn.io/nightly=true" or "watch" in r["query"]:
        die("list query %r" % r["query"])
a = pvc["metadata"]["annotations"]
if a.get("cairn.io/backup-requested-at") != req or a.get("cairn.io/last-status") != "ok " + snap:
    die("PVC annotations afterwards: %r" % a)
if a.get("cairn.io/schedule") != "0 0 1 1 *" or a.get("unrelated.example.com/x") != "y":
    die("other annotations were lost: %r" % a)
EOF
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" '[s for s in j if s["id"] == "'"$SNAP"'"][0]["source"]')" = "k8s:app/data" ] ||
  fail "snapshot $SNAP of k8s:app/data is not in the repository"
cairn_ok restore "$SNAP" --target "$T/restored" >/dev/null
diff -r --no-dereference "$VOL" "$T/restored" || fail "the restored PVC differs from the volume"

# ---- --json ----
sleep 1.1 # last-backup has second resolution
run_cairn trigger --namespace app --selector cairn.io/nightly=true --wait --timeout 60s --json
expect_rc 0 "trigger --wait --json"
python3 - "$OUT" <<'EOF' || fail "trigger --json output"
import json, re, sys
j = json.load(open(sys.argv[1]))
assert len(j) == 1 and j[0]["namespace"] == "app" and j[0]["name"] == "data", j
assert j[0]["state"] == "ok" and re.fullmatch(r"[0-9a-f]{64}", j[0]["snapshot"]), j
EOF

# ---- nothing matches ----
run_cairn trigger --namespace app --selector cairn.io/nightly=nope --wait
expect_rc 1 "a selector matching nothing"
expect_in "no PVC matched" "a selector matching nothing" "$ERR"
expect_in "cairn.io/nightly=nope" "a selector matching nothing" "$ERR"
run_cairn trigger --namespace app --selector app.kubernetes.io/name=none
expect_rc 1 "a selector matching nothing (no --wait)"
# matches, but only a PVC without cairn.io/ annotations
run_cairn trigger --namespace app --selector '!cairn.io/none,cairn.io/nightly=true' --wait
expect_rc 0 "a selector with an existence requirement"

run_cairn trigger --namespace app --selector tier=plain
expect_rc 1 "only PVCs without cairn.io/ annotations match"
expect_in "none has a cairn.io/ annotation" "only unannotated PVCs match" "$ERR"
# cluster-wide: both labelled, annotated PVCs (no --wait: other/data has no agent)
ctl POST reset-log >/dev/null
run_cairn trigger --all-namespaces --selector cairn.io/nightly=true
expect_rc 0 "--all-namespaces"
grep -q '^app/data: backup requested at ' "$OUT" || fail "--all-namespaces: app/data not requested"
grep -q '^other/data: backup requested at ' "$OUT" || fail "--all-namespaces: other/data not requested"
ctl GET log >"$T/log2.json"
python3 -c 'import json,sys; sys.exit(0 if any(r["method"] == "GET" and r["path"] == "/api/v1/persistentvolumeclaims" for r in json.load(open(sys.argv[1]))) else 1)' "$T/log2.json" ||
  fail "--all-namespaces did not list /api/v1/persistentvolumeclaims"

# ---- 403 names the RBAC ----
ctl POST fail '{"method":"PATCH","path":"/api/v1/namespaces/app/persistentvolumeclaims/","status":403,"count":1}' >/dev/null
run_cairn trigger --namespace app --selector cairn.io/nightly=true
expect_rc 1 "a forbidden PATCH"
expect_in "cairn-trigger" "a forbidden PATCH" "$ERR"
expect_in "patch" "a forbidden PATCH" "$ERR"

# ---- the agent stopped: --timeout ----
kill -TERM "$AGENT_PID"
for _ in $(seq 1 100); do agent_alive || break; sleep 0.1; done
agent_alive && { kill -KILL "$AGENT_PID"; fail "the agent did not stop"; }
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "the agent exited $rc"
sleep 1.1
start=$(date +%s)
run_cairn trigger --namespace app --selector cairn.io/nightly=true --wait --timeout 3s
expect_rc 1 "--timeout 3s with the agent stopped"
expect_in "timed out" "--timeout 3s" "$ERR"
expect_in "app/data" "--timeout 3s" "$ERR"
[ $(($(date +%s) - start)) -le 10 ] || fail "--timeout 3s took $(($(date +%s) - start)) s"
grep -q "$TOKEN" "$T"/cmd.*.err "$T"/cmd.*.out && fail "the token appears in the trigger's output"

kill "$FAKE_PID" 2>/dev/null || true
echo "PASS: trigger"
