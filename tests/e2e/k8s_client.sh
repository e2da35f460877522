#!/usr/bin/env bash
# The fake API server (tests/k8s/fake_apiserver.py) behaves like the API
# reference says a kube-apiserver does, for the calls the agent makes, so the
# C client's tests (tests/unit/test_kube.c) test against the right shapes:
#
#  1. no or a wrong bearer token: 401 with a Status body;
#  2. a PodList filtered by fieldSelector=spec.nodeName, paginated with
#     limit/continue and a resourceVersion; an unsupported field label is 400;
#  3. a watch is a chunked stream of newline-delimited events; a watch from a
#     compacted resourceVersion gets HTTP 200 and an ERROR event with code
#     410, and so does an open watch when the history is compacted;
#  4. PATCH of a PVC needs application/merge-patch+json (else 415) and
#     applies RFC 7386 (null removes a key);
#  5. an Event's involvedObject.namespace must be the Event's namespace (422);
#     a good one is 201 with a generated name;
#  6. injected 403 carries the RBAC message of a real server;
#  7. (cairn restore-pvc) creating a PVC or a batch/v1 Job is 201 with a
#     generated name for generateName, a uid and creationTimestamp; a second
#     one of the same name is 409 AlreadyExists with Status details; a PVC
#     without accessModes is 422 Invalid; a missing Job is 404 NotFound
#     naming "jobs.batch"; a 403 on jobs names the group "batch" and the
#     namespace; a Job's pod log is text/plain, tailLines honoured, an unknown
#     container is 400.
#
# Needs python3 and curl (skips with 77 without them); no cluster, no cairn binary.
# By hand: bash tests/e2e/k8s_client.sh
set -euo pipefail
export LC_ALL=C.UTF-8

