#!/usr/bin/env bash
# cairn agent's /metrics: WAL and binlog archive lag per database from the
# catalog, and the exposition format of the whole page.
#  - rows the archive commands would write (wal_segments, binlogs) are added
#    to the agent's catalog with sqlite3 while it runs; the lag series appear
#    with now - newest commit/event, grow with time, drop when a newer segment
#    is archived, and disappear when the rows go (forgotten logs);
#  - the page (with a PVC backup's series too) parses with the Prometheus
#    client library's parser (python3-prometheus-client), and every family has
#    exactly one HELP and TYPE line before its samples, no series twice; the
#    job duration and quiesce histograms' buckets end with +Inf = _count,
#    non-decreasing (no quiesce here: every method's count is 0).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_k8s.sh"
need_cmd sqlite3

cairn_repo_init
k8s_start_fake
VOL=$(k8s_volume app data 11111111-0000-0000-0000-000000000002 '{"cairn.io/schedule":"@daily"}')
printf 'metrics\n' >"$VOL/a.txt"
agent_start
readyz() { curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1; }
wait_for 20 "/readyz" readyz
backed_up() { case $(pvc_ann app data cairn.io/last-status) in "ok "*) return 0 ;; esac; return 1; }
wait_for 30 "the backup of app/data" backed_up

SYS=7300000000000000001
SERVER=1b2c3d4e-0000-1111-2222-333344445555
now_ns() { python3 -c 'import time; print(time.time_ns())'; }
sql() { sqlite3 -cmd '.timeout 5000' "$CAIRN_CATALOG" "$1"; }
add_wal() { # SEGMENT COMMIT_NS
  sql "INSERT INTO wal_segments(system_id,timeline,segment,start_lsn,end_lsn,size,checksum,object_key,min_commit_ns,max_commit_ns) VALUES('$SYS',1,'$1',0,16777216,16777216,'sha256:00','wal/$SYS/1/$1',$2,$2);"
}
T0=$(now_ns)
add_wal 000000010000000000000001 $((T0 - 100 * 1000000000))
# a segment without commit records does not count
sql "INSERT INTO wal_segments(system_id,timeline,segment,start_lsn,end_lsn,size,checksum,object_key) VALUES('$SYS',1,'000000010000000000000002',16777216,33554432,16777216,'sha256:00','wal/$SYS/1/x');"
sql "INSERT INTO binlogs(server_uuid,file,start_pos,end_pos,first_event_ns,last_event_ns,object_key,size,checksum) VALUES('$SERVER','binlog.000001',4,1000,$((T0 - 80 * 1000000000)),$((T0 - 50 * 1000000000)),'binlog/$SERVER/binlog.000001',1000,'sha256:00');"

value() { # SERIES -> the value, or nothing
  metrics >"$T/m.txt" && awk -v s="$1" 'index($0, s " ") == 1 { print $2 }' "$T/m.txt"
}
WAL_LAG="cairn_wal_archive_lag_seconds{system_id=\"$SYS\"}"
BIN_LAG="cairn_binlog_archive_lag_seconds{server=\"$SERVER\"}"
has_wal() { [ -n "$(value "$WAL_LAG")" ]; }
wait_for 10 "$WAL_LAG on /metrics" has_wal
in_range() { python3 -c "import sys; v=float('$1'); sys.exit(0 if $2 <= v <= $3 else 1)"; }
now_s_since_t0() { python3 -c "import time; print(time.time() - $T0 / 1e9)"; }
# bracket each scrape with the time since T0, so a slow machine cannot fail it
sample() { # SERIES -> sets V, EL0, EL1
  EL0=$(now_s_since_t0)
  V=$(value "$1")
  EL1=$(now_s_since_t0)
}
sample "$WAL_LAG"
lag1=$V
in_range "$lag1" "100 + $EL0 - 0.2" "100 + $EL1 + 0.2" || fail "WAL lag $lag1, want 100 + $EL0..$EL1 s"
ts=$(value "cairn_wal_archive_last_commit_timestamp_seconds{system_id=\"$SYS\"}")
in_range "$ts" "$T0 / 1e9 - 100.01" "$T0 / 1e9 - 99.99" || fail "WAL last commit timestamp $ts"
sample "$BIN_LAG"
blag=$V
in_range "$blag" "50 + $EL0 - 0.2" "50 + $EL1 + 0.2" || fail "binlog lag $blag, want 50 + $EL0..$EL1 s"
# the lag grows while nothing new is archived
sleep 2
sample "$WAL_LAG"
lag2=$V
in_range "$lag2" "100 + $EL0 - 0.2" "100 + $EL1 + 0.2" || fail "WAL lag $lag2 after 2 s, want 100 + $EL0..$EL1 s"
in_range "$lag2" "$lag1 + 1.9" "$lag1 + 60" || fail "WAL lag went from $lag1 to $lag2 in 2 s"
# a newer segment: the lag drops within a tick
add_wal 000000010000000000000003 "$(($(now_ns) - 5 * 1000000000))"
dropped() { v=$(value "$WAL_LAG") && [ -n "$v" ] && in_range "$v" 4 30; }
wait_for 10 "the WAL lag to drop to about 5 s" dropped
# a second database gets its own series
sql "INSERT INTO wal_segments(system_id,timeline,segment,start_lsn,end_lsn,size,checksum,object_key,min_commit_ns,max_commit_ns) VALUES('42',2,'000000020000000000000009',0,1,1,'sha256:00','k',1,$(now_ns));"
two() { [ -n "$(value 'cairn_wal_archive_lag_seconds{system_id="42"}')" ] && [ -n "$(value "$WAL_LAG")" ]; }
wait_for 10 "a series for the second system" two

