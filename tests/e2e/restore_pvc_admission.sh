#!/usr/bin/env bash
# cairn restore-pvc when the namespace refuses the restore pod, against
# tests/k8s/fake_apiserver.py (which, like the job controller, never creates
# the pod of such a Job and records a FailedCreate event on it instead):
#  A. a namespace labelled pod-security.kubernetes.io/enforce=restricted is
#     refused before anything is created (the fake's record of creations stays
#     empty), with the label, what the pod needs and the kubectl command;
#     warn/audit=restricted only warns; baseline/privileged/no label pass;
#     a namespace that does not exist is refused too;
#  B. pod creation rejected (a quota) in a namespace without the label:
#     --wait ends within seconds (not at the timeout) with exit 1, the event's
#     message and how to delete the Job; the events are asked for with the
#     exact field selector; the same for a restricted namespace whose
#     Namespace object cannot be read (403): the PodSecurity message;
#  C. FailedCreate events of another Job name, of an older Job of the same
#     name (other uid) and of a Pod of that name are ignored;
#  D. 403 on the Namespace and on events: the wait goes on as before (one
#     warning) and ends by the Job's own outcome.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_k8s.sh"

need_cmd python3
SNAP=3fa9c2e1
IMAGE=registry.example.org/cairn:1.2.3
k8s_start_fake

pvc() { # NS NAME: an existing bound PVC
  ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"'"$2"'","namespace":"'"$1"'"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}},"status":{"phase":"Bound"}}' >/dev/null
}
namespace() { # NAME LABELS_JSON
  ctl POST namespace '{"name":"'"$1"'","labels":'"$2"'}' >/dev/null
}
created() { ctl GET created | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

client_start() { # NAME ARGS...: restore-pvc in the background, output in $T/NAME.out/.err
  local name=$1
  shift
  echo "+ cairn restore-pvc $* &" >&2
  "$CAIRN" restore-pvc "$@" >"$T/$name.out" 2>"$T/$name.err" &
  CLIENT=$!
  CLIENT_T0=$(date +%s.%N)
}
client_rc() { # WANT NAME WHAT: the background client's exit status must be WANT
  local rc=0
  wait "$CLIENT" || rc=$?
  CLIENT_S=$(python3 -c "import sys; print('%.1f' % ($(date +%s.%N) - $CLIENT_T0))")
  check_no_crash "restore-pvc ($3)" "$rc" "$T/$2.err"
  [ "$rc" -eq "$1" ] || { cat "$T/$2.err" >&2; fail "restore-pvc ($3) exited $rc, want $1"; }
}
still_running() { # NAME WHAT SECONDS: the client must not have ended within SECONDS
  sleep "$3"
  kill -0 "$CLIENT" 2>/dev/null || { cat "$T/$1.err" >&2; fail "$2: restore-pvc ended early"; }
}
wait_job() { # NS: the name of the one Job of NS, once it exists
  local i
  for i in $(seq 1 100); do
    ctl GET jobs >"$T/jobs.json"
    if python3 - "$T/jobs.json" "$1" <<'EOF'; then return 0; fi
import json, sys
jobs = [j for j in json.load(open(sys.argv[1])) if j["metadata"]["namespace"] == sys.argv[2]]
if len(jobs) != 1:
    sys.exit(1)
print(jobs[0]["metadata"]["name"])
EOF
    sleep 0.1
  done
  fail "no Job was created in namespace $1"
}

# ---- A: enforce=restricted: refused before anything is created ----
namespace locked '{"pod-security.kubernetes.io/enforce":"restricted","pod-security.kubernetes.io/enforce-version":"latest"}'
pvc locked data
ctl POST reset-log >/dev/null
for args in "--to locked/data --wait" "--to locked/new --create --size 1Gi"; do
  # shellcheck disable=SC2086
  run_cairn restore-pvc "$SNAP" $args
  expect_rc 1 "restore-pvc $args into a restricted namespace"
  expect_in "namespace 'locked' enforces the 'restricted' Pod Security Standard" "restricted" "$ERR"
  expect_in "pod-security.kubernetes.io/enforce=restricted" "restricted: the label" "$ERR"
  expect_in "root" "restricted: what the pod needs" "$ERR"
  expect_in "CHOWN, DAC_OVERRIDE, FOWNER and FSETID" "restricted: what the pod needs" "$ERR"
  expect_in "kubectl label --overwrite namespace locked pod-security.kubernetes.io/enforce=baseline" \
    "restricted: what to do" "$ERR"
  expect_in "nothing was changed" "restricted" "$ERR"
done
[ "$(created)" -eq 0 ] || fail "a Job or PVC was created for a restricted namespace"
ctl GET log >"$T/log.json"
python3 - "$T/log.json" <<'EOF' || fail "restore-pvc asked more than the Namespace of a restricted namespace"
import json, sys
calls = [(r["method"], r["path"]) for r in json.load(open(sys.argv[1]))]
if calls != [("GET", "/api/v1/namespaces/locked")] * 2:
    print("calls: %r" % (calls,), file=sys.stderr)
    sys.exit(1)
EOF

# A namespace that does not exist: refused, nothing created.
run_cairn restore-pvc "$SNAP" --to nowhere/data --create --size 1Gi --image "$IMAGE"
expect_rc 1 "a namespace that does not exist"
expect_in "namespace 'nowhere' does not exist" "missing namespace" "$ERR"
[ "$(created)" -eq 0 ] || fail "something was created in a namespace that does not exist"

# warn/audit=restricted only: a warning; baseline, privileged or no label: nothing.
namespace warned '{"pod-security.kubernetes.io/enforce":"baseline","pod-security.kubernetes.io/warn":"restricted","pod-security.kubernetes.io/audit":"restricted"}'
namespace priv '{"pod-security.kubernetes.io/enforce":"privileged"}'
namespace plain '{}'
for ns in warned priv plain; do
  pvc "$ns" data
  run_cairn restore-pvc "$SNAP" --to "$ns/data" --image "$IMAGE"
  expect_rc 0 "restore-pvc into namespace $ns"
  expect_in "created Job $ns/cairn-restore-data-" "namespace $ns" "$OUT"
  if [ "$ns" = warned ]; then
    expect_in "namespace 'warned' has pod-security.kubernetes.io/warn=restricted" "warn label" "$ERR"
    expect_in "it is not refused" "warn label" "$ERR"
  elif [ -s "$ERR" ]; then
    cat "$ERR" >&2
    fail "restore-pvc into namespace $ns printed something on stderr"
  fi
done

# ---- B: the pod is rejected (a quota): --wait ends at once ----
QUOTA='exceeded quota: compute, requested: limits.memory=256Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi'
namespace quota '{"pod-security.kubernetes.io/enforce":"baseline"}'
ctl POST reject-pods "$(python3 -c 'import json,sys; print(json.dumps({"namespace":"quota","message":sys.argv[1]}))' "$QUOTA")" >/dev/null
ctl POST reset-log >/dev/null
client_start b "$SNAP" --to quota/restored --create --size 1Gi --image "$IMAGE" --wait --timeout 60
JOB=$(wait_job quota)
client_rc 1 b "a rejected pod"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 10 else 1)" "$CLIENT_S" ||
  fail "restore-pvc --wait took ${CLIENT_S}s to notice the rejected pod (want < 10 s)"
