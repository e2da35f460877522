#!/usr/bin/env python3
"""tests/k8s/fake_apiserver.py -- a fake Kubernetes API server for Cairn's tests.

Python 3 standard library only. It follows the shapes of the API reference for
the calls the agent makes, nothing more:

  GET   /api/v1/pods?fieldSelector=spec.nodeName=N&limit=L&continue=C
        PodList with metadata.resourceVersion (and .continue while more pages
        remain); a continue token older than a forced 410 gets HTTP 410.
  GET   /api/v1/pods?watch=1&resourceVersion=R&fieldSelector=...&timeoutSeconds=T
        chunked newline-delimited watch events (ADDED/MODIFIED/DELETED/
        BOOKMARK with allowWatchBookmarks, ERROR with a Status); a
        resourceVersion older than the compaction point gets an ERROR event
        with code 410 ("too old resource version"), as a real server does.
  GET   /api/v1/persistentvolumeclaims[?watch=1...]   list and watch, as for pods
        (field selectors metadata.name and metadata.namespace)
  GET   /api/v1/namespaces/NS/persistentvolumeclaims   list (no watch) of one namespace
        labelSelector (equality-based: k=v, k==v, k!=v, k, !k) on PVC lists
  GET   /api/v1/namespaces/NS/persistentvolumeclaims/NAME
  PATCH /api/v1/namespaces/NS/persistentvolumeclaims/NAME
        only application/merge-patch+json (else 415); RFC 7386 applied.
  GET   /api/v1/persistentvolumes/NAME
  POST  /api/v1/namespaces/NS/events     (201; involvedObject.namespace must be NS)
  GET   /api/v1/namespaces/NS/secrets/NAME   (Opaque Secret, data base64)
  POST  /apis/snapshot.storage.k8s.io/v1/namespaces/NS/volumesnapshots   (201; the
        spec is checked: exactly one of source.persistentVolumeClaimName and
        source.volumeSnapshotContentName; 409 for an existing name)
  GET   .../namespaces/NS/volumesnapshots/NAME  each GET moves the snapshot on,
        like the snapshot controller: after "cut_after" GETs status gets
        creationTime and boundVolumeSnapshotContentName (a
        VolumeSnapshotContent with status.snapshotHandle is created), after
        "ready_after" GETs readyToUse: true (or status.error with "error")
  DELETE .../namespaces/NS/volumesnapshots/NAME  (404 when missing; a DeleteOptions
        body with preconditions.uid that differs from the object's: 409 Conflict)
  GET   /apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/NAME
  POST  /api/v1/namespaces/NS/persistentvolumeclaims   create (201; generateName;
        409 AlreadyExists, 422 Invalid without accessModes or requests.storage)
  POST  /apis/batch/v1/namespaces/NS/jobs               create (201; generateName;
        409, 422 without restartPolicy Never/OnFailure); status.active = 1
  GET   /apis/batch/v1/namespaces/NS/jobs[/NAME]        list / get (404 NotFound)
  GET   /apis/apps/v1/namespaces/NS/daemonsets/NAME
  GET   /api/v1/namespaces/NS/pods?labelSelector=...    pods of one namespace
  GET   /api/v1/namespaces/NS/pods/NAME/log?container=C&tailLines=N   text/plain
  GET   /api/v1/namespaces/NAME                         a Namespace (labels; 404 NotFound)
  DELETE /api/v1/namespaces/NS/persistentvolumeclaims/NAME   (a DELETED event; 404)
  DELETE /apis/batch/v1/namespaces/NS/jobs/NAME         (its pods go too; 404)
        every DELETE of a PVC or Job is kept with its body: GET /_control/deleted
  GET   /apis/batch/v1/jobs, /apis/batch/v1/namespaces/NS/jobs   labelSelector
  GET   /apis/snapshot.storage.k8s.io/v1/volumesnapshots[?labelSelector=...]
        every VolumeSnapshot not deleted
  GET   /api/v1/namespaces/NS/pods/NAME                 one pod
  GET   /api/v1/namespaces/NS/events?fieldSelector=...  an EventList (core/v1) of the
        events POSTed and those of the fake job controller; field selectors
        (=, ==, !=; comma = and) on involvedObject.kind/name/namespace/uid/
        apiVersion/fieldPath, reason, type, source, reportingComponent,
        metadata.name/namespace; any other field: 400 as the real server
  A Job created in a namespace whose pods are rejected (its label
  pod-security.kubernetes.io/enforce is "restricted", or /_control/reject-pods)
  never gets a pod: like the job controller, the fake adds a Warning event
  FailedCreate about the Job with the admission message instead.

Every /api request needs "Authorization: Bearer <--token>", else 401 with a
Status body. Failures are injected through the control API.

Control API (no authentication; the tests' side door), JSON bodies:
  POST /_control/pod        {pod}               add a pod (an ADDED event)
  POST /_control/event      {"type", "object"}  apply an event to the store
  POST /_control/bookmark                       a BOOKMARK to open watches
  POST /_control/gone                           compact: open watches get an
                                                ERROR 410, older resourceVersions
                                                and continue tokens are gone
  POST /_control/fail       {"method","path","status","count"[,"watch"]}
                            the next count requests whose path starts with
                            path (is path, with "exact": true) fail (only
                            watches / only others with "watch": true / false);
                            403 gets an RBAC message
  POST /_control/fail-reset                     forget every injected failure
  POST /_control/pvc        {pvc}    add or replace a PVC (ADDED/MODIFIED event)
  POST /_control/pv         {pv}
  GET  /_control/pvc/NS/NAME         the stored PVC (patches applied)
  GET  /_control/log                 every /api request: method, path,
                                     query, content_type, auth (ok/bad/none),
                                     body (JSON when it parses)
  POST /_control/reset-log
  POST /_control/secret     {secret}   add or replace a Secret
  POST /_control/vs-steps   {"cut_after": 1, "ready_after": 2, "error": ""}
  POST /_control/volumesnapshot {vs}  add or replace a VolumeSnapshot as it
                                     is (a uid is given if missing; readyToUse),
                                     e.g. one a user made without Cairn
  GET  /_control/volumesnapshots     every VolumeSnapshot (deleted ones too,
                                     with "deleted": true in the entry);
                                     make DELETEs fail with /_control/fail
                                     {"method": "DELETE", "path": ..., "status":
                                     500 or 403, "count": N}
  POST /_control/daemonset  {daemonset}   add a DaemonSet
  GET  /_control/jobs                     every Job created
  GET  /_control/deleted                  every PVC and Job DELETEd: {"kind",
                                          "namespace", "name", "body"}
  GET  /_control/created                  every PVC and Job POSTed, as received
                                          (after generateName): {"kind", "object"}
  POST /_control/job {"namespace", "name"[, "condition": "Complete"|"Failed",
                      "reason", "message"][, "pod_log": TEXT]
                      [, "pod_waiting": {"reason", "message"}]}
                            finish a Job (status.conditions, succeeded/failed)
                            and/or give it a pod (labels job-name) with that
                            log, or one whose container waits for that reason
  POST /_control/namespace {"name", "labels"}   add or replace a Namespace
  POST /_control/reject-pods {"namespace", "message"}   pods of Jobs created
                            from now on in that namespace are rejected with
                            that message ("" or null: no longer)
  POST /_control/k8s-event {event}   store a core/v1 Event as is (metadata.name,
                            namespace, uid, resourceVersion filled in)

Usage: fake_apiserver.py --token T [--port 0] [--port-file F]
                         [--tls-cert PEM --tls-key PEM]
The bound port is written to --port-file (atomically) once listening.
"""

