#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the S3 tests.

    client -> fault_proxy.py -> sigv4_proxy.py -> s3rver

Every request is read whole, matched against a list of rules, and either
passed through or answered with a fault. Rules come from --rule (fixed) and
from a control file (--control), which is re-read whenever it changes (write
it to a temp name and rename it over), so a test can change the faults between
steps without restarting anything. Counters start from zero at every reload.

One rule per line ('#' starts a comment):

    FAULT [method=PUT,GET] [match=SUBSTRING] [first=K | every=N | prob=P]
          [after=M] [max=M] [seconds=S] [at=before|headers|body]

  FAULT      pass          forward unchanged (use it to let requests through
                           while counting them)
             slowdown      503 SlowDown (not forwarded)
             error500      500 InternalError (not forwarded)
             error503      503 ServiceUnavailable (not forwarded)
             drop          forward, send the response headers and half the
                           body, then reset the connection (TCP RST); when the
                           response has no body, reset before the headers
             truncate      forward, send the headers with the full
                           Content-Length but only 3/4 of the body, then close
                           (FIN); with no body, announce 1024 bytes, send none
             stall         forward, send the headers (at=headers, default),
                           or headers and half the body (at=body), or nothing
                           without forwarding (at=before), then stay silent for
                           `seconds` (default 10, at most 120) and close
             reset_upload  read half of the request body, then reset the
                           connection (nothing forwarded)
  method=    only these methods (comma-separated)
  match=     only requests whose target (path?query) contains SUBSTRING
  first=K    fire on the first K matching requests (after `after`)
  every=N    fire on every Nth matching request
  prob=P     fire with probability P (random.Random seeded from --seed and the
             rule, so a run is repeatable for the same request order)
  after=M    let the first M matching requests pass
  max=M      fire at most M times (default 1000)

Every rule counts each request its method=/match= filter matches (first=,
every= and after= refer to that count, whatever other rules do); a request
gets the fault of the first rule, in order, that selects it and has fired
fewer than `max` times. Without first/every/prob a rule selects every match. Each request gets one log line: the request, the rule that fired (by
number and text) or "pass", and the upstream status.