note "--wait ended ${CLIENT_S}s after the start on a rejected pod"
expect_in "the restore Job quota/$JOB cannot create its pod (event FailedCreate)" "rejected pod" "$T/b.err"
expect_in "Error creating: pods \"$JOB-" "rejected pod: the event's message" "$T/b.err"
expect_in "$QUOTA" "rejected pod: the event's message" "$T/b.err"
expect_in "kubectl -n quota describe quota,limitrange" "rejected pod: the quota hint" "$T/b.err"
expect_in "kubectl -n quota delete job $JOB" "rejected pod: how to delete the Job" "$T/b.err"
expect_in "PVC quota/restored (created above: it stays)" "rejected pod: the new PVC" "$T/b.err"
grep -q "timed out" "$T/b.err" && fail "the rejected pod ended in a timeout"
ctl GET log >"$T/log.json"
python3 - "$T/log.json" "$JOB" <<'EOF' || fail "the events were not asked for with the Job's field selector"
import json, sys
log, job = json.load(open(sys.argv[1])), sys.argv[2]
ev = [r for r in log if r["path"] == "/api/v1/namespaces/quota/events"]
if not ev or any(r["method"] != "GET" or
                 r["query"] != {"fieldSelector": "involvedObject.kind=Job,involvedObject.name=" + job}
                 for r in ev):
    print("event requests: %r" % ev, file=sys.stderr)
    sys.exit(1)
EOF