import argparse
import base64
import copy
import http.server
import json
import os
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

LOCK = threading.Condition()
STATE = {
    "rv": 100,
    "pods": {},        # "ns/name" -> pod
    "history": [],     # (rv, type, pod)
    "compacted": 0,    # resourceVersions older than this are gone
    "gone_epoch": 0,   # bumped by /_control/gone: open watches end with 410
    "pvcs": {},        # "ns/name" -> pvc
    "pvs": {},         # name -> pv
    "events": [],
    "fail": [],        # {"method", "path", "status", "count"}
    "log": [],
    "token": "",
    "secrets": {},     # "ns/name" -> secret
    "vs": {},          # "ns/name" -> {"obj", "gets", "deleted"}
    "vsc": {},         # name -> VolumeSnapshotContent
    "vs_steps": {"cut_after": 1, "ready_after": 2, "error": ""},
    "jobs": {},        # "ns/name" -> batch/v1 Job (restore-pvc)
    "daemonsets": {},  # "ns/name" -> apps/v1 DaemonSet
    "podlogs": {},     # "ns/pod" -> log text
    "created": [],     # PVCs and Jobs as POSTed (after name generation)
    "namespaces": {},  # name -> Namespace
    "reject_pods": {}, # namespace -> admission message for the pods of new Jobs
    "deleted": [],     # PVC and Job DELETEs: {"kind", "namespace", "name", "body"}
}

EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                "involvedObject.uid", "involvedObject.apiVersion",
                "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                "reportingComponent", "source", "type", "metadata.namespace", "metadata.name")


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def next_rv():
    STATE["rv"] += 1
    return STATE["rv"]


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def store(resource):
    return STATE["pods"] if resource == "pods" else STATE["pvcs"]


def record_event(resource, etype, obj):
    """Store and history (pods, persistentvolumeclaims); LOCK held."""
    md = obj.setdefault("metadata", {})
    md.setdefault("namespace", "default")
    key = md["namespace"] + "/" + md["name"]
    old = store(resource).get(key)
    md.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
    rv = next_rv()
    md["resourceVersion"] = str(rv)
    if etype == "DELETED":
        store(resource).pop(key, None)
    else:
        store(resource)[key] = obj
    STATE["history"].append((rv, etype, copy.deepcopy(obj), resource))
    LOCK.notify_all()


def record_pod_event(etype, pod):
    record_event("pods", etype, pod)


def node_of(pod):
    return (pod.get("spec") or {}).get("nodeName", "")


def parse_selector(sel, resource="pods"):
    """Field selectors: metadata.name, metadata.namespace; spec.nodeName for pods."""
    want = {}
    if not sel:
        return want
    for part in sel.split(","):
        if "=" not in part:
            raise ValueError(part)
        k, v = part.split("=", 1)
        k = k.rstrip("=")
        if k not in ("metadata.name", "metadata.namespace") and \
                not (k == "spec.nodeName" and resource == "pods"):
            raise ValueError(part)
        want[k] = v
    return want


def matches(pod, want):
    if "spec.nodeName" in want and node_of(pod) != want["spec.nodeName"]:
        return False
    if "metadata.namespace" in want and pod["metadata"].get("namespace") != want["metadata.namespace"]:
        return False
    if "metadata.name" in want and pod["metadata"].get("name") != want["metadata.name"]:
        return False
    return True


def parse_label_selector(sel):
    """Equality-based label selectors: k=v, k==v, k!=v, k, !k (comma = and)."""
    reqs = []
    for part in (sel.split(",") if sel else []):
        part = part.strip()
        if "!=" in part:
            k, v = part.split("!=", 1)
            op = "!="
        elif "=" in part:
            k, v = part.split("=", 1)
            v = v[1:] if v.startswith("=") else v
            op = "="
        elif part.startswith("!"):
            k, v, op = part[1:], "", "!"
        else:
            k, v, op = part, "", "exists"
        k, v = k.strip(), v.strip()
        if not k:
            raise ValueError(part)
        reqs.append((k, op, v))
    return reqs


def labels_match(obj, reqs):
    labels = obj.get("metadata", {}).get("labels") or {}
    for k, op, v in reqs:
        if (op == "=" and labels.get(k) != v) or (op == "!=" and labels.get(k) == v) or \
                (op == "!" and k in labels) or (op == "exists" and k not in labels):
            return False
    return True


