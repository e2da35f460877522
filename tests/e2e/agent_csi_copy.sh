#!/usr/bin/env bash
# cairn.io/csi-copy: the agent's CSI data mover, against the fake API server
# (no root needed). The test plays kubelet: when the agent creates the copy
# Job, the test runs the Job's container args and environment itself (the
# temporary PVC's mount /source replaced by the volume's directory, CAIRN_REPO
# from the repository Secret, a fresh catalog as on the Job's emptyDir) and
# then marks the Job Complete (or Failed) in the fake server.
#   A. csi-copy "true": the exact temporary PVC (dataSource = the
#      VolumeSnapshot, class, access modes, restoreSize) and Job (image read
#      from the agent's own pod, read-only mount, Secret/ConfigMap wiring,
#      --meta) are sent and validate against the Kubernetes schemas; the
#      Cairn snapshot has the PVC's source and kubernetes block, restores
#      byte-identical (diff -r, the exclude applied); Job (Background) and
#      PVC are deleted, and the VolumeSnapshot too.
#   B. the Job fails: a failed job (last-status with the reason and the
#      log's last line, Event, failure counter), nothing left behind.
#   C. 403 on the Job creation: a clear failed job naming the RBAC rule; the
#      temporary PVC and the VolumeSnapshot deleted.
#   D. the agent is killed in the middle: the next agent deletes the
#      leftovers (Job, PVC, VolumeSnapshot) at start.
#   E. a Job that never finishes: CAIRN_COPY_TIMEOUT; nothing left behind.
#   F. csi-copy "keep": the VolumeSnapshot stays, the copy's record
#      references it, and retention deletes it with the record.
#   H. the Job's pod is refused (FailedCreate: a quota) or cannot start (the
#      Secret is missing): failed jobs at once, nothing left behind.
#   I. a Job that completes without the snapshot in the repository: failed.
#   J. a Job that fails after writing its snapshot (partial): recorded.
#   G. csi-copy on a non-csi PVC: a warning Event; a bad value: an error;
#      an agent that cannot know the Job's image: NotSupported.
#   K. SIGTERM during a copy: aborted after CAIRN_STOP_GRACE, nothing left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"

IMAGE=registry.example.org/cairn:9.8.7
cairn_repo_init
# what the copy Job's command accepts: --meta sections, --consistency levels
mkdir -p "$T/small"
echo x >"$T/small/x"
for bad in '--meta|{' '--meta|[]' '--meta|{"source":{}}' '--meta|{"kubernetes":"x"}' '--consistency|atomic'; do
  run_cairn backup "$T/small" "${bad%%|*}" "${bad#*|}"
  expect_rc 2 "backup $bad"
  case $bad in
    *source*) expect_in "--meta: 'source' is not one of the sections kubernetes, snapshot" "$bad" "$ERR" ;;
    *kubernetes*) expect_in "--meta: the section 'kubernetes' is not a JSON object" "$bad" "$ERR" ;;
    *atomic*) expect_in "--consistency 'atomic' is not none, crash, fs or app" "$bad" "$ERR" ;;
  esac
done
[ -z "$(ls "$CAIRN_REPO/snapshots")" ] || fail "a refused backup wrote a snapshot"
agent_fake_start
ctl POST vs-steps '{"cut_after": 1, "ready_after": 2}' >/dev/null
# The agent's own pod: the copy Job runs its image.
ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"cairn-agent-x1","namespace":"cairn-system","uid":"agent-pod-uid"},"spec":{"nodeName":"node-z","containers":[{"name":"sidecar","image":"busybox"},{"name":"agent","image":"'$IMAGE'"}]},"status":{"phase":"Running"}}' >/dev/null

VOL=$(ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/csi-copy":"true","cairn.io/exclude":"*.tmp"}' \
  agent_volume app vol pv-vol 91111111-2222-3333-4444-555555555555)
# the source PVC as a provisioner leaves it: class, request, access modes
ctl GET pvc/app/vol >"$T/pvc.json"
python3 - "$T/pvc.json" >"$T/pvc-new.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["spec"].update({"storageClassName": "fast-ssd", "accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "2Gi"}}})
print(json.dumps(p))
EOF
ctl POST pvc "$(cat "$T/pvc-new.json")" >/dev/null
mkdir -p "$VOL/sub/deeper"
printf 'hello from the volume\n' >"$VOL/hello.txt"
head -c 300000 /dev/urandom >"$VOL/sub/random.bin"
printf 'secret-ish\n' >"$VOL/sub/deeper/private"
chmod 600 "$VOL/sub/deeper/private"
ln -s hello.txt "$VOL/link"
echo scratch >"$VOL/scratch.tmp"
: >"$VOL/empty"

