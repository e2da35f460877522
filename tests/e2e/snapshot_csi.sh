#!/usr/bin/env bash
# cairn.io/snapshot: csi through the agent, against the fake API server (no
# root needed): the VolumeSnapshot the agent creates is checked field by field
# against the snapshot.storage.k8s.io/v1 CRD (kubernetes-models has no
# VolumeSnapshot), the agent waits for creationTime and then readyToUse (the
# fake's "snapshot controller" needs several GETs), records the name, content
# and snapshotHandle in the manifest, and deletes a VolumeSnapshot whose
# status reports an error. Bad annotations and missing Secrets: an Event and a
# log line each, other PVCs unaffected, credentials never logged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"

cairn_repo_init
agent_fake_start
ctl POST vs-steps '{"cut_after": 2, "ready_after": 4}' >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/snapshot-class":"fast-snaps"}' \
  agent_volume app vol pv-vol 71111111-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"lvm"}' \
  agent_volume app badmethod pv-badmethod 72222222-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"postgres","cairn.io/credentials-secret":"pg-creds"}' \
  agent_volume app nosecret pv-nosecret 73333333-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"postgres","cairn.io/credentials-secret":"pg-creds2"}' \
  agent_volume app withsecret pv-withsecret 74444444-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"mysql","cairn.io/credentials-secret":"pg-creds2"}' \
  agent_volume app mysql pv-mysql 75555555-2222-3333-4444-555555555555 >/dev/null
PLAIN=$(ANN='{"cairn.io/schedule":"@daily"}' agent_volume app plain pv-plain 76666666-2222-3333-4444-555555555555)
echo "plain data" >"$PLAIN/f"
PASSWORD=s3cr3t-PASSWORD-$RANDOM$RANDOM
b64() { printf '%s' "$1" | base64 -w0; }
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"pg-creds2","namespace":"app"},"data":{"host":"'"$(b64 "$T/nosock")"'","user":"'"$(b64 postgres)"'","password":"'"$(b64 "$PASSWORD")"'"}}' >/dev/null

agent_start
agent_wait_status app vol 60
case $STATUS in ok\ *) ;; *) fail "the csi backup failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
ctl GET volumesnapshots >"$T/vs.json"
python3 - "$T/vs.json" "$CAIRN_REPO/snapshots/$SNAP" <<'EOF' || fail "the VolumeSnapshot or the manifest is not as expected"
import json, re, sys
vss = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2]))
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
if len(vss) != 1:
    die("expected one VolumeSnapshot, got %d" % len(vss))
vs = vss[0]
sent = vs["sent"]
# snapshot.storage.k8s.io/v1 VolumeSnapshot (external-snapshotter CRD):
# spec.source has exactly one of persistentVolumeClaimName and
# volumeSnapshotContentName; volumeSnapshotClassName is optional; nothing else.
if set(sent) != {"apiVersion", "kind", "metadata", "spec"}:
    die("top-level fields: %r" % sorted(sent))
if (sent["apiVersion"], sent["kind"]) != ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"):
    die("apiVersion/kind: %r" % [sent["apiVersion"], sent["kind"]])
md = sent["metadata"]
if not re.fullmatch(r"cairn-vol-\d{14}", md.get("name", "")) or md.get("namespace") != "app":
    die("metadata: %r" % md)
if len(md["name"]) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", md["name"]):
    die("name is not a DNS subdomain: %r" % md["name"])
if set(md) - {"name", "namespace", "labels", "annotations"}:
    die("unexpected metadata: %r" % md)
for k, v in list(md.get("labels", {}).items()):
    if len(v) > 63:
        die("label value longer than 63: %r" % v)
if md["labels"].get("app.kubernetes.io/managed-by") != "cairn" or md["annotations"].get("cairn.io/pvc") != "vol":
    die("labels/annotations: %r" % md)
if sent["spec"] != {"volumeSnapshotClassName": "fast-snaps", "source": {"persistentVolumeClaimName": "vol"}}:
    die("spec: %r" % sent["spec"])
if vs["gets"] < 4:
    die("the agent read the VolumeSnapshot %d times: it did not wait for readyToUse" % vs["gets"])
if vs["deleted"]:
    die("the VolumeSnapshot of a good backup was deleted")
s = m["snapshot"]
if m["consistency"] != "crash":
    die("consistency %r" % m["consistency"])
want = {"method": "csi", "quiesce": "none", "data": "reference", "volume_snapshot": md["name"],
        "namespace": "app", "uid": vs["metadata"]["uid"], "class": "fast-snaps",
        "content": "snapcontent-" + vs["metadata"]["uid"],
        "handle": "snap-" + vs["metadata"]["uid"][:8], "restore_size": "1Gi"}
for k, v in want.items():
    if s.get(k) != v:
        die("manifest snapshot.%s = %r, want %r" % (k, s.get(k), v))
if not s.get("creation_time"):
    die("no creation_time")
EOF

cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" '[(s["consistency"], s["snapshot"]["method"], s["snapshot"]["data"]) for s in j if s["id"] == "'"$SNAP"'"][0]')" = "('crash', 'csi', 'reference')" ] ||
  fail "cairn snapshots --json does not show the consistency and method of the csi snapshot"

