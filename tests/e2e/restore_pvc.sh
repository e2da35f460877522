#!/usr/bin/env bash
# cairn restore-pvc against tests/k8s/fake_apiserver.py: the exact PVC and Job
# objects it sends (and that they validate against the Kubernetes schemas
# with tests/k8s/validate.js), the Job's command really restores the snapshot
# (the test runs the Job's container args and environment itself, as the
# pod would), --wait follows the Job to Complete / Failed (with the pod's log
# tail), and every refusal: a missing PVC without --create, an existing one
# with --create, 409 AlreadyExists on a race, 403 on the Job, a pod that
# cannot start (missing Secret), a timeout, usage errors.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_k8s.sh"


cairn_repo_init
SRC=$T/src
mkdir -p "$SRC/sub"
printf 'restore me\n' >"$SRC/hello.txt"
head -c 200000 /dev/urandom >"$SRC/sub/random.bin"
ln -s hello.txt "$SRC/link"
SNAP=$(backup_id "$SRC")

k8s_start_fake
IMAGE=registry.example.org/cairn:1.2.3
ctl POST daemonset '{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"cairn-agent","namespace":"cairn-system"},"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"},{"name":"agent","image":"'$IMAGE'"}]}}}}' >/dev/null
for ns in app restore-ns; do
  ctl POST namespace '{"name":"'$ns'","labels":{"pod-security.kubernetes.io/enforce":"baseline"}}' >/dev/null
done
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"app"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"volumeName":"pv-1"},"status":{"phase":"Bound"}}' >/dev/null


client_start() { # NAME ARGS...: restore-pvc in the background, output in $T/NAME.out/.err
  local name=$1
  shift
  "$CAIRN" restore-pvc "$@" >"$T/$name.out" 2>"$T/$name.err" &
  CLIENT=$!
}
client_rc() { # WANT NAME WHAT: the background client's exit status must be WANT
  local rc=0
  wait "$CLIENT" || rc=$?
  check_no_crash "restore-pvc ($3)" "$rc" "$T/$2.err"
  [ "$rc" -eq "$1" ] || { cat "$T/$2.err" >&2; fail "restore-pvc ($3) exited $rc, want $1"; }
}

wait_job() { # N: until N Jobs exist; prints the newest's name
  local n=$1 i
  for i in $(seq 1 100); do
    ctl GET jobs >"$T/jobs.json"
    if [ "$(json_get "$T/jobs.json" 'len(j)')" -ge "$n" ]; then
      json_get "$T/jobs.json" 'j['"$n"'-1]["metadata"]["name"]'
      return 0
    fi
    sleep 0.1
  done
  fail "no Job number $n was created"
}

# ---- usage errors: nothing reaches the API server ----
ctl POST reset-log >/dev/null
for args in "--to app/data" "$SNAP" "$SNAP --to app" "$SNAP --to /data" "$SNAP --to App/data" \
  "$SNAP --to app/data --create" "$SNAP --to app/data --size 1Gi" \
  "$SNAP --to app/x --create --size lots" "$SNAP --to app/x --create --size 1Gi --storage-class Bad_Class" \
  "nothex! --to app/data" "$SNAP --to app/data --timeout 0"; do
  # shellcheck disable=SC2086
  run_cairn restore-pvc $args
  expect_rc 2 "restore-pvc $args"
done
ctl GET log >"$T/log.json"
[ "$(json_get "$T/log.json" 'len(j)')" -eq 0 ] || fail "usage errors reached the API server"

# ---- A: into the existing PVC app/data, --wait, the Job succeeds ----
ctl POST reset-log >/dev/null
client_start a "$SNAP" --to app/data --wait --timeout 60
JOB=$(wait_job 1)
ctl GET log >"$T/log.json"
# What was sent: GET Namespace (its Pod Security labels), GET DaemonSet (the
# image), GET PVC, POST Job; then only polls of the Job, its pods and events.
python3 - "$T/log.json" "$SNAP" "$IMAGE" "$T/job-a.json" <<'EOF' || fail "restore-pvc sent other requests or another Job than expected"
import json, sys
log, snap, image, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
calls = [(r["method"], r["path"]) for r in log]
want = [("GET", "/api/v1/namespaces/app"),
        ("GET", "/apis/apps/v1/namespaces/cairn-system/daemonsets/cairn-agent"),
        ("GET", "/api/v1/namespaces/app/persistentvolumeclaims/data"),
        ("POST", "/apis/batch/v1/namespaces/app/jobs")]