# wait_job N: until N copy Jobs were created; prints the newest's name
wait_job() {
  local _
  for _ in $(seq 1 300); do
    ctl GET created >"$T/created.json"
    if [ "$(json_get "$T/created.json" 'len([c for c in j if c["kind"] == "Job"])')" -ge "$1" ]; then
      json_get "$T/created.json" '[c for c in j if c["kind"] == "Job"]['"$1"'-1]["object"]["metadata"]["name"]'
      return 0
    fi
    agent_alive || { tail -n 30 "$T/agent.err" >&2; fail "the agent exited"; }
    sleep 0.1
  done
  tail -n 30 "$T/agent.err" >&2
  fail "no copy Job number $1 was created"
}

# run_job NAME DIR: run the Job's container as its pod would, /source = DIR
run_job() {
  ctl GET created >"$T/created.json"
  python3 - "$T/created.json" "$1" "$2" "$T/jobstate-$1" >"$T/job-$1.cmd" <<'EOF' || fail "cannot read the Job's command"
import json, sys
created, name, vol, state = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
job = [c["object"] for c in created if c["kind"] == "Job" and c["object"]["metadata"]["name"] == name][0]
c = job["spec"]["template"]["spec"]["containers"][0]
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
assert mounts["/source"] == "source"
print("CAIRN_CATALOG=" + state + "/catalog.db")
for a in c["args"]:
    print(vol + a[len("/source"):] if a == "/source" or a.startswith("/source/") else a)
EOF
  mkdir -p "$T/jobstate-$1"
  mapfile -t JOBCMD <"$T/job-$1.cmd"
  env "${JOBCMD[0]}" "$CAIRN" "${JOBCMD[@]:1}" >"$T/jobrun-$1.out" 2>"$T/jobrun-$1.err" ||
    { cat "$T/jobrun-$1.err" >&2; fail "the Job's command failed"; }
}

# objects of the fake: live Jobs/PVCs/VolumeSnapshots, and what was deleted
live_jobs() { ctl GET jobs | python3 -c 'import json,sys; print(" ".join(j["metadata"]["name"] for j in json.load(sys.stdin)))'; }
pvc_exists() { ctl GET "pvc/$1/$2" >/dev/null 2>&1; }
vs_live() { # NAME: 0 when the VolumeSnapshot exists and is not deleted
  ctl GET volumesnapshots | python3 -c 'import json,sys; sys.exit(0 if any(v["metadata"]["name"] == sys.argv[1] and not v["deleted"] for v in json.load(sys.stdin)) else 1)' "$1"
}
job_vs() { # JOB: the VolumeSnapshot it copies
  ctl GET created | python3 -c 'import json,sys; print([c["object"] for c in json.load(sys.stdin) if c["object"]["metadata"]["name"] == sys.argv[1]][0]["metadata"]["annotations"]["cairn.io/volume-snapshot"])' "$1"
}
gone() { # JOB: the Job and its PVC were deleted (Background for the Job)
  ctl GET deleted >"$T/deleted.json"
  python3 - "$T/deleted.json" "$1" <<'EOF'
import json, sys
d, name = json.load(open(sys.argv[1])), sys.argv[2]
kinds = {e["kind"]: e for e in d if e["name"] == name and e["namespace"] == "app"}
ok = "Job" in kinds and "PersistentVolumeClaim" in kinds and \
     (kinds["Job"]["body"] or {}).get("propagationPolicy") == "Background"
sys.exit(0 if ok else 1)
EOF
}
all_gone() { # JOB
  gone "$1" && ! pvc_exists app "$1" && ! live_jobs | grep -qw "$1" && ! vs_live "$(job_vs "$1")"
}
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
agent_start CAIRN_METRICS_PORT="$MPORT" POD_NAME=cairn-agent-x1