# A restricted namespace the user may not read (403): the PodSecurity event.
namespace veiled '{"pod-security.kubernetes.io/enforce":"restricted"}'
pvc veiled data
ctl POST fail '{"method":"GET","path":"/api/v1/namespaces/veiled","exact":true,"status":403,"count":1}' >/dev/null
client_start b2 "$SNAP" --to veiled/data --image "$IMAGE" --wait --timeout 60
JOB=$(wait_job veiled)
client_rc 1 b2 "a restricted namespace that cannot be read"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 10 else 1)" "$CLIENT_S" ||
  fail "restore-pvc --wait took ${CLIENT_S}s to notice the PodSecurity rejection"
expect_in "not allowed to get namespace 'veiled'" "403 on the Namespace: a warning" "$T/b2.err"
expect_in "violates PodSecurity \"restricted:latest\"" "PodSecurity event" "$T/b2.err"
expect_in "kubectl label --overwrite namespace veiled pod-security.kubernetes.io/enforce=baseline" \
  "PodSecurity event: what to do" "$T/b2.err"
expect_in "kubectl -n veiled delete job $JOB" "PodSecurity event: how to delete the Job" "$T/b2.err"

# ---- C: FailedCreate events of other objects do not count ----
namespace busy '{}'
pvc busy data
ctl POST k8s-event '{"apiVersion":"v1","kind":"Event","metadata":{"namespace":"busy"},"involvedObject":{"kind":"Job","namespace":"busy","name":"cairn-restore-data-old12","uid":"0ld","apiVersion":"batch/v1"},"reason":"FailedCreate","message":"Error creating: another Job","type":"Warning","count":3,"lastTimestamp":"2026-11-22T00:00:00Z"}' >/dev/null
client_start c "$SNAP" --to busy/data --image "$IMAGE" --wait --timeout 60
JOB=$(wait_job busy)
for what in '"kind":"Job","name":"'"$JOB"'","uid":"an-older-job-of-that-name"' '"kind":"Pod","name":"'"$JOB"'"'; do
  ctl POST k8s-event '{"apiVersion":"v1","kind":"Event","metadata":{"namespace":"busy"},"involvedObject":{"namespace":"busy",'"$what"'},"reason":"FailedCreate","message":"Error creating: not this Job","type":"Warning","count":1,"lastTimestamp":"2026-11-22T00:00:01Z"}' >/dev/null
done
still_running c "FailedCreate events of other objects" 3
ctl POST job '{"namespace":"busy","name":"'"$JOB"'","condition":"Complete"}' >/dev/null
client_rc 0 c "FailedCreate events of other objects"
expect_in "restored snapshot $SNAP into PVC busy/data" "other objects' events" "$T/c.out"
grep -q "FailedCreate\|another Job\|not this Job" "$T/c.err" && fail "an event of another object was reported"

# ---- D: 403 on the Namespace and on events: as before, one warning ----
namespace hidden '{"pod-security.kubernetes.io/enforce":"restricted"}'
pvc hidden data
ctl POST fail '{"method":"GET","path":"/api/v1/namespaces/hidden","exact":true,"status":403,"count":1}' >/dev/null
ctl POST fail '{"method":"GET","path":"/api/v1/namespaces/hidden/events","status":403,"count":1000}' >/dev/null
ctl POST reset-log >/dev/null
client_start d "$SNAP" --to hidden/data --image "$IMAGE" --wait --timeout 60
JOB=$(wait_job hidden)
still_running d "403 on events" 3
ctl POST job '{"namespace":"hidden","name":"'"$JOB"'","condition":"Failed","reason":"DeadlineExceeded","message":"Job was active longer than specified deadline"}' >/dev/null
client_rc 1 d "403 on the Namespace and events"
expect_in "DeadlineExceeded: Job was active longer than specified deadline" "403: the Job's outcome" "$T/d.err"
expect_in "not allowed to get namespace 'hidden'" "403 on the Namespace: a warning" "$T/d.err"
expect_in "cannot read the events of Job hidden/$JOB (403 Forbidden" "403 on events: a warning" "$T/d.err"
[ "$(grep -c "cannot read the events" "$T/d.err")" -eq 1 ] || fail "the events warning was not printed exactly once"
ctl GET log >"$T/log.json"
[ "$(json_get "$T/log.json" 'len([r for r in j if r["path"].endswith("/events")])')" -eq 1 ] ||
  fail "the events were asked for again after a 403"
echo "PASS: restore_pvc_admission"
