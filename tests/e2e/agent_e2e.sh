#!/usr/bin/env bash
# cairn agent end to end, against tests/k8s/fake_apiserver.py: a pod on
# node-a mounts PVC app/data (a CSI volume whose "host path" is a temp dir
# laid out like /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount)
# annotated with a schedule and a retention; a second PVC app/bad has a bad
# schedule. The agent must back up app/data, merge-patch its annotations,
# post a BackupSucceeded Event, export metrics, and post one Warning Event
# naming the bad annotation of app/bad without letting it stop app/data; the
# snapshot restores identically; SIGTERM stops it with status 0.
. "$(dirname "$0")/lib.sh"

[ -f "$CAIRN_SRC/tests/k8s/fake_apiserver.py" ] ||
  skip "tests/k8s/fake_apiserver.py is not there (the fake API server is needed)"
. "$(dirname "$0")/lib_k8s.sh"

cairn_repo_init
k8s_start_fake

# ---- the cluster: PVs, PVCs, a pod on node-a, and one on another node ----
PODS=$T/kubelet/pods
UID_A=11111111-2222-3333-4444-555555555555
VOL=$PODS/$UID_A/volumes/kubernetes.io~csi/pv-data/mount
mkdir -p "$VOL/sub/deeper" "$PODS/$UID_A/volumes/kubernetes.io~csi/pv-bad/mount"
printf 'hello from a pvc\n' >"$VOL/hello.txt"
head -c 300000 /dev/urandom >"$VOL/sub/random.bin"
python3 -c 'import sys; sys.stdout.write("line\n" * 20000)' >"$VOL/sub/deeper/lines.txt"
ln -s hello.txt "$VOL/link"
printf 'skip me\n' >"$VOL/cache.tmp"
printf 'bad pvc data\n' >"$PODS/$UID_A/volumes/kubernetes.io~csi/pv-bad/mount/x"

pv() { # NAME
  printf '{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"%s"},"spec":{"csi":{"driver":"ebs.csi.aws.com","volumeHandle":"vol-%s"},"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}' "$1" "$1"
}
ctl POST pv "$(pv pv-data)" >/dev/null
ctl POST pv "$(pv pv-bad)" >/dev/null
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"app","uid":"pvc-uid-data","annotations":{"cairn.io/schedule":"* * * * *","cairn.io/retention":"last=2","cairn.io/exclude":"*.tmp","unrelated.example.com/x":"y"}},"spec":{"volumeName":"pv-data","accessModes":["ReadWriteOnce"]},"status":{"phase":"Bound"}}' >/dev/null
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"bad","namespace":"app","uid":"pvc-uid-bad","annotations":{"cairn.io/schedule":"61 * * * *"}},"spec":{"volumeName":"pv-bad"},"status":{"phase":"Bound"}}' >/dev/null
# app/frozen asks for an exec snapshot no command is configured for; app/gone's volume is not
# where the kubelet would have mounted it (a failed backup).
UID_B=22222222-2222-3333-4444-555555555555
mkdir -p "$PODS/$UID_B/volumes/kubernetes.io~csi/pv-frozen/mount"
ctl POST pv "$(pv pv-frozen)" >/dev/null
ctl POST pv "$(pv pv-gone)" >/dev/null
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"frozen","namespace":"app","uid":"pvc-uid-frozen","annotations":{"cairn.io/schedule":"* * * * *","cairn.io/quiesce":"fsfreeze","cairn.io/snapshot":"exec"}},"spec":{"volumeName":"pv-frozen"}}' >/dev/null
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"gone","namespace":"app","uid":"pvc-uid-gone","annotations":{"cairn.io/schedule":"@daily"}},"spec":{"volumeName":"pv-gone"}}' >/dev/null
ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db-0","namespace":"app","uid":"'$UID_B'"},"spec":{"nodeName":"node-a","volumes":[{"name":"f","persistentVolumeClaim":{"claimName":"frozen"}},{"name":"g","persistentVolumeClaim":{"claimName":"gone"}}]},"status":{"phase":"Running"}}' >/dev/null
ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"app","uid":"'$UID_A'"},"spec":{"nodeName":"node-a","volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data"}},{"name":"bad","persistentVolumeClaim":{"claimName":"bad"}},{"name":"tmp","emptyDir":{}}]},"status":{"phase":"Running"}}' >/dev/null
# A second pod mounts app/data too (ReadWriteMany); the backup reads through
# web-0 until web-0 goes away.
UID_C=33333333-2222-3333-4444-555555555555
WEB1='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"app","uid":"'$UID_C'"},"spec":{"nodeName":"node-a","volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data"}}]},"status":{"phase":"Running"}}'
ctl POST pod "$WEB1" >/dev/null
ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"other","namespace":"app","uid":"99999999-2222-3333-4444-555555555555"},"spec":{"nodeName":"node-b","volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"elsewhere"}}]},"status":{"phase":"Running"}}' >/dev/null

# ---- the agent ----
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
T_START=$(date +%s.%N)
env NODE_NAME=node-a POD_NAMESPACE=cairn-system \
  CAIRN_KUBELET_PODS_DIR="$PODS" CAIRN_METRICS_ADDR=127.0.0.1 CAIRN_METRICS_PORT="$MPORT" \
  CAIRN_AGENT_TICK=1 CAIRN_JITTER_MAX=0 CAIRN_LOG_LEVEL=debug CAIRN_PRUNE_INTERVAL=0 \
  "$CAIRN" agent >"$T/agent.out" 2>"$T/agent.err" &
AGENT_PID=$!

readyz() { curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1; }
wait_for 20 "/readyz to answer 200" readyz
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz")" = 200 ] ||
  fail "/healthz is not 200 while the agent runs"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/nope")" = 404 ] ||
  fail "an unknown path is not 404"