# ---- A: the copy ----
JOB=$(wait_job 1)
case $JOB in cairn-copy-vol-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;; *) fail "copy Job name '$JOB'" ;; esac
VS=$(job_vs "$JOB")
ctl GET log >"$T/log.json"
ctl GET created >"$T/created.json"
ctl GET volumesnapshots >"$T/vs.json"
python3 - "$T/created.json" "$T/vs.json" "$JOB" "$IMAGE" "$T/copy-pvc.json" "$T/copy-job.json" <<'EOF' || fail "the temporary PVC or the copy Job is not as expected"
import json, sys, difflib
created, vss, name, image = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
def same(want, got, what):
    if want != got:
        a = json.dumps(want, indent=1, sort_keys=True).splitlines()
        b = json.dumps(got, indent=1, sort_keys=True).splitlines()
        die(what + " differs:\n" + "\n".join(difflib.unified_diff(a, b, "expected", "sent", lineterm="")))
pvcs = [c["object"] for c in created if c["kind"] == "PersistentVolumeClaim"]
jobs = [c["object"] for c in created if c["kind"] == "Job"]
if len(pvcs) != 1 or len(jobs) != 1:
    die("created: %r" % [(c["kind"], c["object"]["metadata"].get("name")) for c in created])
vs = [v for v in vss if v["sent"] is not None][0]
vsname = vs["metadata"]["name"]
if vs["sent"]["metadata"]["annotations"].get("cairn.io/csi-copy") != "true":
    die("the VolumeSnapshot is not marked as a copy's: %r" % vs["sent"]["metadata"])
pvc, job = pvcs[0], jobs[0]
token = pvc["metadata"]["annotations"]["cairn.io/copy-id"]
if len(token) != 16 or name != "cairn-copy-vol-" + token[:8]:
    die("token %r name %r" % (token, name))
labels = {"app.kubernetes.io/name": "cairn", "app.kubernetes.io/component": "csi-copy",
          "app.kubernetes.io/part-of": "cairn", "app.kubernetes.io/managed-by": "cairn",
          "cairn.io/copy-job": name}
ann = {"cairn.io/pvc": "vol", "cairn.io/node": "node-a", "cairn.io/volume-snapshot": vsname,
       "cairn.io/copy-id": token, "cairn.io/csi-copy": "true"}
# the fake adds uid and creationTimestamp to what it records
for o in (pvc, job):
    for k in ("uid", "creationTimestamp"):
        o["metadata"].pop(k, None)
pvc.pop("status", None)
same({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
      "metadata": {"name": name, "namespace": "app", "labels": labels, "annotations": ann},
      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
               "volumeMode": "Filesystem", "storageClassName": "fast-ssd",
               "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                              "name": vsname}}}, pvc, "the temporary PVC")
args = job["spec"]["template"]["spec"]["containers"][0]["args"]
meta = json.loads(args[args.index("--meta") + 1])
args[args.index("--meta") + 1] = "META"
same({"apiVersion": "batch/v1", "kind": "Job",
  "metadata": {"name": name, "namespace": "app", "labels": labels, "annotations": ann},
  "spec": {
    "backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "activeDeadlineSeconds": 21600,
    "template": {
      "metadata": {"labels": labels},
      "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
          "name": "copy", "image": image, "imagePullPolicy": "IfNotPresent",
          "args": ["backup", "/source", "--source", "k8s:app/vol", "--consistency", "crash",
                   "--ignore-device", "--workers", "2", "--meta", "META", "--exclude", "*.tmp"],
          "envFrom": [{"configMapRef": {"name": "cairn-agent-config", "optional": True}}],
          "env": [
            {"name": "CAIRN_REPO", "valueFrom": {"secretKeyRef": {"name": "cairn-repository", "key": "CAIRN_REPO"}}},
            {"name": "AWS_ACCESS_KEY_ID_FILE", "value": "/etc/cairn/secret/AWS_ACCESS_KEY_ID"},
            {"name": "AWS_SECRET_ACCESS_KEY_FILE", "value": "/etc/cairn/secret/AWS_SECRET_ACCESS_KEY"},
            {"name": "CAIRN_PASSWORD_FILE", "value": "/etc/cairn/secret/CAIRN_PASSWORD"},
            {"name": "CAIRN_CATALOG", "value": "/var/lib/cairn/catalog.db"}],
          "volumeMounts": [
            {"name": "source", "mountPath": "/source", "readOnly": True},
            {"name": "repository-secret", "mountPath": "/etc/cairn/secret", "readOnly": True},
            {"name": "cairn-state", "mountPath": "/var/lib/cairn"},
            {"name": "tmp", "mountPath": "/tmp"}],
          "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "2", "memory": "1Gi"}},
          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                              "capabilities": {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]}}}],
        "volumes": [
          {"name": "source", "persistentVolumeClaim": {"claimName": name, "readOnly": True}},
          {"name": "repository-secret", "secret": {"secretName": "cairn-repository", "defaultMode": 256}},
          {"name": "cairn-state", "emptyDir": {}},
          {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]}}}}, job, "the copy Job")