# Its data is the VolumeSnapshot: restore and dump refuse, naming it, instead
# of writing an empty tree as if it were the volume.
VSNAME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"]["volume_snapshot"])' "$CAIRN_REPO/snapshots/$SNAP")
run_cairn restore "$SNAP" --target "$T/refrestore"
expect_rc 1 "restore of a csi reference snapshot"
expect_in "holds no files" "restore says the snapshot holds no files" "$ERR"
expect_in "VolumeSnapshot app/$VSNAME" "restore names the VolumeSnapshot" "$ERR"
expect_in "dataSource" "restore says how to restore it" "$ERR"
[ ! -e "$T/refrestore" ] || fail "restore of a reference snapshot created the target"
run_cairn dump "$SNAP" --format tar
expect_rc 1 "dump of a csi reference snapshot"
expect_in "VolumeSnapshot app/$VSNAME" "dump names the VolumeSnapshot" "$ERR"
[ ! -s "$OUT" ] || fail "dump of a reference snapshot wrote an archive"
cairn_ok snapshots >"$T/snaps.txt"
grep -A2 "^${SNAP:0:12} " "$T/snaps.txt" | grep -q "(no files: its data is the CSI VolumeSnapshot app/$VSNAME" ||
  { cat "$T/snaps.txt" >&2; fail "cairn snapshots does not say where the csi snapshot's data is"; }
run_cairn ls "$SNAP"
expect_rc 0 "ls of a csi reference snapshot"
expect_in "holds no files" "ls says the snapshot holds no files" "$ERR"
expect_in "VolumeSnapshot app/$VSNAME" "ls names the VolumeSnapshot" "$ERR"

# The other PVCs: each reported, none stopping the others.
plain_ok() { case "$(pvc_status app plain)" in ok\ *) return 0 ;; *) return 1 ;; esac; }
wait_for 30 "app/plain to be backed up" plain_ok
nosecret_done() { [ -n "$(pvc_status app nosecret)" ]; }
wait_for 30 "a result on app/nosecret" nosecret_done
withsecret_done() { [ -n "$(pvc_status app withsecret)" ]; }
wait_for 30 "a result on app/withsecret" withsecret_done
mysql_event() { ctl GET events | grep -q '"NotSupported"'; }
wait_for 30 "a NotSupported Event on app/mysql" mysql_event
bad_event() { ctl GET events | grep -q '"InvalidAnnotation"'; }
wait_for 30 "an InvalidAnnotation Event on app/badmethod" bad_event
sleep 2
ctl GET events >"$T/events.json"
ctl GET log >"$T/log.json"
python3 - "$T/events.json" "$T/log.json" <<'EOF' || fail "bad annotations / missing Secrets were not reported as expected"
import json, sys
events = json.load(open(sys.argv[1]))
log = json.load(open(sys.argv[2]))
def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)
def on(name):
    return [e for e in events if e["involvedObject"].get("name") == name]
b = on("badmethod")
if len(b) != 1 or b[0]["reason"] != "InvalidAnnotation" or "'lvm'" not in b[0]["message"] \
        or "valid: file, btrfs, csi, exec" not in b[0]["message"]:
    die("events on app/badmethod: %r" % b)
n = on("nosecret")
if len(n) != 1 or n[0]["reason"] != "BackupFailed" or "pg-creds" not in n[0]["message"] or \
        "does not exist" not in n[0]["message"]:
    die("events on app/nosecret: %r" % n)
my = on("mysql")
if len(my) != 1 or my[0]["reason"] != "NotSupported" or "mysql" not in my[0]["message"]:
    die("events on app/mysql: %r" % my)
if any(r["method"] == "PATCH" and r["path"].endswith(("/badmethod", "/mysql")) for r in log):
    die("a PVC whose backup could not start was patched")
gets = [r for r in log if r["path"] == "/api/v1/namespaces/app/secrets/pg-creds2"]
if not gets or any(r["method"] != "GET" for r in gets):
    die("the Secret was not read with GET: %r" % gets)
if any("/secrets" in r["path"] and "/namespaces/app/" not in r["path"] for r in log):
    die("a Secret outside the PVC's namespace was read")
p = on("plain")
if len(p) != 1 or p[0]["reason"] != "BackupSucceeded":
    die("events on app/plain: %r" % p)
EOF
grep -q "pvc app/badmethod: .*'lvm'" "$T/agent.err" || fail "no log line for app/badmethod"
grep -q "pvc app/nosecret: .*Secret 'pg-creds'" "$T/agent.err" || fail "no log line for app/nosecret"
grep -q "pvc app/withsecret: .*failed" "$T/agent.err" || fail "no log line for app/withsecret"
if grep -rq "$PASSWORD" "$T/agent.err" "$T/agent.out" "$T/events.json" "$CAIRN_REPO" 2>/dev/null; then
  fail "the database password appears in the agent's log, an Event or the repository"
fi
ctl GET log | grep -q "$PASSWORD" && fail "the password was sent to the API server"

# A VolumeSnapshot whose status reports an error: failed and deleted.
ctl POST vs-steps '{"cut_after": 1, "ready_after": 2, "error": "the fake driver exploded"}' >/dev/null
agent_request app vol
agent_wait_status app vol 60
case $STATUS in
  failed:*"the fake driver exploded"*) ;;
  *) fail "the failed VolumeSnapshot was not reported: $STATUS" ;;
esac
ctl GET volumesnapshots >"$T/vs.json"
python3 - "$T/vs.json" <<'EOF' || fail "the failed VolumeSnapshot was not deleted"
import json, sys
vss = json.load(open(sys.argv[1]))
bad = [v for v in vss if "error" in v["status"]]
assert len(bad) == 1 and bad[0]["deleted"], vss
assert len([v for v in vss if not v["deleted"]]) == 1, vss
EOF
agent_stop
echo "PASS: snapshot_csi"