status_ok() {
  ctl GET pvc/app/data >"$T/pvc.json" 2>/dev/null &&
    json_get "$T/pvc.json" 'j["metadata"]["annotations"].get("cairn.io/last-status","")' |
    grep -q '^ok '
}
wait_for 60 "PVC app/data to get cairn.io/last-status 'ok ...'" status_ok
ctl GET log >"$T/log.json"
ctl GET events >"$T/events.json"

# What the agent sent: the merge-patch, and the Events.
python3 - "$T/log.json" "$T/events.json" "$T/pvc.json" <<'EOF' || fail "the agent's requests are not as expected"
import json, re, sys
log = json.load(open(sys.argv[1]))
events = json.load(open(sys.argv[2]))
pvc = json.load(open(sys.argv[3]))
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
bad_auth = [r for r in log if r["auth"] != "ok"]
if bad_auth:
    die("requests without the token: %r" % bad_auth[:2])
lists = [r for r in log if r["path"] == "/api/v1/pods" and r["method"] == "GET"]
if not lists or any(r["query"].get("fieldSelector") != "spec.nodeName=node-a" for r in lists):
    die("pods not listed/watched with fieldSelector=spec.nodeName=node-a: %r" % lists[:2])
patches = [r for r in log if r["method"] == "PATCH"]
if not patches:
    die("no PATCH")
for p in patches:
    if p["path"] not in ("/api/v1/namespaces/app/persistentvolumeclaims/data",
                         "/api/v1/namespaces/app/persistentvolumeclaims/gone"):
        die("PATCH of something else: %s" % p["path"])
patches = [p for p in patches if p["path"].endswith("/data")]
if not patches:
    die("no PATCH of app/data")
for p in patches:
    if p["content_type"] != "application/merge-patch+json":
        die("PATCH content type %r" % p["content_type"])
    body = p["body"]
    if set(body) != {"metadata"} or set(body["metadata"]) != {"annotations"}:
        die("the patch touches more than annotations: %r" % body)
    ann = body["metadata"]["annotations"]
    if set(ann) != {"cairn.io/last-backup", "cairn.io/last-status"}:
        die("patched annotations: %r" % sorted(ann))
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{9})?Z", ann["cairn.io/last-backup"]):
        die("last-backup is not RFC 3339 UTC: %r" % ann["cairn.io/last-backup"])
    if not re.fullmatch(r"ok [0-9a-f]{64}", ann["cairn.io/last-status"]):
        die("last-status: %r" % ann["cairn.io/last-status"])
a = pvc["metadata"]["annotations"]
if a.get("cairn.io/schedule") != "* * * * *" or a.get("unrelated.example.com/x") != "y":
    die("other annotations were lost: %r" % a)
ok = [e for e in events if e.get("reason") == "BackupSucceeded"]
if not ok:
    die("no BackupSucceeded event: %r" % events)