same({"namespace": "app", "pvc": "vol", "pv": "pv-vol", "pod": "pod-vol", "node": "node-a"},
     meta["kubernetes"], "--meta's kubernetes section")
s = meta["snapshot"]
if s["method"] != "csi" or s["data"] != "files" or s["volume_snapshot"] != vsname or \
        s["uid"] != vs["metadata"]["uid"] or s["copy"] != {"id": token, "job": name, "pvc": name,
                                                          "volume_snapshot_kept": False}:
    die("--meta's snapshot section: %r" % s)
json.dump(pvc, open(sys.argv[5], "w"))
job["spec"]["template"]["spec"]["containers"][0]["args"] = args
json.dump(job, open(sys.argv[6], "w"))
EOF
validate_obj "$T/copy-pvc.json"
validate_obj "$T/copy-job.json"
python3 - "$T/log.json" <<'EOF' || fail "the agent did not read its own pod for the image"
import json, sys
log = json.load(open(sys.argv[1]))
assert any(r["method"] == "GET" and r["path"] == "/api/v1/namespaces/cairn-system/pods/cairn-agent-x1" for r in log)
EOF
vs_live "$VS" || fail "the VolumeSnapshot is gone while it is copied"
run_job "$JOB" "$VOL"
ctl POST job '{"namespace":"app","name":"'"$JOB"'","condition":"Complete"}' >/dev/null
agent_wait_status app vol 30
case $STATUS in ok\ *) ;; *) fail "the copy failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
grep -q "^$SNAP" "$T/jobrun-$JOB.out" || fail "last-status names $SNAP, the Job wrote $(cat "$T/jobrun-$JOB.out")"
python3 - "$CAIRN_REPO/snapshots/$SNAP" "$JOB" <<'EOF' || fail "the copy's manifest is not as expected"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["source"] == "k8s:app/vol", m["source"]
assert m["consistency"] == "crash", m["consistency"]
assert m["kubernetes"] == {"namespace": "app", "pvc": "vol", "pv": "pv-vol", "pod": "pod-vol", "node": "node-a"}, m["kubernetes"]
s = m["snapshot"]
assert s["method"] == "csi" and s["data"] == "files" and s["copy"]["job"] == sys.argv[2], s
assert s["restore_size"] == "1Gi" and s["handle"].startswith("snap-"), s
EOF
cairn_ok snapshots --json >"$T/snaps.json"
json_get "$T/snaps.json" '[s["id"] for s in j if s["source"] == "k8s:app/vol"]' | grep -q "$SNAP" ||
  fail "'cairn snapshots' does not list the copy under k8s:app/vol"
cairn_ok restore "$SNAP" --target "$T/restored-a"
diff -r --no-dereference -x '*.tmp' "$VOL" "$T/restored-a" || fail "the copy does not restore the volume's content"
[ -e "$T/restored-a/scratch.tmp" ] && fail "cairn.io/exclude was not applied to the copy"
cmp "$VOL/sub/random.bin" "$T/restored-a/sub/random.bin" || fail "random.bin differs"
wait_for 10 "the copy's temporary objects to be deleted" all_gone "$JOB"
expect_in "deleted the VolumeSnapshot '$VS' (copied into snapshot" "agent log" "$T/agent.err"
ctl GET events >"$T/events.json"
json_get "$T/events.json" '[e["message"] for e in j if e["reason"] == "BackupSucceeded" and e["involvedObject"]["name"] == "vol"]' | grep -q "${SNAP:0:12}" ||
  fail "no BackupSucceeded Event for the copy"