def forbidden_target(path):
    """(resource, API group, scope text) of a request path, for 403 messages."""
    parts = path.strip("/").split("/")
    group = ""
    if parts[:1] == ["apis"] and len(parts) > 2:
        group, parts = parts[1], ["api"] + parts[2:]
    ns = None
    if len(parts) > 3 and parts[2] == "namespaces":
        ns = parts[3]
        if len(parts) > 4:
            parts = parts[:2] + parts[4:]
    res = parts[2] if len(parts) > 2 else ""
    if len(parts) > 4:
        res += "/" + parts[4]
    scope = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
    return res, group, scope, len(parts) == 3


def parse_event_selector(sel):
    """[(field, op, value)] of an events field selector; ValueError(message)."""
    reqs = []
    for part in (sel.split(",") if sel else []):
        for op in ("!=", "==", "="):
            if op in part:
                k, v = part.split(op, 1)
                break
        else:
            raise ValueError('invalid selector: \'%s\'; can\'t understand \'%s\'' % (sel, part))
        if k not in EVENT_FIELDS:
            raise ValueError('"%s" is not a known field selector: only "%s"'
                             % (k, '", "'.join(EVENT_FIELDS)))
        reqs.append((k, "!=" if op == "!=" else "=", v))
    return reqs


def event_field(ev, field):
    if field == "source":
        return (ev.get("source") or {}).get("component", "")
    obj = ev
    for part in field.split("."):
        obj = (obj or {}).get(part) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else ""


def job_event(job, etype, reason, message):
    """A core/v1 Event from the job controller about job (LOCK held)."""
    md = job["metadata"]
    ts = now_rfc3339()
    ev = {"apiVersion": "v1", "kind": "Event",
          "metadata": {"name": "%s.%x" % (md["name"], int(time.time() * 1e9)),
                       "namespace": md["namespace"], "uid": str(uuid.uuid4()),
                       "resourceVersion": str(next_rv()), "creationTimestamp": ts},
          "involvedObject": {"kind": "Job", "namespace": md["namespace"], "name": md["name"],
                             "uid": md["uid"], "apiVersion": "batch/v1",
                             "resourceVersion": md.get("resourceVersion", "")},
          "reason": reason, "message": message,
          "source": {"component": "job-controller"},
          "firstTimestamp": ts, "lastTimestamp": ts, "count": 1, "type": etype,
          "eventTime": None, "reportingComponent": "job-controller", "reportingInstance": ""}
    STATE["events"].append(ev)
    return ev


def parse_qs_one(path, key):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query,
                                       keep_blank_values=True)).get(key, "")


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def already_exists(resource, group, name):
    kind = resource + ("." + group if group else "")
    st = status_obj(409, "AlreadyExists", '%s "%s" already exists' % (kind, name))
    st["details"] = {"name": name, "group": group, "kind": resource}
    return st


def not_found(resource, group, name):
    kind = resource + ("." + group if group else "")
    st = status_obj(404, "NotFound", '%s "%s" not found' % (kind, name))
    st["details"] = {"name": name, "group": group, "kind": resource}
    return st


def invalid(kind, name, field, msg):
    st = status_obj(422, "Invalid", '%s "%s" is invalid: %s: %s' % (kind, name, field, msg))
    st["details"] = {"name": name, "kind": kind,
                     "causes": [{"reason": "FieldValueRequired", "message": msg, "field": field}]}
    return st