# ---- the exposition format ----
metrics >"$T/page.txt"
/usr/bin/python3 - "$T/page.txt" <<'EOF' || fail "/metrics is not valid Prometheus text format"
import re, sys
text = open(sys.argv[1]).read()
def die(m):
    print("FAIL: " + m, file=sys.stderr); sys.exit(1)
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("note: python3-prometheus-client is not installed: only the local checks run", file=sys.stderr)
else:
    try:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
    except Exception as e:
        die("the Prometheus parser rejects the page: %s" % e)
    for want in ("cairn_wal_archive_lag_seconds", "cairn_binlog_archive_lag_seconds",
                 "cairn_jobs_in_flight", "cairn_last_success_timestamp_seconds"):
        if want not in fams or fams[want].type != "gauge":
            die("family %s missing or not a gauge: %r" % (want, fams.get(want)))
    h = fams.get("cairn_backup_job_duration_seconds")
    if not h or h.type != "histogram":
        die("cairn_backup_job_duration_seconds missing or not a histogram: %r" % h)
    q = fams.get("cairn_quiesce_duration_seconds")
    if not q or q.type != "histogram":
        die("cairn_quiesce_duration_seconds missing or not a histogram: %r" % q)
    for h, key, vals in ((h, "result", ("success", "failure")),
                         (q, "method", ("fsfreeze", "postgres", "mysql"))):
        for r in vals:
            b = [(s.labels["le"], s.value) for s in h.samples
                 if s.name.endswith("_bucket") and s.labels[key] == r]
            n = [s.value for s in h.samples if s.name.endswith("_count") and s.labels[key] == r]
            if not b or b[-1][0] != "+Inf" or n != [b[-1][1]] or any(
                    x[1] > y[1] for x, y in zip(b, b[1:])):
                die("histogram %s=%s: buckets %r, count %r" % (key, r, b, n))
            if h is q and n != [0]:
                die("a quiesce was counted although no job quiesced: %s %r" % (r, n))
    if "cairn_backup_failures" not in fams or fams["cairn_backup_failures"].type != "counter":
        die("cairn_backup_failures_total is not a counter")
if not text.endswith("\n"):
    die("the page does not end with a newline")
helps, types, seen, cur = set(), {}, set(), None
name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
for ln, line in enumerate(text.splitlines(), 1):
    m = re.fullmatch(r"# (HELP|TYPE) (%s) (.+)" % name_re, line)
    if m:
        kind, name, rest = m.groups()
        if kind == "HELP":
            if name in helps: die("line %d: second HELP for %s" % (ln, name))
            helps.add(name)
        else:
            if name in types: die("line %d: second TYPE for %s" % (ln, name))
            if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                die("line %d: type %r" % (ln, rest))
            types[name] = rest
        cur = name
        continue
    m = re.fullmatch(r"(%s)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\n]|\\\\[\\\\\"n])*\",?)*\})? (\S+)" % name_re, line)
    if not m:
        die("line %d is not a sample: %r" % (ln, line))
    name, labels, value = m.group(1), m.group(2) or "", m.group(3)
    fam = name
    if types.get(cur) == "histogram" and name in (cur + "_bucket", cur + "_sum", cur + "_count"):
        fam = cur  # a histogram's series carry these suffixes
    if fam != cur or fam not in types or fam not in helps:
        die("line %d: sample of %s without its HELP and TYPE just before" % (ln, name))
    float(value)
    if (name, labels) in seen:
        die("line %d: series %s%s twice" % (ln, name, labels))
    seen.add((name, labels))
EOF

# ---- forgotten logs: the series go ----
sql "DELETE FROM wal_segments; DELETE FROM binlogs;"
gone() { metrics >"$T/m.txt" && ! grep -q '^cairn_wal_archive_lag_seconds{' "$T/m.txt" && ! grep -q '^cairn_binlog_archive_lag_seconds{' "$T/m.txt"; }
wait_for 10 "the archive series to disappear" gone
grep -q '^# TYPE cairn_wal_archive_lag_seconds gauge$' "$T/m.txt" || fail "the WAL lag family lost its TYPE line"

kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=
[ "$rc" -eq 0 ] || fail "the agent exited $rc after SIGTERM"
echo "PASS: agent_metrics (WAL lag $lag1 -> $lag2 s, binlog lag $blag s)"