[ "$(metric 'cairn_backups_total{namespace="app",pvc="vol"}')" = 1 ] || fail "cairn_backups_total is not 1: $(metric 'cairn_backups_total{namespace="app",pvc="vol"}')"

# ---- B: the Job fails ----
agent_request app vol
JOB=$(wait_job 2)
ctl POST job "$(python3 -c 'import json,sys; print(json.dumps({"namespace":"app","name":sys.argv[1],"condition":"Failed","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit","pod_log":"reading /source\ncairn: error: backup failed: cannot open repository: boom\n"}))' "$JOB")" >/dev/null
agent_wait_status app vol 30
case $STATUS in "failed: the copy Job app/$JOB failed: BackoffLimitExceeded"*) ;; *) fail "the failed copy's status: $STATUS" ;; esac
expect_in "copy Job $JOB: | cairn: error: backup failed: cannot open repository: boom" "agent log" "$T/agent.err"
wait_for 10 "the failed copy's objects to be deleted" all_gone "$JOB"
[ "$(metric 'cairn_backup_failures_total{namespace="app",pvc="vol"}')" = 1 ] || fail "cairn_backup_failures_total is not 1"
ctl GET events >"$T/events.json"
json_get "$T/events.json" '[e["message"] for e in j if e["reason"] == "BackupFailed" and e["involvedObject"]["name"] == "vol"]' | grep -q "boom" ||
  fail "no BackupFailed Event with the Job's log line"

# ---- C: 403 on the Job ----
ctl POST fail '{"method":"POST","path":"/apis/batch/v1/namespaces/app/jobs","status":403,"count":1}' >/dev/null
NPVC=$(json_get "$T/created.json" 'len([c for c in j if c["kind"] == "PersistentVolumeClaim"])')
agent_request app vol
agent_wait_status app vol 30
case $STATUS in "failed: cannot create the copy Job app/cairn-copy-vol-"*"not allowed to create jobs.batch in namespace 'app'"*) ;;
  *) fail "403 on the Job: $STATUS" ;; esac
expect_in "daemonset/clusterrole.yaml" "agent log" "$T/agent.err"
ctl GET created >"$T/created.json"
TMP=$(json_get "$T/created.json" '[c for c in j if c["kind"] == "PersistentVolumeClaim"][-1]["object"]["metadata"]["name"]')
[ "$(json_get "$T/created.json" 'len([c for c in j if c["kind"] == "PersistentVolumeClaim"])')" -eq $((NPVC + 1)) ] ||
  fail "no temporary PVC before the refused Job"
wait_for 10 "the temporary PVC of the refused Job to be deleted" bash -c "! curl -fsS $API/_control/pvc/app/$TMP >/dev/null 2>&1"
ctl GET volumesnapshots >"$T/vs.json"
[ "$(json_get "$T/vs.json" 'len([v for v in j if v["sent"] and not v["deleted"]])')" -eq 0 ] ||
  fail "a VolumeSnapshot is left after the refused Job"

# ---- D: the agent is killed in the middle; the next one cleans up ----
agent_request app vol
JOB=$(wait_job 3)
VS=$(job_vs "$JOB")
{ kill -KILL "$AGENT_PID" && wait "$AGENT_PID"; } 2>/dev/null || true
if ! { pvc_exists app "$JOB" && live_jobs | grep -qw "$JOB" && vs_live "$VS"; }; then
  fail "the killed agent's copy objects are not all there"
fi
agent_start CAIRN_METRICS_PORT="$MPORT" POD_NAME=cairn-agent-x1 CAIRN_COPY_TIMEOUT=3
wait_for 20 "the leftovers of the killed agent to be deleted" all_gone "$JOB"
expect_in "deleted the copy Job app/$JOB left by an earlier copy on node 'node-a'" "agent log" "$T/agent.err"
expect_in "deleted the VolumeSnapshot app/$VS left by an earlier copy" "agent log" "$T/agent.err"

# ---- E: the request is still due: a new copy that never finishes (timeout 3 s) ----
# (AGENT_LAST is still C's status: the killed agent wrote none)
JOB=$(wait_job 4)
agent_wait_status app vol 30
case $STATUS in "failed: the copy Job app/$JOB did not complete within 3 s (CAIRN_COPY_TIMEOUT)"*) ;;
  *) fail "timeout: $STATUS" ;; esac