def created_metadata(obj, ns, taken):
    """Names (generateName), uid, resourceVersion, creationTimestamp of a new
    object; LOCK held. Returns an error Status or None."""
    md = obj.setdefault("metadata", {})
    if md.get("namespace", ns) != ns:
        return status_obj(400, "BadRequest", "the namespace of the provided object does not "
                          "match the namespace sent on the request")
    md["namespace"] = ns
    if not md.get("name"):
        if not md.get("generateName"):
            return None  # the caller reports "metadata.name: Required value"
        while True:
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            if md["name"] not in taken:
                break
    md["uid"] = str(uuid.uuid4())
    md["creationTimestamp"] = now_rfc3339()
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver/1"
    # TCP_NODELAY: headers and body go out in separate writes, and on a
    # kept-alive connection Nagle would hold the body until the client's
    # delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- helpers ----
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, message):
        self.send_json(code, status_obj(code, reason, message))

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # ---- dispatch ----
    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        raw = self.body()
        if url.path.startswith("/_control/"):
            return self.control(method, url.path[len("/_control/"):], raw)
        auth = self.headers.get("Authorization", "")
        auth_state = "none"
        if auth:
            auth_state = "ok" if auth == "Bearer " + STATE["token"] else "bad"
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        with LOCK:
            STATE["log"].append({"method": method, "path": url.path, "query": q,
                                 "content_type": self.headers.get("Content-Type", ""),
                                 "auth": auth_state, "body": parsed})
        if auth_state != "ok":
            return self.status(401, "Unauthorized", "Unauthorized")
        with LOCK:
            for f in STATE["fail"]:
                if f["count"] > 0 and (url.path == f["path"] if f.get("exact")
                                       else url.path.startswith(f["path"])) and \
                        f.get("method", method) == method and \
                        f.get("watch") in (None, q.get("watch") in ("1", "true")):
                    f["count"] -= 1
                    code = f["status"]
                    break
            else:
                code = 0
        if code == 403:
            res, group, scope, collection = forbidden_target(url.path)
            verb = "watch" if q.get("watch") else {"GET": "list" if collection else "get",
                                                   "PATCH": "patch", "POST": "create"}.get(method, method.lower())
            return self.status(403, "Forbidden",
                               '%s is forbidden: User "system:serviceaccount:cairn-system:cairn-agent" '
                               'cannot %s resource "%s" in API group "%s" %s'
                               % (res + ("." + group if group else "")
                                  + (' "%s"' % url.path.rstrip("/").split("/")[-1] if not collection else ""),
                                  verb, res, group, scope))
        if code:
            return self.status(code, "InternalError" if code >= 500 else "BadRequest",
                               "injected failure %d" % code)
        parts = url.path.strip("/").split("/")
        if url.path in ("/api/v1/pods", "/api/v1/persistentvolumeclaims") and method == "GET":
            resource = parts[2]
            if q.get("watch") in ("1", "true"):
                return self.watch_pods(q, resource)
            return self.list_pods(q, resource)
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and \
                parts[4] == "persistentvolumeclaims" and method == "GET" and \
                q.get("watch") not in ("1", "true"):
            return self.list_pods(q, "persistentvolumeclaims", parts[3])
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and \
                parts[4] == "persistentvolumeclaims":
            return self.pvc(method, parts[3], parts[5], raw)
        if len(parts) == 4 and parts[:3] == ["api", "v1", "persistentvolumes"] and method == "GET":
            with LOCK:
                pv = STATE["pvs"].get(parts[3])
            if pv is None:
                return self.status(404, "NotFound", 'persistentvolumes "%s" not found' % parts[3])
            return self.send_json(200, pv)
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events" \
                and method == "POST":
            return self.post_event(parts[3], raw)
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events" \
                and method == "GET" and q.get("watch") not in ("1", "true"):
            return self.list_events(parts[3], q)
        if len(parts) == 4 and parts[:3] == ["api", "v1", "namespaces"] and method == "GET":
            with LOCK:
                nso = copy.deepcopy(STATE["namespaces"].get(parts[3]))
            if nso is None:
                return self.send_json(404, not_found("namespaces", "", parts[3]))
            return self.send_json(200, nso)
        if self.route_secrets(method, parts) or self.route_snapshots(method, parts, raw) or \
                self.route_restore(method, url, q, parts, raw):
            return None
        return self.status(404, "NotFound", "the server could not find the requested resource")

    # ---- pods ----
    def list_pods(self, q, resource="pods", namespace=None):
        try:
            want = parse_selector(q.get("fieldSelector", ""), resource)
        except ValueError as e:
            return self.status(400, "BadRequest", 'field label not supported: "%s"' % e)
        try:
            labels = parse_label_selector(q.get("labelSelector", ""))
        except ValueError as e:
            return self.status(400, "BadRequest", 'unable to parse requirement: "%s"' % e)
        if namespace is not None:
            want["metadata.namespace"] = namespace
        limit = int(q.get("limit") or 0)
        cont = q.get("continue", "")
        with LOCK:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    snap_rv, start, items = tok["rv"], tok["start"], None
                except (ValueError, KeyError):
                    return self.status(400, "BadRequest", "invalid continue token")
                if snap_rv < STATE["compacted"]:
                    return self.status(410, "Expired",
                                       "The provided continue parameter is too old to display a "
                                       "consistent list result. You can start a new list without "
                                       "the continue parameter.")
                items = STATE.setdefault("snapshots", {}).get(cont)
                if items is None:
                    return self.status(410, "Expired", "continue token no longer valid")
            else:
                snap_rv, start = STATE["rv"], 0
                items = sorted((copy.deepcopy(p) for p in store(resource).values()
                                if matches(p, want) and labels_match(p, labels)),
                               key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
            end = len(items) if not limit else min(len(items), start + limit)
            md = {"resourceVersion": str(snap_rv)}
            if end < len(items):
                tok = base64.urlsafe_b64encode(json.dumps({"rv": snap_rv, "start": end}).encode()).decode()
                STATE.setdefault("snapshots", {})[tok] = items
                md["continue"] = tok
                md["remainingItemCount"] = len(items) - end
        self.send_json(200, {"kind": "PodList" if resource == "pods" else "PersistentVolumeClaimList",
                             "apiVersion": "v1", "metadata": md,
                             "items": items[start:end]})

    def watch_pods(self, q, resource="pods"):
        try:
            want = parse_selector(q.get("fieldSelector", ""), resource)
        except ValueError as e:
            return self.status(400, "BadRequest", 'field label not supported: "%s"' % e)
        try:
            since = int(q.get("resourceVersion") or 0)
        except ValueError:
            return self.status(400, "BadRequest", "invalid resourceVersion")
        timeout = float(q.get("timeoutSeconds") or 60)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        with LOCK:
            epoch = STATE["gone_epoch"]
        sent_bookmarks = 0
        try:
            while True:
                out = []
                gone = False
                with LOCK:
                    if since and since < STATE["compacted"] or STATE["gone_epoch"] != epoch:
                        gone = True
                    else:
                        for rv, etype, pod, res in STATE["history"]:
                            if rv > since and res == resource and matches(pod, want):
                                out.append({"type": etype, "object": pod})
                            if rv > since:
                                since = rv
                        if bookmarks and STATE.get("bookmarks", 0) > sent_bookmarks:
                            sent_bookmarks = STATE["bookmarks"]
                            out.append({"type": "BOOKMARK", "object": {
                                "kind": "Pod" if resource == "pods" else "PersistentVolumeClaim",
                                "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(STATE["rv"])}}})
                    if not out and not gone:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        LOCK.wait(min(left, 0.5))
                        continue
                for ev in out:
                    self.chunk(json.dumps(ev).encode() + b"\n")
                if gone:
                    self.chunk(json.dumps({"type": "ERROR", "object": status_obj(
                        410, "Expired", "too old resource version: %d (%d)"
                        % (since, STATE["compacted"] + 1))}).encode() + b"\n")
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # ---- PVCs, events ----
    def pvc(self, method, ns, name, raw):
        key = ns + "/" + name
        with LOCK:
            cur = STATE["pvcs"].get(key)
            if cur is None:
                return self.status(404, "NotFound", 'persistentvolumeclaims "%s" not found' % name)
            if method == "GET":
                return self.send_json(200, cur)
            if method == "DELETE":
                STATE["deleted"].append({"kind": "PersistentVolumeClaim", "namespace": ns,
                                         "name": name, "body": json.loads(raw) if raw else None})
                record_event("persistentvolumeclaims", "DELETED", copy.deepcopy(cur))
                return self.send_json(200, cur)
            if method != "PATCH":
                return self.status(405, "MethodNotAllowed", "method not allowed")
            ctype = self.headers.get("Content-Type", "")
            if ctype != "application/merge-patch+json":
                return self.status(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted "
                                   "media types include: application/json-patch+json, "
                                   "application/merge-patch+json, application/apply-patch+yaml")
            try:
                patch = json.loads(raw)
            except ValueError:
                return self.status(400, "BadRequest", "invalid JSON")
            new = merge_patch(cur, patch)
            record_event("persistentvolumeclaims", "MODIFIED", new)
        self.send_json(200, new)

    def post_event(self, ns, raw):
        try:
            ev = json.loads(raw)
        except ValueError:
            return self.status(400, "BadRequest", "invalid JSON")
        inv = ev.get("involvedObject") or {}
        if inv.get("namespace") != ns or (ev.get("metadata") or {}).get("namespace", ns) != ns:
            return self.status(422, "Invalid", "involvedObject.namespace: does not match event.namespace")
        md = ev.setdefault("metadata", {})
        if not md.get("name"):
            if not md.get("generateName"):
                return self.status(422, "Invalid", "metadata.name: Required value")
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
        with LOCK:
            md["resourceVersion"] = str(next_rv())
            STATE["events"].append(ev)
        self.send_json(201, ev)

    def list_events(self, ns, q):
        try:
            reqs = parse_event_selector(q.get("fieldSelector", ""))
        except ValueError as e:
            return self.status(400, "BadRequest", str(e))
        with LOCK:
            items = [copy.deepcopy(ev) for ev in STATE["events"]
                     if (ev.get("metadata") or {}).get("namespace", ns) == ns and
                     all((event_field(ev, k) == v) == (op == "=") for k, op, v in reqs)]
            rv = str(STATE["rv"])
        self.send_json(200, {"apiVersion": "v1", "kind": "EventList",
                             "metadata": {"resourceVersion": rv}, "items": items})

    # ---- Secrets, VolumeSnapshots (the quiesce/snapshot tests) ----
    def route_secrets(self, method, parts):
        if not (len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and
                parts[4] == "secrets" and method == "GET"):
            return False
        with LOCK:
            sec = copy.deepcopy(STATE["secrets"].get(parts[3] + "/" + parts[5]))
        if sec is None:
            self.status(404, "NotFound", 'secrets "%s" not found' % parts[5])
        else:
            self.send_json(200, sec)
        return True

    def route_snapshots(self, method, parts, raw):
        g = ["apis", "snapshot.storage.k8s.io", "v1"]
        if parts[:3] != g:
            return False
        if len(parts) == 5 and parts[3] == "volumesnapshotcontents" and method == "GET":
            with LOCK:
                c = copy.deepcopy(STATE["vsc"].get(parts[4]))
            if c is None:
                self.status(404, "NotFound", 'volumesnapshotcontents.snapshot.storage.k8s.io "%s" not found' % parts[4])
            else:
                self.send_json(200, c)
            return True
        if len(parts) == 4 and parts[3] == "volumesnapshots" and method == "GET":
            try:
                labels = parse_label_selector(parse_qs_one(self.path, "labelSelector"))
            except ValueError as e:
                self.status(400, "BadRequest", 'unable to parse requirement: "%s"' % e)
                return True
            with LOCK:
                items = [copy.deepcopy(e["obj"]) for _, e in sorted(STATE["vs"].items())
                         if not e["deleted"] and labels_match(e["obj"], labels)]
                rv = str(STATE["rv"])
            self.send_json(200, {"kind": "VolumeSnapshotList", "apiVersion": "snapshot.storage.k8s.io/v1",
                                 "metadata": {"resourceVersion": rv}, "items": items})
            return True
        if len(parts) == 6 and parts[3] == "namespaces" and parts[5] == "volumesnapshots" \
                and method == "POST":
            self.create_vs(parts[4], raw)
            return True
        if len(parts) == 7 and parts[3] == "namespaces" and parts[5] == "volumesnapshots":
            key = parts[4] + "/" + parts[6]
            with LOCK:
                ent = STATE["vs"].get(key)
                if ent is None or ent["deleted"]:
                    ent = None
                elif method == "GET":
                    ent["gets"] += 1
                    self.advance_vs(ent)
                    out = copy.deepcopy(ent["obj"])
                elif method == "DELETE":
                    pre = ((json.loads(raw) if raw else None) or {}).get("preconditions") or {}
                    if pre.get("uid") not in (None, ent["obj"]["metadata"]["uid"]):
                        out = {"conflict": pre["uid"]}
                    else:
                        ent["deleted"] = True
                        ent["deleted_at"] = time.time()
                        out = copy.deepcopy(ent["obj"])
                else:
                    out = None
            if ent is None:
                self.status(404, "NotFound", 'volumesnapshots.snapshot.storage.k8s.io "%s" not found' % parts[6])
            elif out is None:
                self.status(405, "MethodNotAllowed", "method not allowed")
            elif "conflict" in out:
                self.status(409, "Conflict",
                            "Operation cannot be fulfilled on volumesnapshots.snapshot.storage.k8s.io "
                            '"%s": Precondition failed: UID in precondition: %s, UID in object meta: %s'
                            % (parts[6], out["conflict"], ent["obj"]["metadata"]["uid"]))
            else:
                self.send_json(200, out)
            return True
        self.status(404, "NotFound", "the server could not find the requested resource")
        return True

    def create_vs(self, ns, raw):
        try:
            vs = json.loads(raw)
        except ValueError:
            return self.status(400, "BadRequest", "invalid JSON")
        md = vs.get("metadata") or {}
        src = (vs.get("spec") or {}).get("source") or {}
        if vs.get("apiVersion") != "snapshot.storage.k8s.io/v1" or vs.get("kind") != "VolumeSnapshot":
            return self.status(400, "BadRequest", "apiVersion/kind must be snapshot.storage.k8s.io/v1 VolumeSnapshot")
        if not md.get("name") or md.get("namespace", ns) != ns:
            return self.status(422, "Invalid", "metadata.name: Required value (or namespace mismatch)")
        if ("persistentVolumeClaimName" in src) == ("volumeSnapshotContentName" in src):
            return self.status(422, "Invalid", "spec.source: exactly one of persistentVolumeClaimName and volumeSnapshotContentName is required")
        key = ns + "/" + md["name"]
        with LOCK:
            if key in STATE["vs"] and not STATE["vs"][key]["deleted"]:
                return self.status(409, "AlreadyExists", 'volumesnapshots.snapshot.storage.k8s.io "%s" already exists' % md["name"])
            md["namespace"] = ns
            md["uid"] = str(uuid.uuid4())
            md["resourceVersion"] = str(next_rv())
            md["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            vs["status"] = {"readyToUse": False}
            STATE["vs"][key] = {"obj": vs, "gets": 0, "deleted": False,
                                "sent": copy.deepcopy(json.loads(raw))}
            out = copy.deepcopy(vs)
        self.send_json(201, out)

    @staticmethod
    def advance_vs(ent):
        """The snapshot controller's part; LOCK held."""
        steps = STATE["vs_steps"]
        vs, st = ent["obj"], ent["obj"]["status"]
        if steps.get("error") and ent["gets"] >= steps.get("cut_after", 1):
            st["error"] = {"message": steps["error"],
                           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            return
        if ent["gets"] >= steps.get("cut_after", 1) and "creationTime" not in st:
            content = "snapcontent-" + vs["metadata"]["uid"]
            st["creationTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            st["boundVolumeSnapshotContentName"] = content
            STATE["vsc"][content] = {
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                "metadata": {"name": content, "uid": str(uuid.uuid4())},
                "spec": {"deletionPolicy": "Delete", "driver": "fake.csi.example.com",
                         "source": {"volumeHandle": "vol-fake"},
                         "volumeSnapshotRef": {"kind": "VolumeSnapshot",
                                               "name": vs["metadata"]["name"],
                                               "namespace": vs["metadata"]["namespace"],
                                               "uid": vs["metadata"]["uid"]}},
                "status": {"snapshotHandle": "snap-" + vs["metadata"]["uid"][:8],
                           "readyToUse": False}}
        if ent["gets"] >= steps.get("ready_after", 2) and "creationTime" in st:
            st["readyToUse"] = True
            st["restoreSize"] = "1Gi"
            STATE["vsc"][st["boundVolumeSnapshotContentName"]]["status"]["readyToUse"] = True
    # ---- restore-pvc: PVC create, Jobs, the agent DaemonSet, pods of a Job, logs ----
    def route_restore(self, method, url, q, parts, raw):
        """Handles the calls of `cairn restore-pvc`; False when not one of them."""
        ns = parts[3] if len(parts) > 3 and parts[2] == "namespaces" else None
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and \
                parts[4] == "persistentvolumeclaims" and method == "POST":
            self.create_pvc(ns, raw)
        elif parts == ["apis", "batch", "v1", "jobs"] and method == "GET":
            self.list_jobs(None, q)
        elif parts[:3] == ["apis", "batch", "v1"] and len(parts) in (6, 7) and \
                parts[3] == "namespaces" and parts[5] == "jobs":
            ns = parts[4]
            if len(parts) == 7 and method == "DELETE":
                self.delete_job(ns, parts[6], raw)
            elif len(parts) == 6 and method == "GET" and q.get("labelSelector"):
                self.list_jobs(ns, q)
            elif len(parts) == 6 and method == "POST":
                self.create_job(ns, raw)
            elif len(parts) == 7 and method == "GET":
                with LOCK:
                    job = copy.deepcopy(STATE["jobs"].get(ns + "/" + parts[6]))
                if job is None:
                    self.send_json(404, not_found("jobs", "batch", parts[6]))
                else:
                    self.send_json(200, job)
            elif len(parts) == 6 and method == "GET":
                with LOCK:
                    items = [copy.deepcopy(j) for k, j in sorted(STATE["jobs"].items())
                             if k.startswith(ns + "/")]
                self.send_json(200, {"kind": "JobList", "apiVersion": "batch/v1",
                                     "metadata": {"resourceVersion": str(STATE["rv"])},
                                     "items": items})
            else:
                self.status(405, "MethodNotAllowed", "method not allowed")
        elif parts[:3] == ["apis", "apps", "v1"] and len(parts) == 7 and \
                parts[3] == "namespaces" and parts[5] == "daemonsets" and method == "GET":
            with LOCK:
                ds = copy.deepcopy(STATE["daemonsets"].get(parts[4] + "/" + parts[6]))
            if ds is None:
                self.send_json(404, not_found("daemonsets", "apps", parts[6]))
            else:
                self.send_json(200, ds)
        elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and \
                parts[4] == "pods" and method == "GET" and q.get("watch") not in ("1", "true"):
            self.list_pods(q, "pods", ns)
        elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and \
                parts[4] == "pods" and method == "GET":
            with LOCK:
                pod = copy.deepcopy(STATE["pods"].get(ns + "/" + parts[5]))
            if pod is None:
                self.send_json(404, not_found("pods", "", parts[5]))
            else:
                self.send_json(200, pod)
        elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 7 and \
                parts[4] == "pods" and parts[6] == "log" and method == "GET":
            with LOCK:
                pod = STATE["pods"].get(ns + "/" + parts[5])
                text = STATE["podlogs"].get(ns + "/" + parts[5], "")
            if pod is None:
                self.send_json(404, not_found("pods", "", parts[5]))
                return True
            containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
            if q.get("container") and q["container"] not in containers:
                self.status(400, "BadRequest", "container %s is not valid for pod %s"
                            % (q["container"], parts[5]))
                return True
            lines = text.splitlines(True)
            if q.get("tailLines"):
                lines = lines[-int(q["tailLines"]):]
            data = "".join(lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            return False
        return True

    def new_object(self, raw, kind, api_version, resource):
        """The body of a create request, or None after answering 400."""
        try:
            obj = json.loads(raw)
        except ValueError:
            self.status(400, "BadRequest", "invalid JSON")
            return None
        if not isinstance(obj, dict) or obj.get("kind") != kind or obj.get("apiVersion") != api_version:
            self.status(400, "BadRequest", "wrong kind or apiVersion for " + resource)
            return None
        return obj

    def create_pvc(self, ns, raw):
        pvc = self.new_object(raw, "PersistentVolumeClaim", "v1", "persistentvolumeclaims")
        if pvc is None:
            return None
        with LOCK:
            taken = {k.split("/", 1)[1] for k in STATE["pvcs"] if k.startswith(ns + "/")}
            st = created_metadata(pvc, ns, taken)
            if st:
                return self.send_json(st["code"], st)
            name = pvc["metadata"].get("name")
            spec = pvc.get("spec") or {}
            if not name:
                return self.send_json(422, invalid("PersistentVolumeClaim", "", "metadata.name",
                                                   "Required value: name or generateName is required"))
            if name in taken:
                return self.send_json(409, already_exists("persistentvolumeclaims", "", name))
            if not spec.get("accessModes"):
                return self.send_json(422, invalid("PersistentVolumeClaim", name, "spec.accessModes",
                                                   "Required value: at least 1 access mode is required"))
            if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
                return self.send_json(422, invalid("PersistentVolumeClaim", name,
                                                   "spec.resources[storage]", "Required value"))
            pvc["status"] = {"phase": "Pending"}
            STATE["created"].append({"kind": "PersistentVolumeClaim", "object": copy.deepcopy(pvc)})
            record_event("persistentvolumeclaims", "ADDED", pvc)
            out = copy.deepcopy(pvc)
        self.send_json(201, out)

    def create_job(self, ns, raw):
        job = self.new_object(raw, "Job", "batch/v1", "jobs.batch")
        if job is None:
            return None
        with LOCK:
            taken = {k.split("/", 1)[1] for k in STATE["jobs"] if k.startswith(ns + "/")}
            st = created_metadata(job, ns, taken)
            if st:
                return self.send_json(st["code"], st)
            name = job["metadata"].get("name")
            if not name:
                return self.send_json(422, invalid("Job.batch", "", "metadata.name",
                                                   "Required value: name or generateName is required"))
            if name in taken:
                return self.send_json(409, already_exists("jobs", "batch", name))
            tmpl = ((job.get("spec") or {}).get("template") or {})
            if (tmpl.get("spec") or {}).get("restartPolicy") not in ("Never", "OnFailure"):
                return self.send_json(422, invalid("Job.batch", name, "spec.template.spec.restartPolicy",
                                                   'Required value: valid values: "OnFailure", "Never"'))
            STATE["created"].append({"kind": "Job", "object": copy.deepcopy(job)})
            job["metadata"]["resourceVersion"] = str(next_rv())
            job["status"] = {"active": 1, "startTime": now_rfc3339()}
            STATE["jobs"][ns + "/" + name] = job
            reject = self.pod_rejection(ns, job)
            if reject:
                # The job controller cannot create the pod: no pod, no
                # active count, a FailedCreate event on the Job.
                job["status"] = {"startTime": now_rfc3339()}
                job_event(job, "Warning", "FailedCreate", "Error creating: " + reject)
            out = copy.deepcopy(job)
        self.send_json(201, out)

    def list_jobs(self, ns, q):
        try:
            labels = parse_label_selector(q.get("labelSelector", ""))
        except ValueError as e:
            return self.status(400, "BadRequest", 'unable to parse requirement: "%s"' % e)
        with LOCK:
            items = [copy.deepcopy(j) for k, j in sorted(STATE["jobs"].items())
                     if (ns is None or k.startswith(ns + "/")) and labels_match(j, labels)]
            rv = str(STATE["rv"])
        self.send_json(200, {"kind": "JobList", "apiVersion": "batch/v1",
                             "metadata": {"resourceVersion": rv}, "items": items})

    def delete_job(self, ns, name, raw):
        with LOCK:
            job = STATE["jobs"].pop(ns + "/" + name, None)
            if job is not None:
                STATE["deleted"].append({"kind": "Job", "namespace": ns, "name": name,
                                         "body": json.loads(raw) if raw else None})
                for key, pod in list(STATE["pods"].items()):
                    if key.startswith(ns + "/") and \
                            (pod["metadata"].get("labels") or {}).get("job-name") == name:
                        record_pod_event("DELETED", copy.deepcopy(pod))
        if job is None:
            return self.send_json(404, not_found("jobs", "batch", name))
        return self.send_json(200, job)

    @staticmethod
    def pod_rejection(ns, job):
        """The admission message that rejects the pods of job, or None (LOCK held)."""
        pod_name = job["metadata"]["name"] + "-" + uuid.uuid4().hex[:5]
        if STATE["reject_pods"].get(ns):
            return 'pods "%s" is forbidden: %s' % (pod_name, STATE["reject_pods"][ns])
        labels = ((STATE["namespaces"].get(ns) or {}).get("metadata") or {}).get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") == "restricted":
            version = labels.get("pod-security.kubernetes.io/enforce-version", "latest")
            return ('pods "%s" is forbidden: violates PodSecurity "restricted:%s": unrestricted '
                    'capabilities (container "restore" must not include "CHOWN", '
                    '"DAC_OVERRIDE", "FOWNER", "FSETID" in securityContext.capabilities.add), '
                    'runAsNonRoot != true (pod or container "restore" must set '
                    'securityContext.runAsNonRoot=true)' % (pod_name, version))
        return None

    def control_restore(self, method, what, arg):
        """Control calls for Jobs (LOCK held); None when not one of them."""
        if method == "GET" and what == "jobs":
            return copy.deepcopy(list(STATE["jobs"].values()))
        if method == "GET" and what == "created":
            return copy.deepcopy(STATE["created"])
        if method == "GET" and what == "deleted":
            return copy.deepcopy(STATE["deleted"])
        if method == "POST" and what == "namespace":
            labels = dict(arg.get("labels") or {})
            labels["kubernetes.io/metadata.name"] = arg["name"]
            old = STATE["namespaces"].get(arg["name"])
            STATE["namespaces"][arg["name"]] = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": arg["name"], "labels": labels,
                             "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                             "resourceVersion": str(next_rv()),
                             "creationTimestamp": now_rfc3339()},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            return {}
        if method == "POST" and what == "reject-pods":
            STATE["reject_pods"][arg["namespace"]] = arg.get("message") or ""
            return {}
        if method == "POST" and what == "k8s-event":
            md = arg.setdefault("metadata", {})
            md.setdefault("name", "%s.%x" % ((arg.get("involvedObject") or {}).get("name", "x"),
                                             int(time.time() * 1e9)))
            md.setdefault("uid", str(uuid.uuid4()))
            md["resourceVersion"] = str(next_rv())
            STATE["events"].append(arg)
            return {}
        if method == "POST" and what == "daemonset":
            md = arg.setdefault("metadata", {})
            STATE["daemonsets"][md.get("namespace", "default") + "/" + md["name"]] = arg
            return {}
        if method == "POST" and what == "job":
            key = arg["namespace"] + "/" + arg["name"]
            job = STATE["jobs"].get(key)
            if job is None:
                return None
            if arg.get("pod_log") is not None or arg.get("pod_waiting"):
                pod_name = arg["name"] + "-" + uuid.uuid4().hex[:5]
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": pod_name, "namespace": arg["namespace"],
                                    "creationTimestamp": now_rfc3339(),
                                    "labels": {"job-name": arg["name"],
                                               "batch.kubernetes.io/job-name": arg["name"]}},
                       "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                       "status": {"phase": "Pending" if arg.get("pod_waiting") else "Failed"}}
                if arg.get("pod_waiting"):
                    pod["status"]["containerStatuses"] = [{
                        "name": "restore", "ready": False, "restartCount": 0, "image": "",
                        "imageID": "", "state": {"waiting": arg["pod_waiting"]}}]
                record_pod_event("ADDED", pod)
                STATE["podlogs"][arg["namespace"] + "/" + pod_name] = arg.get("pod_log") or ""
            cond = arg.get("condition")
            if cond:
                st = job["status"]
                st.pop("active", None)
                st["conditions"] = [{"type": cond, "status": "True",
                                     "lastProbeTime": now_rfc3339(),
                                     "lastTransitionTime": now_rfc3339(),
                                     "reason": arg.get("reason", ""),
                                     "message": arg.get("message", "")}]
                if cond == "Complete":
                    st["succeeded"] = 1
                    st["completionTime"] = now_rfc3339()
                else:
                    st["failed"] = 1
            job["metadata"]["resourceVersion"] = str(next_rv())
            return {}
        return None

    # ---- control ----
    def control(self, method, what, raw):
        try:
            arg = json.loads(raw) if raw else {}
        except ValueError:
            return self.send_json(400, {"error": "bad json"})
        with LOCK:
            if method == "GET" and what == "log":
                data = copy.deepcopy(STATE["log"])
            elif method == "GET" and what == "events":
                data = copy.deepcopy(STATE["events"])
            elif method == "GET" and what.startswith("pvc/"):
                data = STATE["pvcs"].get(what[4:])
                if data is None:
                    return self.send_json(404, {"error": "no such pvc"})
            elif method == "POST" and what == "reset-log":
                STATE["log"] = []
                data = {}
            elif method == "POST" and what == "pod":
                record_pod_event("ADDED", arg)
                data = {"resourceVersion": STATE["rv"]}
            elif method == "POST" and what == "event":
                record_pod_event(arg["type"], arg["object"])
                data = {"resourceVersion": STATE["rv"]}
            elif method == "POST" and what == "bookmark":
                STATE["bookmarks"] = STATE.get("bookmarks", 0) + 1
                LOCK.notify_all()
                data = {}
            elif method == "POST" and what == "gone":
                STATE["compacted"] = STATE["rv"]
                STATE["gone_epoch"] += 1
                STATE["history"] = []
                STATE["snapshots"] = {}
                LOCK.notify_all()
                data = {"compacted": STATE["compacted"]}
            elif method == "POST" and what == "fail":
                STATE["fail"].append({"method": arg.get("method", "GET"), "path": arg["path"],
                                      "status": int(arg["status"]), "count": int(arg.get("count", 1)),
                                      "watch": arg.get("watch")})
                data = {}
            elif method == "POST" and what == "fail-reset":
                STATE["fail"] = []
                data = {}
            elif method == "POST" and what == "pvc":
                md = arg.setdefault("metadata", {})
                exists = (md.get("namespace", "default") + "/" + md["name"]) in STATE["pvcs"]
                record_event("persistentvolumeclaims", "MODIFIED" if exists else "ADDED", arg)
                data = {}
            elif method == "POST" and what == "secret":
                md = arg.setdefault("metadata", {})
                STATE["secrets"][md.get("namespace", "default") + "/" + md["name"]] = arg
                data = {}
            elif method == "POST" and what == "vs-steps":
                STATE["vs_steps"] = dict(STATE["vs_steps"], **arg)
                data = STATE["vs_steps"]
            elif method == "POST" and what == "volumesnapshot":
                md = arg.setdefault("metadata", {})
                md.setdefault("namespace", "default")
                md.setdefault("uid", str(uuid.uuid4()))
                md["resourceVersion"] = str(next_rv())
                arg.setdefault("status", {"readyToUse": True})
                STATE["vs"][md["namespace"] + "/" + md["name"]] = {
                    "obj": arg, "gets": 0, "deleted": False, "sent": None}
                data = copy.deepcopy(arg)
            elif method == "GET" and what == "volumesnapshots":
                data = [dict(copy.deepcopy(e["obj"]), deleted=e["deleted"], sent=e["sent"], gets=e["gets"])
                        for e in STATE["vs"].values()]
            elif what in ("jobs", "created", "daemonset", "job", "namespace", "reject-pods",
                          "k8s-event", "deleted"):
                data = self.control_restore(method, what, arg)
                if data is None:
                    return self.send_json(404, {"error": "unknown control or no such job"})
            elif method == "POST" and what == "pv":
                arg.setdefault("metadata", {})["resourceVersion"] = str(next_rv())
                STATE["pvs"][arg["metadata"]["name"]] = arg
                data = {}
            else:
                return self.send_json(404, {"error": "unknown control " + what})
        self.send_json(200, data)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    STATE["token"] = a.token
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, a.port_file)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