The proxy serves loopback only and stops by itself after --max-seconds.
"""

import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3httpd  # noqa: E402

FAULTS = {"pass", "slowdown", "error500", "error503", "drop", "truncate", "stall", "reset_upload"}
MAX_STALL = 120.0


class Rule:
    def __init__(self, text, index, seed):
        self.text = text.strip()
        words = self.text.split()
        self.fault = words[0]
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault '{self.fault}' (one of: {', '.join(sorted(FAULTS))})")
        opts = {}
        for w in words[1:]:
            k, sep, v = w.partition("=")
            if not sep:
                raise ValueError(f"rule '{self.text}': '{w}' is not KEY=VALUE")
            opts[k] = v
        known = {"method", "match", "first", "every", "prob", "after", "max", "seconds", "at"}
        bad = set(opts) - known
        if bad:
            raise ValueError(f"rule '{self.text}': unknown option(s) {', '.join(sorted(bad))}")
        self.methods = {m.upper() for m in opts["method"].split(",")} if "method" in opts else None
        self.match = opts.get("match")
        self.first = int(opts["first"]) if "first" in opts else None
        self.every = int(opts["every"]) if "every" in opts else None
        self.prob = float(opts["prob"]) if "prob" in opts else None
        self.after = int(opts.get("after", 0))
        self.max = int(opts.get("max", 1000))
        self.seconds = min(float(opts.get("seconds", 10)), MAX_STALL)
        self.at = opts.get("at", "headers")
        if self.at not in ("before", "headers", "body"):
            raise ValueError(f"rule '{self.text}': at= must be before, headers or body")
        if self.every is not None and self.every < 1:
            raise ValueError(f"rule '{self.text}': every= must be >= 1")
        self.index = index
        self.rng = random.Random(f"{seed}:{index}:{self.text}")
        self.seen = 0
        self.fired = 0

    def matches(self, method, target):
        if self.methods is not None and method not in self.methods:
            return False
        if self.match is not None and self.match not in target:
            return False
        return True

    def selects(self):
        """Count one matching request; True if this rule picks it."""
        self.seen += 1
        k = self.seen - self.after
        if k <= 0:
            return False
        if self.first is not None:
            return k <= self.first
        if self.every is not None:
            return k % self.every == 0
        if self.prob is not None:
            return self.rng.random() < self.prob
        return True


def parse_rules(lines, seed, start=1):
    rules = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            rules.append(Rule(line, start + len(rules), seed))
    return rules


class Schedule:
    def __init__(self, fixed, control, seed, log):
        self.lock = threading.Lock()
        self.seed = seed
        self.fixed = parse_rules(fixed, seed)
        self.control = control
        self.control_rules = []
        self.control_sig = None
        self.log = log

    def _reload(self):
        if not self.control:
            return
        try:
            st = os.stat(self.control)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            sig = None
        if sig == self.control_sig:
            return
        self.control_sig = sig
        lines = []
        if sig is not None:
            with open(self.control, encoding="utf-8") as f:
                lines = f.read().splitlines()
        try:
            self.control_rules = parse_rules(lines, self.seed, start=len(self.fixed) + 1)
        except ValueError as e:
            self.control_rules = []
            self.log.write(f"{s3httpd.utc_now()} control file {self.control}: {e}; no control rules")
            return
        for r in self.fixed:
            r.seen = r.fired = 0
        self.log.write(f"{s3httpd.utc_now()} rules reloaded: " +
                       ("; ".join(f"[{r.index}] {r.text}" for r in self.fixed + self.control_rules) or "none"))

    def decide(self, method, target):
        """Every rule whose filter matches counts the request; the first
        rule (in order) that selects it, and has not fired `max` times, wins."""
        chosen = None
        with self.lock:
            self._reload()
            for r in self.fixed + self.control_rules:
                if r.matches(method, target) and r.selects() and chosen is None and r.fired < r.max:
                    r.fired += 1
                    chosen = r
        return chosen


class FaultProxy(s3httpd.Handler):
    cfg = None

    def handle_request(self):
        cfg = self.cfg
        n = cfg.log.next_id()
        rule = cfg.schedule.decide(self.command, self.path)
        fault = rule.fault if rule else "pass"
        tag = f"FAULT {fault} [rule {rule.index}: {rule.text}]" if rule and fault != "pass" else "pass"
        head = f"{s3httpd.utc_now()} #{n} {self.command} {self.path}"

        if fault == "reset_upload":
            declared = int(self.headers.get("Content-Length", "0") or 0)
            got = len(self.rfile.read(declared // 2)) if declared > 0 else 0
            cfg.log.write(f"{head} -> {tag} read={got}/{declared}")
            self.reset()
            return

        body = self.read_body()
        if fault in ("slowdown", "error500", "error503"):
            status, code, msg = {
                "slowdown": (503, "SlowDown", "Please reduce your request rate."),
                "error500": (500, "InternalError", "We encountered an internal error. Please try again."),
                "error503": (503, "ServiceUnavailable", "Service is unable to handle request."),
            }[fault]
            self.send_error_xml(status, code, msg)
            cfg.log.write(f"{head} len={len(body)} -> {status} {tag}")
            return
        if fault == "stall" and rule.at == "before":
            cfg.log.write(f"{head} len={len(body)} -> {tag} silent {rule.seconds:g}s before forwarding")
            self.stall_and_close(rule.seconds)
            return

        headers = [(k, v) for k, v in self.header_list()
                   if k.lower() not in s3httpd.HOP_BY_HOP and k.lower() != "content-length"]
        if self.command in ("PUT", "POST") or body:
            headers.append(("Content-Length", str(len(body))))
        try:
            conn, resp = s3httpd.open_upstream(cfg.up_host, cfg.up_port, self.command, self.path,
                                               headers, body, cfg.upstream_timeout)
        except OSError as e:
            self.close_connection = True
            self.send_error_xml(502, "InternalError", f"test fault proxy: upstream unreachable: {e}")
            cfg.log.write(f"{head} -> 502 upstream error {e}")
            return

        if fault == "pass":
            status = resp.status
            sent = s3httpd.relay_response(self, conn, resp)
            cfg.log.write(f"{head} len={len(body)} -> {status} {tag} sent={sent}")
            return

        # Response-side faults: read the upstream response whole first.
        try:
            data = resp.read() if s3httpd.response_has_body(self.command, resp.status) else b""
            rheaders = s3httpd.relay_headers(resp)
        finally:
            conn.close()
        has_body = len(data) > 0
        status = resp.status
        if fault == "drop":
            if not has_body:
                cfg.log.write(f"{head} len={len(body)} -> upstream {status}, {tag}: reset before the headers")
                self.reset()
                return
            half = len(data) // 2
            self.send_head_fixed(status, resp.reason, rheaders, len(data))
            self.wfile.write(data[:half])
            self.wfile.flush()
            time.sleep(0.2)  # let the client read the partial body before the reset
            cfg.log.write(f"{head} len={len(body)} -> upstream {status}, {tag}: sent {half}/{len(data)} then reset")
            self.reset()
        elif fault == "truncate":
            if self.command == "HEAD":
                cfg.log.write(f"{head} -> upstream {status}, {tag}: HEAD, reset before the headers")
                self.reset()
                return
            if has_body:
                keep = len(data) * 3 // 4
                self.send_head_fixed(status, resp.reason, rheaders, len(data))
                self.wfile.write(data[:keep])
                cfg.log.write(f"{head} len={len(body)} -> upstream {status}, {tag}: sent {keep}/{len(data)} then close")
            else:
                self.send_head_fixed(status, resp.reason, rheaders, 1024)
                cfg.log.write(f"{head} len={len(body)} -> upstream {status}, {tag}: announced 1024, sent 0, close")
            self.wfile.flush()
            self.close_quietly()
        elif fault == "stall":
            if has_body:
                self.send_head_fixed(status, resp.reason, rheaders, len(data))
                sent = len(data) // 2 if rule.at == "body" else 0
                self.wfile.write(data[:sent])
                self.wfile.flush()
                what = f"headers and {sent}/{len(data)} bytes"
            else:
                what = "nothing (response has no body)"
            cfg.log.write(f"{head} len={len(body)} -> upstream {status}, {tag}: sent {what}, "
                          f"silent {rule.seconds:g}s")
            self.stall_and_close(rule.seconds)

    def send_head_fixed(self, status, reason, headers, length):
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(length)))
        self.send_raw_head(status, reason, headers)

    def reset(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.server.mark_reset(self.connection)

    def close_quietly(self):
        self.close_connection = True

    def stall_and_close(self, seconds):
        self.close_connection = True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))


class Config:
    pass


def main():
    p = s3httpd.common_args("Fault-injecting proxy for the S3 tests")
    p.add_argument("--rule", action="append", default=[], help="a fault rule (repeatable); see the module doc")
    p.add_argument("--control", help="file of rules, re-read when it changes")
    p.add_argument("--seed", default="1", help="seed for prob= rules (default 1)")
    args = p.parse_args()
    cfg = Config()
    cfg.log = s3httpd.Log(args.log)
    try:
        cfg.schedule = Schedule(args.rule, args.control, args.seed, cfg.log)
    except ValueError as e:
        p.error(str(e))
    cfg.up_host, cfg.up_port = s3httpd.parse_hostport(args.upstream)
    cfg.upstream_timeout = args.upstream_timeout
    FaultProxy.cfg = cfg
    s3httpd.serve(args, FaultProxy, "fault_proxy")


if __name__ == "__main__":
    main()