wait_for 10 "the timed-out copy's objects to be deleted" all_gone "$JOB"
agent_stop

# ---- F: csi-copy "keep", with retention last=1 ----
VOLK=$(ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/csi-copy":"keep","cairn.io/retention":"last=1"}' \
  agent_volume app kept pv-kept 92222222-2222-3333-4444-555555555555)
echo "kept data" >"$VOLK/f"
ctl GET pvc/app/kept >"$T/pvc.json"
python3 - "$T/pvc.json" >"$T/pvc-new.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["spec"].update({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}})
print(json.dumps(p))
EOF
ctl POST pvc "$(cat "$T/pvc-new.json")" >/dev/null
agent_start CAIRN_METRICS_PORT="$MPORT" POD_NAME=cairn-agent-x1 CAIRN_COPY_IMAGE=other.example.org/cairn:1
AGENT_LAST=
JOBK1=$(wait_job 5)
ctl GET created >"$T/created.json"
json_get "$T/created.json" '[c["object"] for c in j if c["object"]["metadata"]["name"] == "'"$JOBK1"'" and c["kind"] == "Job"][0]["spec"]["template"]["spec"]["containers"][0]["image"]' |
  grep -qx "other.example.org/cairn:1" || fail "CAIRN_COPY_IMAGE was not used"
VSK1=$(job_vs "$JOBK1")
run_job "$JOBK1" "$VOLK"
ctl POST job '{"namespace":"app","name":"'"$JOBK1"'","condition":"Complete"}' >/dev/null
agent_wait_status app kept 30
case $STATUS in ok\ *) ;; *) fail "the kept copy failed: $STATUS" ;; esac
K1=${STATUS#ok }
json_get "$CAIRN_REPO/snapshots/$K1" 'j["snapshot"]["copy"]["volume_snapshot_kept"]' | grep -qx true ||
  fail "the kept copy's record does not say its VolumeSnapshot is kept"
wait_for 10 "the kept copy's Job and PVC to be deleted" gone "$JOBK1"
vs_live "$VSK1" || fail "csi-copy keep: the VolumeSnapshot was deleted"
agent_request app kept
JOBK2=$(wait_job 6)
VSK2=$(job_vs "$JOBK2")
run_job "$JOBK2" "$VOLK"
ctl POST job '{"namespace":"app","name":"'"$JOBK2"'","condition":"Complete"}' >/dev/null
agent_wait_status app kept 30
case $STATUS in ok\ *) ;; *) fail "the second kept copy failed: $STATUS" ;; esac
vs_live "$VSK1" && fail "retention forgot the first kept copy but left its VolumeSnapshot"
vs_live "$VSK2" || fail "the VolumeSnapshot of the kept copy retention keeps was deleted"
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len([s for s in j if s["source"] == "k8s:app/kept"])')" -eq 1 ] ||
  fail "retention last=1 did not forget the first kept copy"

# ---- H: the Job's pod is refused (FailedCreate), or cannot start ----
AGENT_LAST=$(pvc_status app vol)
ctl POST reject-pods '{"namespace":"app","message":"exceeded quota: compute, requested: limits.memory=1Gi"}' >/dev/null
agent_request app vol
JOB=$(wait_job 7)
agent_wait_status app vol 30
case $STATUS in "failed: the copy Job app/$JOB cannot create its pod: Error creating: pods \"$JOB-"*"exceeded quota: compute"*) ;;
  *) fail "a refused pod: $STATUS" ;; esac
wait_for 10 "the refused copy's objects to be deleted" all_gone "$JOB"
ctl POST reject-pods '{"namespace":"app","message":""}' >/dev/null
agent_request app vol
JOB=$(wait_job 8)
ctl POST job '{"namespace":"app","name":"'"$JOB"'","pod_waiting":{"reason":"CreateContainerConfigError","message":"secret \"cairn-repository\" not found"}}' >/dev/null
agent_wait_status app vol 30
case $STATUS in "failed: the pod of the copy Job app/$JOB cannot start: CreateContainerConfigError: secret \"cairn-repository\" not found"*) ;;
  *) fail "a pod that cannot start: $STATUS" ;; esac
expect_in "must exist in the PVC's namespace" "agent log" "$T/agent.err"
wait_for 10 "the stuck copy's objects to be deleted" all_gone "$JOB"