CAIRN_SRC=${CAIRN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FAKE=$CAIRN_SRC/tests/k8s/fake_apiserver.py

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"

T=$(mktemp -d /tmp/cairn-k8s-client.XXXXXX)
SERVER_PID=
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT

python3 "$FAKE" --token good-token --port-file "$T/port" 2>"$T/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || fail "fake API server did not start: $(cat "$T/server.log")"
PORT=$(cat "$T/port")
B=http://127.0.0.1:$PORT

api() { # METHOD PATH [curl args...] -> body on stdout, status in $T/status
  local m=$1 p=$2
  shift 2
  curl -s -o "$T/body" -w '%{http_code}' -X "$m" -H 'Authorization: Bearer good-token' "$@" "$B$p" >"$T/status"
  cat "$T/body"
}
status() { cat "$T/status"; }
ctl() { curl -sf -X POST "$B/_control/$1" -d "${2:-}" >/dev/null || fail "control $1"; }
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

pod() { echo "{\"metadata\":{\"name\":\"$1\",\"namespace\":\"ns\"},\"spec\":{\"nodeName\":\"$2\"}}"; }
ctl pod "$(pod p1 n1)"
ctl pod "$(pod p2 n2)"
ctl pod "$(pod p3 n1)"
ctl pod "$(pod p4 n1)"

# 1. authentication
code=$(curl -s -o "$T/body" -w '%{http_code}' "$B/api/v1/pods")
[ "$code" = 401 ] || fail "no token: HTTP $code"
[ "$(jq_py 'd["kind"]+" "+str(d["code"])+" "+d["reason"]' <"$T/body")" = "Status 401 Unauthorized" ] ||
  fail "401 body: $(cat "$T/body")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer bad' "$B/api/v1/pods")
[ "$code" = 401 ] || fail "wrong token: HTTP $code"

# 2. list, field selector, pagination
api GET '/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=2' >"$T/page1"
[ "$(status)" = 200 ] || fail "list: HTTP $(status)"
[ "$(jq_py '",".join(p["metadata"]["name"] for p in d["items"])' <"$T/page1")" = "p1,p3" ] || fail "page 1: $(cat "$T/page1")"
[ "$(jq_py 'd["kind"]' <"$T/page1")" = PodList ] || fail "kind"
RV=$(jq_py 'd["metadata"]["resourceVersion"]' <"$T/page1")
CONT=$(jq_py 'd["metadata"]["continue"]' <"$T/page1")
[ "$(jq_py 'd["metadata"]["remainingItemCount"]' <"$T/page1")" = 1 ] || fail "remainingItemCount"
api GET "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=2&continue=$CONT" >"$T/page2"
[ "$(jq_py '",".join(p["metadata"]["name"] for p in d["items"])' <"$T/page2")" = "p4" ] || fail "page 2: $(cat "$T/page2")"
[ "$(jq_py '"continue" in d["metadata"]' <"$T/page2")" = False ] || fail "last page has no continue"
api GET '/api/v1/pods?fieldSelector=spec.bogus%3Dx' >/dev/null
[ "$(status)" = 400 ] || fail "unsupported field label: HTTP $(status)"

# 3. watch: events after RV, then compaction gives ERROR 410
( sleep 0.5; ctl event '{"type":"MODIFIED","object":'"$(pod p1 n1)"'}'
  ctl event '{"type":"ADDED","object":'"$(pod p9 n2)"'}'
  sleep 0.5; ctl gone ) &
curl -s -N -D "$T/headers" -H 'Authorization: Bearer good-token' \
  "$B/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=1&resourceVersion=$RV&timeoutSeconds=10" >"$T/watch"
wait $!
grep -qi '^transfer-encoding: chunked' "$T/headers" || fail "watch is not chunked"
python3 - "$T/watch" <<'EOF' || fail "watch stream: $(cat "$T/watch")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
types = [(e["type"], e["object"].get("metadata", {}).get("name")) for e in ev]
assert types[0] == ("MODIFIED", "p1"), types
assert types[-1][0] == "ERROR" and ev[-1]["object"]["code"] == 410, types
assert ev[-1]["object"]["kind"] == "Status" and ev[-1]["object"]["reason"] == "Expired"
assert all(t[1] != "p9" for t in types), "pod of another node in the watch"
EOF
curl -s -N -H 'Authorization: Bearer good-token' \
  "$B/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=1&resourceVersion=$RV&timeoutSeconds=2" >"$T/watch2"
grep -q '"code": 410' "$T/watch2" || fail "watch from a compacted resourceVersion: $(cat "$T/watch2")"
api GET "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=2&continue=$CONT" >/dev/null
[ "$(status)" = 410 ] || fail "expired continue token: HTTP $(status)"

# 4. PVC merge-patch
ctl pvc '{"metadata":{"name":"data","namespace":"ns","annotations":{"a":"1","b":"2"}},"spec":{"volumeName":"pv1"}}'
api PATCH /api/v1/namespaces/ns/persistentvolumeclaims/data -H 'Content-Type: application/json' \
  -d '{"metadata":{"annotations":{"a":"x"}}}' >/dev/null
[ "$(status)" = 415 ] || fail "patch without merge-patch content type: HTTP $(status)"
api PATCH /api/v1/namespaces/ns/persistentvolumeclaims/data -H 'Content-Type: application/merge-patch+json' \
  -d '{"metadata":{"annotations":{"a":"x","b":null,"c":"3"}}}' >"$T/pvc"
[ "$(status)" = 200 ] || fail "merge-patch: HTTP $(status)"
[ "$(jq_py 'sorted(d["metadata"]["annotations"].items())' <"$T/pvc")" = "[('a', 'x'), ('c', '3')]" ] ||
  fail "merge-patch result: $(cat "$T/pvc")"
[ "$(jq_py 'd["spec"]["volumeName"]' <"$T/pvc")" = pv1 ] || fail "merge-patch kept spec"
api GET /api/v1/namespaces/ns/persistentvolumeclaims/nope >/dev/null
[ "$(status)" = 404 ] || fail "missing PVC: HTTP $(status)"

# 5. events
api POST /api/v1/namespaces/ns/events -H 'Content-Type: application/json' \
  -d '{"metadata":{"generateName":"data."},"involvedObject":{"kind":"PersistentVolumeClaim","namespace":"other","name":"data"},"type":"Normal","reason":"X","message":"m"}' >/dev/null
[ "$(status)" = 422 ] || fail "event namespace mismatch: HTTP $(status)"
api POST /api/v1/namespaces/ns/events -H 'Content-Type: application/json' \
  -d '{"metadata":{"generateName":"data."},"involvedObject":{"kind":"PersistentVolumeClaim","namespace":"ns","name":"data"},"type":"Normal","reason":"X","message":"m"}' >"$T/ev"
[ "$(status)" = 201 ] || fail "event: HTTP $(status)"
case $(jq_py 'd["metadata"]["name"]' <"$T/ev") in data.?*) ;; *) fail "generated name: $(cat "$T/ev")" ;; esac

# 6. injected 403
ctl fail '{"method":"GET","path":"/api/v1/persistentvolumes","status":403}'
api GET /api/v1/persistentvolumes/pv1 >"$T/403"
[ "$(status)" = 403 ] || fail "injected 403: HTTP $(status)"
grep -q 'cannot get resource \\"persistentvolumes\\"' "$T/403" || fail "403 message: $(cat "$T/403")"