if calls[:4] != want or any(c != ("GET", "/apis/batch/v1/namespaces/app/jobs/" + c[1].split("/")[-1]) and
                             c not in (("GET", "/api/v1/namespaces/app/pods"),
                                       ("GET", "/api/v1/namespaces/app/events")) for c in calls[4:]):
    die("calls: %r" % calls)
if any(r["auth"] != "ok" for r in log):
    die("a request without the token")
post = log[3]
if post["content_type"] != "application/json":
    die("content type %r" % post["content_type"])
labels = {"app.kubernetes.io/name": "cairn", "app.kubernetes.io/component": "restore",
          "app.kubernetes.io/part-of": "cairn", "cairn.io/restore-pvc": "data"}
expected = {
  "apiVersion": "batch/v1", "kind": "Job",
  "metadata": {"generateName": "cairn-restore-data-", "namespace": "app", "labels": labels,
               "annotations": {"cairn.io/snapshot": snap}},
  "spec": {
    "backoffLimit": 0, "ttlSecondsAfterFinished": 604800, "activeDeadlineSeconds": 60,
    "template": {
      "metadata": {"labels": labels},
      "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
          "name": "restore", "image": image, "imagePullPolicy": "IfNotPresent",
          "args": ["restore", snap, "--target", "/restore", "--overwrite"],
          "envFrom": [{"configMapRef": {"name": "cairn-agent-config", "optional": True}}],
          "env": [
            {"name": "CAIRN_REPO", "valueFrom": {"secretKeyRef": {"name": "cairn-repository", "key": "CAIRN_REPO"}}},
            {"name": "AWS_ACCESS_KEY_ID_FILE", "value": "/etc/cairn/secret/AWS_ACCESS_KEY_ID"},
            {"name": "AWS_SECRET_ACCESS_KEY_FILE", "value": "/etc/cairn/secret/AWS_SECRET_ACCESS_KEY"},
            {"name": "CAIRN_PASSWORD_FILE", "value": "/etc/cairn/secret/CAIRN_PASSWORD"},
            {"name": "CAIRN_CATALOG", "value": "/var/lib/cairn/catalog.db"}],
          "volumeMounts": [
            {"name": "target", "mountPath": "/restore"},
            {"name": "repository-secret", "mountPath": "/etc/cairn/secret", "readOnly": True},
            {"name": "cairn-state", "mountPath": "/var/lib/cairn"},
            {"name": "tmp", "mountPath": "/tmp"}],
          "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"}},
          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                              "capabilities": {"drop": ["ALL"],
                                               "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]}}}],
        "volumes": [
          {"name": "target", "persistentVolumeClaim": {"claimName": "data"}},
          {"name": "repository-secret", "secret": {"secretName": "cairn-repository", "defaultMode": 256}},
          {"name": "cairn-state", "emptyDir": {}},
          {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]}}}}
if post["body"] != expected:
    import difflib
    a = json.dumps(expected, indent=1, sort_keys=True).splitlines()
    b = json.dumps(post["body"], indent=1, sort_keys=True).splitlines()
    die("the Job differs from the expected one:\n" + "\n".join(difflib.unified_diff(a, b, "expected", "sent", lineterm="")))
json.dump(post["body"], open(out, "w"))
EOF
validate_obj "$T/job-a.json"
# Run the Job's container as its pod would: args and env from the Job, the
# Secret's CAIRN_REPO, a fresh catalog (the emptyDir), /restore -> a temp dir.
python3 - "$T/job-a.json" "$T/restored-a" "$T/jobstate" >"$T/job-a.cmd" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]
assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/restore"] == "target"
cat = [e["value"] for e in c["env"] if e["name"] == "CAIRN_CATALOG"][0]
assert cat == "/var/lib/cairn/catalog.db"
print("CAIRN_CATALOG=" + sys.argv[3] + "/catalog.db")
for a in c["args"]:
    print(sys.argv[2] if a == "/restore" else a)
EOF
mkdir -p "$T/jobstate" "$T/restored-a/lost+found" # a fresh ext4 volume is not empty
mapfile -t JOBCMD <"$T/job-a.cmd"
env "${JOBCMD[0]}" "$CAIRN" "${JOBCMD[@]:1}" >"$T/jobrun.out" 2>"$T/jobrun.err" ||
  { cat "$T/jobrun.err" >&2; fail "the Job's command '${JOBCMD[*]}' failed"; }