# ---- I: a Job that completes without writing the snapshot (another repository) ----
AGENT_LAST=$(pvc_status app vol)
agent_request app vol
JOB=$(wait_job 9)
ctl POST job '{"namespace":"app","name":"'"$JOB"'","condition":"Complete"}' >/dev/null
agent_wait_status app vol 30
case $STATUS in "failed: the copy Job app/$JOB completed but the repository holds no snapshot of k8s:app/vol with copy id "*) ;;
  *) fail "a Job without its snapshot: $STATUS" ;; esac
wait_for 10 "the objects of the Job without its snapshot to be deleted" all_gone "$JOB"
# ---- J: a Job that wrote its snapshot and then failed (exit 3: partial) ----
agent_request app vol
JOB=$(wait_job 10)
run_job "$JOB" "$VOL"
ctl POST job '{"namespace":"app","name":"'"$JOB"'","condition":"Failed","reason":"BackoffLimitExceeded","message":"exit 3"}' >/dev/null
agent_wait_status app vol 30
case $STATUS in ok\ *) ;; *) fail "a failed Job that wrote its snapshot: $STATUS" ;; esac
grep -q "^${STATUS#ok }" "$T/jobrun-$JOB.out" || fail "the status does not name the snapshot the failed Job wrote"
expect_in "the copy Job app/$JOB failed (BackoffLimitExceeded: exit 3) but wrote snapshot" "agent log" "$T/agent.err"

# ---- G: bad or misplaced csi-copy annotations ----
ANN='{"cairn.io/schedule":"@daily","cairn.io/csi-copy":"true"}' \
  agent_volume app plain pv-plain 93333333-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/csi-copy":"yes"}' \
  agent_volume app badcopy pv-badcopy 94444444-2222-3333-4444-555555555555 >/dev/null
has_event() { # PVC TEXT
  ctl GET events >"$T/events.json"
  json_get "$T/events.json" '[e["message"] for e in j if e["reason"] == "InvalidAnnotation" and e["involvedObject"]["name"] == "'"$1"'"]' | grep -qF "$2"
}
wait_for 20 "the warning about csi-copy without csi" has_event plain "cairn.io/csi-copy 'true' is ignored: only cairn.io/snapshot 'csi'"
wait_for 20 "the error about a bad csi-copy" has_event badcopy "cairn.io/csi-copy 'yes': not a csi-copy mode (valid: false, true, keep)"
agent_wait_status app plain 30
case $STATUS in ok\ *) ;; *) fail "the file backup with an ignored csi-copy failed: $STATUS" ;; esac
[ -z "$(pvc_status app badcopy)" ] || fail "a PVC with a bad csi-copy was backed up"
agent_stop
# an agent that cannot know the copy Job's image: NotSupported, nothing created
ctl GET created >"$T/created.json"
NCREATED=$(json_get "$T/created.json" 'len(j)')
agent_start CAIRN_METRICS_PORT="$MPORT"
agent_request app vol
not_supported() {
  ctl GET events >"$T/events.json"
  json_get "$T/events.json" '[e["message"] for e in j if e["reason"] == "NotSupported" and e["involvedObject"]["name"] == "vol"]' |
    grep -qF "cairn.io/csi-copy 'true': the agent does not know the image for its copy Job"
}
wait_for 20 "NotSupported without an image" not_supported
ctl GET created >"$T/created.json"
[ "$(json_get "$T/created.json" 'len(j)')" -eq "$NCREATED" ] || fail "an agent without an image created a copy"
agent_stop
# ---- K: SIGTERM during a copy: aborted after CAIRN_STOP_GRACE, nothing left ----
agent_start CAIRN_METRICS_PORT="$MPORT" POD_NAME=cairn-agent-x1 CAIRN_STOP_GRACE=1
agent_request app vol
JOB=$(wait_job 11)
agent_stop
STATUS=$(pvc_status app vol)
case $STATUS in "aborted: the agent on node node-a was stopped during the backup of k8s:app/vol"*) ;;
  *) fail "a copy when the agent stops: $STATUS" ;; esac
all_gone "$JOB" || fail "the aborted copy left objects behind"
grep -q "$TOKEN" "$T/agent.err" "$T/agent.out" && fail "the token appears in the agent's log"
echo "PASS: agent_csi_copy"