e = ok[0]
io = e["involvedObject"]
if (io.get("kind"), io.get("namespace"), io.get("name"), io.get("uid")) != \
        ("PersistentVolumeClaim", "app", "data", "pvc-uid-data"):
    die("BackupSucceeded involvedObject: %r" % io)
if e.get("type") != "Normal" or "k8s:app/data" not in e.get("message", ""):
    die("BackupSucceeded event: %r" % e)
snap = a["cairn.io/last-status"].split()[1]
open(sys.argv[3] + ".id", "w").write(snap)
EOF
SNAP=$(cat "$T/pvc.json.id")

# The Warning for app/bad names the annotation; exactly one although the
# agent ticked many times meanwhile.
bad_event() {
  ctl GET events >"$T/events.json" &&
    python3 - "$T/events.json" <<'EOF'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))
      if e["involvedObject"].get("name") == "bad" and e.get("type") == "Warning"]
sys.exit(0 if ev else 1)
EOF
}
wait_for 20 "a Warning Event on PVC app/bad" bad_event
sleep 3 # a few more ticks: the warning must not repeat
ctl GET events >"$T/events.json"
ctl GET log >"$T/log.json"
python3 - "$T/events.json" "$T/log.json" <<'EOF' || fail "the bad annotation was not reported as expected"
import json, sys
events = json.load(open(sys.argv[1]))
log = json.load(open(sys.argv[2]))
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
bad = [e for e in events if e["involvedObject"].get("name") == "bad"]
if len(bad) != 1:
    die("expected one event on app/bad, got %d: %r" % (len(bad), bad))
e = bad[0]
if e["type"] != "Warning" or e["reason"] != "InvalidAnnotation" or \
        "cairn.io/schedule" not in e["message"] or "61" not in e["message"]:
    die("event on app/bad: %r" % e)
if e["involvedObject"].get("uid") != "pvc-uid-bad":
    die("involvedObject: %r" % e["involvedObject"])
if any(r["method"] == "PATCH" and r["path"].endswith("/bad") for r in log):
    die("app/bad was patched")
# the GETs of app/bad went on every tick while app/data was handled
if len([r for r in log if r["method"] == "GET" and r["path"].endswith("/persistentvolumeclaims/bad")]) < 2:
    die("app/bad was not looked at on every tick")
EOF
python3 - "$T/events.json" "$T/log.json" <<'EOF' || fail "app/frozen and app/gone were not handled as expected"
import json, sys
events = json.load(open(sys.argv[1]))
log = json.load(open(sys.argv[2]))
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
fr = [e for e in events if e["involvedObject"].get("name") == "frozen"]
if len(fr) != 1 or fr[0]["type"] != "Warning" or fr[0]["reason"] != "NotSupported" or \
        "CAIRN_SNAPSHOT_EXEC" not in fr[0]["message"]:
    die("events on app/frozen: %r" % fr)
if any(r["method"] == "PATCH" and r["path"].endswith("/frozen") for r in log):
    die("app/frozen was patched although no backup ran")
go = [e for e in events if e["involvedObject"].get("name") == "gone"]
if len(go) != 1 or go[0]["type"] != "Warning" or go[0]["reason"] != "BackupFailed":
    die("events on app/gone (one BackupFailed, not one per tick): %r" % go)
pa = [r for r in log if r["method"] == "PATCH" and r["path"].endswith("/gone")]
if len(pa) != 1 or not pa[0]["body"]["metadata"]["annotations"]["cairn.io/last-status"].startswith("failed: "):
    die("patches of app/gone: %r" % pa)
EOF
grep -q "cairn.io/schedule" "$T/agent.err" || fail "no log line names the bad annotation"
[ "$(grep -c "pvc app/bad: .*cairn.io/schedule" "$T/agent.err")" -eq 1 ] ||
  fail "the bad annotation was logged more than once"
grep -q "$TOKEN" "$T/agent.err" "$T/agent.out" && fail "the token appears in the agent's output"

