# shellcheck shell=bash
# Helpers for agent tests against tests/k8s/fake_apiserver.py. Source after
# lib.sh. Not a test itself (lib*.sh are not registered).
#
#   k8s_start_fake          start the fake API server; sets API, TOKEN and
#                           KUBECONFIG (exported)
#   ctl METHOD PATH [JSON]  the fake server's control API
#   k8s_volume NS PVC UID ANNOTATIONS_JSON
#                           a PV pv-PVC, a bound PVC NS/PVC with those
#                           annotations, a pod PVC-pod (uid UID) on node-a
#                           mounting it; prints the volume's "host path"
#                           under $PODS
#   agent_start [VAR=VALUE...]
#                           starts `cairn agent` for node-a (tick 1 s, no
#                           jitter, metrics on a free port MPORT); AGENT_PID
#   wait_for SECONDS WHAT COMMAND...   poll COMMAND every 0.1 s
#   pvc_ann NS PVC KEY      prints the PVC's annotation KEY ("" if unset)
#   metrics                 prints /metrics
#   request_backup NS PVC   sets cairn.io/backup-requested-at to now (seconds,
#                           as `cairn trigger` does), after a second has passed
#                           since the last run's cairn.io/last-backup

FAKE=$CAIRN_SRC/tests/k8s/fake_apiserver.py
PODS=$T/kubelet/pods
AGENT_PID=

k8s_start_fake() {
  need_cmd curl
  TOKEN=agent-test-token-$RANDOM
  python3 "$FAKE" --token "$TOKEN" --port-file "$T/fake.port" >"$T/fake.log" 2>&1 &
  local _
  for _ in $(seq 1 100); do [ -s "$T/fake.port" ] && break; sleep 0.1; done
  [ -s "$T/fake.port" ] || { cat "$T/fake.log" >&2; fail "the fake API server did not start"; }
  API=http://127.0.0.1:$(cat "$T/fake.port")
  cat >"$T/kubeconfig.json" <<EOF
{"apiVersion":"v1","kind":"Config","current-context":"fake",
 "clusters":[{"name":"fake","cluster":{"server":"$API"}}],
 "users":[{"name":"agent","user":{"token":"$TOKEN"}}],
 "contexts":[{"name":"fake","context":{"cluster":"fake","user":"agent","namespace":"cairn-system"}}]}
EOF
  export KUBECONFIG=$T/kubeconfig.json
}

ctl() { # METHOD PATH [JSON]
  if [ $# -ge 3 ]; then
    curl -fsS -X "$1" -H 'Content-Type: application/json' --data-binary "$3" "$API/_control/$2"
  else
    curl -fsS -X "$1" "$API/_control/$2"
  fi
}

k8s_volume() { # NS PVC UID ANNOTATIONS_JSON
  local ns=$1 pvc=$2 uid=$3 ann=$4 dir
  dir=$PODS/$uid/volumes/kubernetes.io~csi/pv-$pvc/mount
  mkdir -p "$dir"
  ctl POST pv '{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv-'"$pvc"'"},"spec":{"csi":{"driver":"ebs.csi.aws.com","volumeHandle":"vol-'"$pvc"'"},"capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}' >/dev/null
  ctl POST pvc '{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"'"$pvc"'","namespace":"'"$ns"'","uid":"uid-'"$pvc"'","annotations":'"$ann"'},"spec":{"volumeName":"pv-'"$pvc"'","accessModes":["ReadWriteOnce"]},"status":{"phase":"Bound"}}' >/dev/null
  ctl POST pod '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"'"$pvc"'-pod","namespace":"'"$ns"'","uid":"'"$uid"'"},"spec":{"nodeName":"node-a","volumes":[{"name":"v","persistentVolumeClaim":{"claimName":"'"$pvc"'"}}]},"status":{"phase":"Running"}}' >/dev/null
  printf '%s\n' "$dir"
}

agent_start() { # [VAR=VALUE...]
  MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # empty the logs now: the background shell truncates them only when it runs,
  # and a wait_for on the previous agent's lines must not see them meanwhile
  : >"$T/agent.out"
  : >"$T/agent.err"
  env NODE_NAME=node-a POD_NAMESPACE=cairn-system CAIRN_KUBELET_PODS_DIR="$PODS" \
    CAIRN_METRICS_ADDR=127.0.0.1 CAIRN_METRICS_PORT="$MPORT" CAIRN_AGENT_TICK=1 \
    CAIRN_JITTER_MAX=0 CAIRN_LOG_LEVEL=debug CAIRN_PRUNE_INTERVAL=0 "$@" \
    "$CAIRN" agent >"$T/agent.out" 2>"$T/agent.err" &
  AGENT_PID=$!
}

agent_alive() { [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; }

wait_for() { # SECONDS WHAT COMMAND...
  local n=$(($1 * 10)) what=$2
  shift 2
  while [ "$n" -gt 0 ]; do
    "$@" && return 0
    if [ -n "$AGENT_PID" ] && ! agent_alive; then
      tail -n 40 "$T/agent.err" >&2
      fail "the agent exited while waiting for $what"
    fi
    sleep 0.1
    n=$((n - 1))
  done
  tail -n 40 "$T/agent.err" >&2
  fail "timed out waiting for $what"
}

pvc_ann() { # NS PVC KEY
  ctl GET "pvc/$1/$2" >"$T/pvc.$$.json" &&
    json_get "$T/pvc.$$.json" 'j["metadata"].get("annotations", {}).get("'"$3"'", "")'
}

# The whole page first, then one write: a reader that stops early (grep -q)
# must not make curl fail writing the rest (exit 23 under pipefail)
metrics() {
  local page
  page=$(curl -fsS "http://127.0.0.1:$MPORT/metrics") || return
  printf '%s\n' "$page"
}

request_backup() { # NS PVC
  sleep 1.1 # cairn.io/last-backup has second resolution
  ctl GET "pvc/$1/$2" >"$T/pvc.req.json"
  python3 - "$T/pvc.req.json" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$T/pvc.req-new.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["metadata"].setdefault("annotations", {})["cairn.io/backup-requested-at"] = sys.argv[2]
print(json.dumps(p))
EOF
  ctl POST pvc "$(cat "$T/pvc.req-new.json")" >/dev/null
}