rmdir "$T/restored-a/lost+found"
diff -r --no-dereference "$SRC" "$T/restored-a" || fail "the Job's command did not restore the snapshot"
[ -f "$T/jobstate/catalog.db" ] || fail "the Job's command did not use the catalog on its emptyDir"

ctl POST job '{"namespace":"app","name":"'"$JOB"'","condition":"Complete"}' >/dev/null
client_rc 0 a "--wait, the Job completed"
expect_in "created Job app/$JOB" "restore-pvc output" "$T/a.out"
expect_in "restored snapshot $SNAP into PVC app/data" "restore-pvc output" "$T/a.out"

# ---- B: the Job fails: exit 1 with the reason and the pod's log tail ----
client_start b "${SNAP:0:12}" --to app/data --wait
JOB=$(wait_job 2)
LOGTEXT=$(for i in $(seq 1 30); do echo "log line $i"; done; echo "cairn: error: cannot restore 'x': boom")
ctl POST job "$(python3 -c 'import json,sys; print(json.dumps({"namespace":"app","name":sys.argv[1],"condition":"Failed","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit","pod_log":sys.argv[2]+"\n"}))' "$JOB" "$LOGTEXT")" >/dev/null
client_rc 1 b "the Job failed"
expect_in "BackoffLimitExceeded" "failed Job" "$T/b.err"
expect_in "  | cairn: error: cannot restore 'x': boom" "failed Job's log tail" "$T/b.err"
grep -q "log line 11$" "$T/b.err" && fail "more than 20 lines of the log were shown"
expect_in "  | log line 12" "failed Job's log tail" "$T/b.err"
ctl GET log >"$T/log.json"
json_get "$T/log.json" '[r["query"] for r in j if r["path"].endswith("/log")]' | grep -q '"tailLines": "20"' ||
  fail "the log was not asked for with tailLines=20"

# ---- C: the PVC does not exist and --create is not given ----
ctl POST reset-log >/dev/null
run_cairn restore-pvc "$SNAP" --to app/missing --image "$IMAGE"
expect_rc 1 "restore into a missing PVC"
expect_in "PVC app/missing does not exist" "missing PVC" "$ERR"
expect_in "--create" "missing PVC" "$ERR"
# ---- D: --create but it exists ----
run_cairn restore-pvc "$SNAP" --to app/data --create --size 1Gi --image "$IMAGE"
expect_rc 1 "--create of an existing PVC"
expect_in "PVC app/data already exists" "existing PVC" "$ERR"
ctl GET log >"$T/log.json"
[ "$(json_get "$T/log.json" 'len([r for r in j if r["method"] != "GET"])')" -eq 0 ] ||
  fail "a refused restore-pvc created something"

# ---- E: --create in another namespace, storage class, --image ----
ctl POST reset-log >/dev/null
client_start e "$SNAP" --to restore-ns/data-copy.v2 --create --size 2Gi --storage-class fast-ssd \
  --image other.example.org/cairn@sha256:0123 --wait
JOB=$(wait_job 3)
ctl POST job '{"namespace":"restore-ns","name":"'"$JOB"'","condition":"Complete"}' >/dev/null
client_rc 0 e "--create in another namespace"
ctl GET log >"$T/log.json"
python3 - "$T/log.json" "$SNAP" "$T/pvc-e.json" "$T/job-e.json" "$JOB" <<'EOF' || fail "restore-pvc --create sent other objects than expected"
import json, sys
log, snap = json.load(open(sys.argv[1])), sys.argv[2]
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
# the polls while waiting (GET of the Job, list of its pods) may come in any number
calls = [(r["method"], r["path"]) for r in log
         if r["method"] != "GET" or ("/jobs/" not in r["path"] and not r["path"].endswith("/pods")
                                     and not r["path"].endswith("/events"))]
want = [("GET", "/api/v1/namespaces/restore-ns"),
        ("GET", "/api/v1/namespaces/restore-ns/persistentvolumeclaims/data-copy.v2"),
        ("POST", "/api/v1/namespaces/restore-ns/persistentvolumeclaims"),
        ("POST", "/apis/batch/v1/namespaces/restore-ns/jobs")]
if calls != want:
    die("calls: %r" % calls)