# ---- the snapshot ----
cairn_ok snapshots --json >"$T/snaps.json"
json_get "$T/snaps.json" '[s for s in j if s["id"] == "'"$SNAP"'"][0]["source"]' >"$T/src"
[ "$(cat "$T/src")" = "k8s:app/data" ] || fail "snapshot source is '$(cat "$T/src")'"
cairn_ok restore "$SNAP" --target "$T/restored" >/dev/null
rm "$VOL/cache.tmp" # excluded by cairn.io/exclude
diff -r --no-dereference "$VOL" "$T/restored" || fail "the restored PVC differs from the volume"
printf 'skip me\n' >"$VOL/cache.tmp"

# The manifest records where the snapshot came from.
python3 - "$CAIRN_REPO/snapshots/$SNAP" <<'EOF' || fail "the manifest lacks the kubernetes block"
import json, sys
m = json.load(open(sys.argv[1]))
k = m["kubernetes"]
assert (k["namespace"], k["pvc"], k["pv"], k["pod"], k["node"]) == ("app", "data", "pv-data", "web-0", "node-a"), k
EOF

# ---- metrics ----
curl -fsS "http://127.0.0.1:$MPORT/metrics" -D "$T/metrics.head" >"$T/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/metrics.head" || fail "metrics content type"
grep -Eq '^cairn_last_success_timestamp_seconds\{namespace="app",pvc="data"\} [0-9.e+]+$' "$T/metrics" ||
  { cat "$T/metrics" >&2; fail "no cairn_last_success_timestamp_seconds for app/data"; }
for m in 'cairn_backup_duration_seconds{namespace="app",pvc="data"}' \
  'cairn_backup_bytes{namespace="app",pvc="data",kind="read"}' \
  'cairn_backup_bytes{namespace="app",pvc="data",kind="new"}' \
  'cairn_backup_bytes{namespace="app",pvc="data",kind="stored"}' \
  'cairn_backup_failures_total{namespace="app",pvc="data"} 0' \
  'cairn_jobs_in_flight ' '# TYPE cairn_backup_failures_total counter'; do
  grep -qF "$m" "$T/metrics" || { cat "$T/metrics" >&2; fail "metrics lack '$m'"; }
done
grep -qF 'cairn_backup_failures_total{namespace="app",pvc="gone"} 1' "$T/metrics" ||
  { cat "$T/metrics" >&2; fail "the failed backup of app/gone is not counted"; }
grep -q 'pvc="bad"' "$T/metrics" && fail "app/bad has backup series although it never ran"

# ---- retention: with "* * * * *" a backup per minute; ask for more now ----
for i in 1 2; do
  before=$(json_get "$T/pvc.json" 'j["metadata"]["annotations"]["cairn.io/last-status"]')
  request_backup app data
  printf 'change %s\n' "$i" >>"$VOL/hello.txt"
  changed() {
    ctl GET pvc/app/data >"$T/pvc.json" 2>/dev/null &&
      s=$(json_get "$T/pvc.json" 'j["metadata"]["annotations"].get("cairn.io/last-status","")') &&
      [ "$s" != "$before" ] && [ "${s#ok }" != "$s" ]
  }
  wait_for 30 "backup $((i + 1)) after cairn.io/backup-requested-at" changed
done
cairn_ok snapshots --json >"$T/snaps.json"
n=$(json_get "$T/snaps.json" 'len([s for s in j if s["source"] == "k8s:app/data"])')
[ "$n" -eq 2 ] || fail "retention last=2 should leave 2 snapshots of k8s:app/data, found $n"