# 7. PVC and Job creation, as cairn restore-pvc uses them
J='Content-Type: application/json'
NEWPVC='{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"restored","namespace":"ns"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}'
api POST /api/v1/namespaces/ns/persistentvolumeclaims -H "$J" -d "$NEWPVC" >"$T/new"
[ "$(status)" = 201 ] || fail "create PVC: HTTP $(status)"
[ "$(jq_py '(d["metadata"]["name"], bool(d["metadata"]["uid"]), bool(d["metadata"]["creationTimestamp"]), d["status"]["phase"])' <"$T/new")" = "('restored', True, True, 'Pending')" ] ||
  fail "created PVC: $(cat "$T/new")"
api POST /api/v1/namespaces/ns/persistentvolumeclaims -H "$J" -d "$NEWPVC" >"$T/409"
[ "$(status)" = 409 ] || fail "second create: HTTP $(status)"
[ "$(jq_py '(d["kind"], d["reason"], d["code"], d["details"]["name"], d["details"]["kind"], d["message"])' <"$T/409")" = \
  "('Status', 'AlreadyExists', 409, 'restored', 'persistentvolumeclaims', 'persistentvolumeclaims \"restored\" already exists')" ] ||
  fail "409 Status: $(cat "$T/409")"
api POST /api/v1/namespaces/ns/persistentvolumeclaims -H "$J" \
  -d '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"x"},"spec":{"resources":{"requests":{"storage":"1Gi"}}}}' >"$T/422"
[ "$(status)" = 422 ] && [ "$(jq_py 'd["reason"]' <"$T/422")" = Invalid ] || fail "PVC without accessModes: HTTP $(status) $(cat "$T/422")"
JOB='{"apiVersion":"batch/v1","kind":"Job","metadata":{"generateName":"cairn-restore-x-"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"restore","image":"i"}]}}}}'
api POST /apis/batch/v1/namespaces/ns/jobs -H "$J" -d "$JOB" >"$T/job"
[ "$(status)" = 201 ] || fail "create Job: HTTP $(status)"
JN=$(jq_py 'd["metadata"]["name"]' <"$T/job")
case $JN in cairn-restore-x-?????) ;; *) fail "generated Job name '$JN'" ;; esac
api GET "/apis/batch/v1/namespaces/ns/jobs/$JN" >/dev/null
[ "$(status)" = 200 ] || fail "get Job: HTTP $(status)"
api GET /apis/batch/v1/namespaces/ns/jobs/nope >"$T/404"
[ "$(status)" = 404 ] && grep -q 'jobs.batch \\"nope\\" not found' "$T/404" || fail "missing Job: HTTP $(status) $(cat "$T/404")"
ctl job "{\"namespace\":\"ns\",\"name\":\"$JN\",\"condition\":\"Failed\",\"reason\":\"BackoffLimitExceeded\",\"pod_log\":\"one\\ntwo\\nthree\\n\"}"
api GET "/apis/batch/v1/namespaces/ns/jobs/$JN" >"$T/job"
[ "$(jq_py '[(c["type"], c["status"], c["reason"]) for c in d["status"]["conditions"]] + [d["status"]["failed"]]' <"$T/job")" = "[('Failed', 'True', 'BackoffLimitExceeded'), 1]" ] ||
  fail "failed Job status: $(cat "$T/job")"
api GET "/api/v1/namespaces/ns/pods?labelSelector=job-name%3D$JN" >"$T/pods"
POD=$(jq_py 'd["items"][0]["metadata"]["name"]' <"$T/pods")
[ "$(api GET "/api/v1/namespaces/ns/pods/$POD/log?container=restore&tailLines=2")" = "$(printf 'two\nthree')" ] ||
  fail "pod log tail: $(cat "$T/body")"
api GET "/api/v1/namespaces/ns/pods/$POD/log?container=other" >/dev/null
[ "$(status)" = 400 ] || fail "log of an unknown container: HTTP $(status)"
ctl fail '{"method":"POST","path":"/apis/batch/v1/namespaces/ns/jobs","status":403}'
api POST /apis/batch/v1/namespaces/ns/jobs -H "$J" -d "$JOB" >"$T/403"
[ "$(status)" = 403 ] || fail "injected 403 on jobs: HTTP $(status)"
grep -q 'jobs.batch is forbidden: .* cannot create resource \\"jobs\\" in API group \\"batch\\" in the namespace \\"ns\\"' "$T/403" ||
  fail "403 message for jobs: $(cat "$T/403")"

# the request log records what was sent (never the token itself)
curl -sf "$B/_control/log" >"$T/log"
grep -q good-token "$T/log" && fail "the request log holds the token"
echo "k8s_client: fake API server behaves as the API reference describes"