pvc = log[2]["body"]
expected = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-copy.v2", "namespace": "restore-ns",
                         "labels": {"app.kubernetes.io/name": "cairn", "app.kubernetes.io/component": "restore",
                                    "app.kubernetes.io/part-of": "cairn", "cairn.io/restore-pvc": "data-copy.v2"},
                         "annotations": {"cairn.io/restored-from": snap}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                     "storageClassName": "fast-ssd"}}
if pvc != expected:
    die("PVC sent: %r" % pvc)
job = log[3]["body"]
spec = job["spec"]["template"]["spec"]
if job["metadata"]["namespace"] != "restore-ns" or job["metadata"]["generateName"] != "cairn-restore-data-copy-v2-" \
        or spec["volumes"][0] != {"name": "target", "persistentVolumeClaim": {"claimName": "data-copy.v2"}} \
        or spec["containers"][0]["image"] != "other.example.org/cairn@sha256:0123" \
        or job["spec"]["activeDeadlineSeconds"] != 21600:
    die("Job sent: %r" % job)
if not sys.argv[5].startswith("cairn-restore-data-copy-v2-"):
    die("job name %s" % sys.argv[5])
json.dump(pvc, open(sys.argv[3], "w"))
json.dump(job, open(sys.argv[4], "w"))
EOF
validate_obj "$T/pvc-e.json"
validate_obj "$T/job-e.json"
expect_in "created PVC restore-ns/data-copy.v2 (2Gi, storage class fast-ssd)" "--create output" "$T/e.out"
ctl GET pvc/restore-ns/data-copy.v2 >/dev/null || fail "the PVC was not created"

# ---- F: a race: the PVC appears between the GET and the POST (409) ----
ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"racy","namespace":"app"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}' >/dev/null
ctl POST fail '{"method":"GET","path":"/api/v1/namespaces/app/persistentvolumeclaims/racy","status":404,"count":1}' >/dev/null
ctl POST reset-log >/dev/null
run_cairn restore-pvc "$SNAP" --to app/racy --create --size 1Gi --image "$IMAGE"
expect_rc 1 "--create racing another creator"
expect_in "409 AlreadyExists" "409 on create" "$ERR"
ctl GET log >"$T/log.json"
[ "$(json_get "$T/log.json" 'len([r for r in j if "/jobs" in r["path"]])')" -eq 0 ] ||
  fail "a Job was created after the PVC creation failed"

# ---- G: 403 on the Job: the RBAC hint ----
ctl POST fail '{"method":"POST","path":"/apis/batch/v1/namespaces/app/jobs","status":403,"count":1}' >/dev/null
run_cairn restore-pvc "$SNAP" --to app/data --image "$IMAGE"
expect_rc 1 "403 on the Job"
expect_in "not allowed to create jobs.batch in namespace 'app'" "403" "$ERR"
expect_in "daemonset/clusterrole-restore.yaml" "403" "$ERR"
grep -q "$TOKEN" "$ERR" "$T"/*.err && fail "the token appears in an error message"

# ---- H: the pod cannot start: the Secret is not in the namespace ----
client_start h "$SNAP" --to app/data --image "$IMAGE" --wait
JOB=$(wait_job 4)
ctl POST job '{"namespace":"app","name":"'"$JOB"'","pod_waiting":{"reason":"CreateContainerConfigError","message":"secret \"cairn-repository\" not found"}}' >/dev/null
client_rc 1 h "a pod that cannot start"
expect_in 'secret "cairn-repository" not found' "stuck pod" "$T/h.err"
expect_in "must exist in namespace 'app'" "stuck pod" "$T/h.err"

# ---- I: without --wait; J: no DaemonSet to take the image from; K: timeout ----
run_cairn restore-pvc "$SNAP" --to app/data
expect_rc 0 "restore-pvc without --wait"
expect_in "created Job app/cairn-restore-data-" "no --wait" "$OUT"
run_cairn restore-pvc "$SNAP" --to app/data --agent-namespace elsewhere
expect_rc 1 "no agent DaemonSet"
expect_in "--image" "no agent DaemonSet" "$ERR"
run_cairn restore-pvc "$SNAP" --to app/data --image "$IMAGE" --wait --timeout 2
expect_rc 1 "a Job that does not finish"
expect_in "timed out after 2" "timeout" "$ERR"
expect_in "kubectl -n app delete job cairn-restore-data-" "timeout" "$ERR"
echo "PASS: restore_pvc"