# ---- web-0 is deleted: app/data is still mounted by web-1 ----
mkdir -p "$PODS/$UID_C/volumes/kubernetes.io~csi/pv-data"
cp -a "$VOL" "$PODS/$UID_C/volumes/kubernetes.io~csi/pv-data/mount"
printf 'through web-1\n' >"$PODS/$UID_C/volumes/kubernetes.io~csi/pv-data/mount/web1.txt"
ctl POST event '{"type":"DELETED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"app","uid":"'$UID_A'"},"spec":{"nodeName":"node-a"}}}' >/dev/null
# A minute-schedule backup may start before the agent has seen the DELETED
# event (it then legitimately reads through web-0): wait for a backup that
# went through web-1, asking again after each one that did not. Each one must
# still succeed.
pod_of() { # SNAP
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["kubernetes"]["pod"])' \
    "$CAIRN_REPO/snapshots/$1"
}
ctl GET pvc/app/data >"$T/pvc.json"
before=$(json_get "$T/pvc.json" 'j["metadata"]["annotations"]["cairn.io/last-status"]')
request_backup app data
through_web1() {
  ctl GET pvc/app/data >"$T/pvc.json" 2>/dev/null &&
    s=$(json_get "$T/pvc.json" 'j["metadata"]["annotations"].get("cairn.io/last-status","")') &&
    [ "$s" != "$before" ] || return 1
  [ "${s#ok }" != "$s" ] || fail "backup after web-0 went: $s"
  [ "$(pod_of "${s#ok }")" = web-1 ] && return 0
  before=$s
  request_backup app data
  return 1
}
wait_for 30 "a backup through web-1" through_web1
SNAP=${s#ok }
cairn_ok ls "$SNAP" >"$T/ls"
grep -q 'web1.txt' "$T/ls" || fail "the snapshot was not read through web-1's mount"

# ---- the job duration histogram: every job so far, success and failure ----
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$T/metrics"
WALL=$(python3 -c "import time; print(time.time() - $T_START)")
/usr/bin/python3 - "$T/metrics" "$WALL" <<'EOF' || { cat "$T/metrics" >&2; fail "cairn_backup_job_duration_seconds is wrong"; }
import re, sys
text, wall = open(sys.argv[1]).read(), float(sys.argv[2])
H = "cairn_backup_job_duration_seconds"
BOUNDS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200]
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
if "# TYPE %s histogram\n" % H not in text or "# HELP %s " % H not in text:
    die("no HELP/TYPE histogram lines for " + H)
samples, lines = {}, [l for l in text.splitlines() if l.startswith(H)]
for l in lines:
    m = re.fullmatch(H + r'(_bucket|_sum|_count)\{result="(success|failure)"(?:,le="([^"]+)")?\} (\S+)', l)
    if not m or (m.group(1) == "_bucket") != (m.group(3) is not None):
        die("bad histogram line %r" % l)
    samples[(m.group(1), m.group(2), m.group(3))] = float(m.group(4))
# the per-PVC counters on the same page (rendered under the same lock)
def total(name):
    return sum(float(v) for v in re.findall(r"^%s\{[^}]*\} (\S+)$" % name, text, re.M))
want = {"success": total("cairn_backups_total"), "failure": total("cairn_backup_failures_total")}
if want["success"] < 4 or want["failure"] < 1:
    die("expected >= 4 successful and >= 1 failed jobs by now, counters say %r" % want)
for r in ("success", "failure"):
    les = [le for (k, rr, le) in samples if k == "_bucket" and rr == r]
    if les != ["%g" % b for b in BOUNDS] + ["+Inf"]:
        die("result=%s buckets %r, want the fixed bounds then +Inf in order" % (r, les))
    b = [samples[("_bucket", r, le)] for le in les]
    if any(x > y for x, y in zip(b, b[1:])):
        die("result=%s buckets are not cumulative: %r" % (r, b))
    n, s = samples[("_count", r, None)], samples[("_sum", r, None)]
    if b[-1] != n:
        die("result=%s +Inf bucket %g != _count %g" % (r, b[-1], n))
    if n != want[r]:
        die("result=%s _count %g, but the per-PVC counters add up to %g" % (r, n, want[r]))
    if not (0 <= s <= wall) or (r == "success" and s <= 0):
        die("result=%s _sum %g, want > 0 and <= the %.1f s the agent has run" % (r, s, wall))
    if r == "success" and b[-2] != n:
        die("result=%s: %g of %g small test backups above 7200 s" % (r, n - b[-2], n))
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("note: python3-prometheus-client is not installed: the page is not parsed", file=sys.stderr)
else:
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    if fams[H].type != "histogram":
        die("the Prometheus parser sees %s as %s" % (H, fams[H].type))
print("histogram: %r" % {r: (samples[("_count", r, None)], samples[("_sum", r, None)]) for r in ("success", "failure")})
EOF

# ---- SIGTERM ----
kill -TERM "$AGENT_PID"
for _ in $(seq 1 100); do agent_alive || break; sleep 0.1; done
agent_alive && { kill -KILL "$AGENT_PID"; fail "the agent did not stop within 10 s of SIGTERM"; }
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" -eq 0 ] || { tail -n 20 "$T/agent.err" >&2; fail "the agent exited with status $rc after SIGTERM"; }
check_no_crash "cairn agent" "$rc" "$T/agent.err"
echo "PASS: agent_e2e"
