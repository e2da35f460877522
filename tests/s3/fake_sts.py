#!/usr/bin/env python3
"""A fake AWS STS and container-credentials endpoint, for cairn's credential tests.

Two services on one loopback port:

  POST /  (or GET /?Action=...)  STS AssumeRoleWithWebIdentity, the way AWS
      answers it: an unsigned form request with Action, Version=2011-06-15,
      RoleArn, RoleSessionName, WebIdentityToken and optional DurationSeconds.
      Each parameter is checked; the token must be one of the valid tokens in
      --tokens (re-read at every request, "NAME TOKEN" per line, so a test can
      rotate them). The answer is the real shape:
        <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>
        <Credentials><AccessKeyId/><SecretAccessKey/><SessionToken/><Expiration/>
      or an STS error document:
        <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>
      (InvalidIdentityToken for an unknown token, AccessDenied for another
      role, ValidationError for a bad parameter, or what --control asks for).

  GET /v1/credentials  container credentials (EKS Pod Identity agent, ECS):
      the Authorization header must equal the content of --container-auth
      (re-read at every request); the answer is JSON {AccessKeyId,
      SecretAccessKey, Token, AccountId, Expiration}, or 401 with
      {"code", "message"}.

  PUT /latest/api/token, GET /latest/meta-data/iam/security-credentials/[ROLE]
      the EC2 instance metadata service, IMDSv2 only: a session token first
      (X-aws-ec2-metadata-token-ttl-seconds required), then every GET must
      carry it in X-aws-ec2-metadata-token (401 otherwise); the role is
      "cairn-node-role", its credentials JSON {Code: Success, Type, AccessKeyId,
      SecretAccessKey, Token, Expiration, LastUpdated}.

Every answer hands out fresh credentials: an ASIA... key, a random secret
and session token. Each is appended to --creds-out as one line
"AKID SECRET TOKEN EXPIRY_EPOCH", which tests/s3/sigv4_proxy.py
(--session-creds) reads to accept them, and to answer ExpiredToken once
EXPIRY_EPOCH has passed.

--control FILE (re-read at every request; "key=value" lines) changes the
behaviour while a test runs:
  lifetime=SECONDS   how long the credentials really work (default 3600)
  advertise=SECONDS  the Expiration the answer states (default: lifetime);
                     advertise > lifetime makes credentials expire early,
                     so only an ExpiredToken answer tells the client
  fail=CODE          answer STS requests with this error code (HTTP 400, or
                     503 for ServiceUnavailable)
  fail_count=N       only the next N requests fail (counted since the
                     control file last changed); default: all
  delay=SECONDS      wait before answering

One log line per request (--log): the service, the token's NAME (never the
token), the session name and the outcome, e.g.
  #3 sts role=arn:aws:iam::1:role/r session=cairn-x-1 token=tok2 -> 200 akid=ASIA... life=4
"""

import argparse
import json
import os
import random
import re
import string
import sys
import threading
import time
import uuid
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3httpd  # noqa: E402

SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
RNG = random.SystemRandom()


def rand(alphabet, n):
    return "".join(RNG.choice(alphabet) for _ in range(n))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Config:
    pass


class Handler(s3httpd.Handler):
    cfg = None  # set in main()

    # -- state shared with the test ------------------------------------------
    def control(self):
        cfg = self.cfg
        out = {}
        try:
            st = os.stat(cfg.control)
            with open(cfg.control) as f:
                text = f.read()
        except (OSError, TypeError):
            return out
        for line in text.splitlines():
            k, sep, v = line.strip().partition("=")
            if sep:
                out[k.strip()] = v.strip()
        with cfg.lock:
            stamp = (st.st_mtime_ns, st.st_size, text)
            if stamp != cfg.control_stamp:
                cfg.control_stamp = stamp
                cfg.failed = 0
        return out

    def tokens(self):
        """{token: name} from --tokens."""
        out = {}
        try:
            with open(self.cfg.tokens) as f:
                for line in f:
                    name, sep, tok = line.strip().partition(" ")
                    if sep and tok:
                        out[tok.strip()] = name
        except (OSError, TypeError):
            pass
        return out

    def issue(self, ctl):
        lifetime = float(ctl.get("lifetime", 3600))
        advertise = float(ctl.get("advertise", lifetime))
        now = time.time()
        akid = "ASIA" + rand(string.ascii_uppercase + string.digits, 16)
        secret = rand(string.ascii_letters + string.digits + "+/", 40)
        token = "IQoJb3JpZ2luX2Vj" + rand(string.ascii_letters + string.digits + "+/", 300) + "=="
        with self.cfg.lock:
            with open(self.cfg.creds_out, "a") as f:
                f.write(f"{akid} {secret} {token} {now + lifetime:.3f}\n")
        return akid, secret, token, now + advertise, lifetime

    # -- requests ---------------------------------------------------------
    def handle_request(self):
        cfg = self.cfg
        n = cfg.log.next_id()
        body = self.read_body()
        ctl = self.control()
        if ctl.get("delay"):
            time.sleep(float(ctl["delay"]))
        path = urlsplit(self.path).path
        if self.command == "GET" and path.startswith("/v1/credentials"):
            self.container(n, ctl)
        elif path.startswith("/latest/"):
            self.imds(n, ctl, path)
        else:
            self.sts(n, ctl, body)

    def reply(self, status, ctype, data):
        if isinstance(data, str):
            data = data.encode()
        self.send_raw_head(status, "OK" if status == 200 else "Error",
                           [("Content-Type", ctype), ("Content-Length", str(len(data))),
                            ("x-amzn-RequestId", str(uuid.uuid4())), ("Date", self.date_time_string())])
        self.wfile.write(data)
        self.wfile.flush()

    def sts_error(self, n, status, code, message, what):
        doc = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
               f"<Error><Type>Sender</Type><Code>{escape(code)}</Code>"
               f"<Message>{escape(message)}</Message></Error>"
               f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        self.reply(status, "text/xml", doc)
        self.cfg.log.write(f"#{n} sts {what} -> {status} {code}")

    def sts(self, n, ctl, body):
        cfg = self.cfg
        q = urlsplit(self.path).query
        params = dict(parse_qsl(q, keep_blank_values=True))
        via = "query"
        if self.command == "POST":
            ctype = self.headers.get("Content-Type", "")
            if not ctype.startswith("application/x-www-form-urlencoded"):
                return self.sts_error(n, 400, "InvalidParameterValue",
                                      f"unexpected Content-Type {ctype!r}", "bad-content-type")
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            via = "body"
        tok = params.get("WebIdentityToken", "")
        names = self.tokens()
        what = (f"role={params.get('RoleArn', '')} session={params.get('RoleSessionName', '')} "
                f"token={names.get(tok, 'UNKNOWN' if tok else 'NONE')} via={via}"
                f"{' signed' if self.headers.get('Authorization') else ''}"
                f" duration={params.get('DurationSeconds', '-')}")
        if params.get("Action") != "AssumeRoleWithWebIdentity":
            return self.sts_error(n, 400, "InvalidAction",
                                  f"Could not find operation {params.get('Action')!r}", what)
        if params.get("Version") != "2011-06-15":
            return self.sts_error(n, 400, "InvalidParameterValue", "Version must be 2011-06-15", what)
        if self.headers.get("Authorization"):
            # AssumeRoleWithWebIdentity is an unsigned call: a client that
            # signs it has credentials already, which is a test failure.
            return self.sts_error(n, 400, "InvalidParameterValue",
                                  "AssumeRoleWithWebIdentity must not be signed (test server)", what)
        if not SESSION_NAME.match(params.get("RoleSessionName", "")):
            return self.sts_error(n, 400, "ValidationError",
                                  "1 validation error detected: Value at 'roleSessionName' failed "
                                  "to satisfy constraint: Member must satisfy regular expression "
                                  "pattern: [\\w+=,.@-]*", what)
        dur = params.get("DurationSeconds")
        if dur is not None and (not dur.isdigit() or not 900 <= int(dur) <= 43200):
            return self.sts_error(n, 400, "ValidationError", "DurationSeconds out of range", what)
        fail = ctl.get("fail")
        if fail:
            with cfg.lock:
                limit = int(ctl.get("fail_count", "0") or 0)
                doit = not limit or cfg.failed < limit
                if doit:
                    cfg.failed += 1
            if doit:
                status = 503 if fail == "ServiceUnavailable" else 400
                return self.sts_error(n, status, fail, f"injected {fail} (test control)", what)
        if not tok:
            return self.sts_error(n, 400, "MissingParameter", "WebIdentityToken is required", what)
        if tok not in names:
            # Real STS never quotes the token; neither do we.
            return self.sts_error(n, 400, "InvalidIdentityToken",
                                  "The web identity token that was passed could not be validated "
                                  "by AWS. Get a new identity token from the identity provider and "
                                  "then retry the request.", what)
        if params.get("RoleArn") != cfg.role_arn:
            return self.sts_error(n, 403, "AccessDenied",
                                  "Not authorized to perform sts:AssumeRoleWithWebIdentity", what)
        akid, secret, token, exp, life = self.issue(ctl)
        sess = params["RoleSessionName"]
        doc = ('<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
               "<AssumeRoleWithWebIdentityResult>"
               "<Audience>sts.amazonaws.com</Audience>"
               f"<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:{escape(sess)}</AssumedRoleId>"
               f"<Arn>arn:aws:sts::123456789012:assumed-role/cairn/{escape(sess)}</Arn></AssumedRoleUser>"
               "<Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.example</Provider>"
               "<Credentials>"
               f"<AccessKeyId>{akid}</AccessKeyId>"
               f"<SecretAccessKey>{escape(secret)}</SecretAccessKey>"
               f"<SessionToken>{escape(token)}</SessionToken>"
               f"<Expiration>{iso(exp)}</Expiration>"
               "</Credentials>"
               "<SubjectFromWebIdentityToken>system:serviceaccount:cairn:cairn-agent</SubjectFromWebIdentityToken>"
               "</AssumeRoleWithWebIdentityResult>"
               f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
               "</AssumeRoleWithWebIdentityResponse>")
        self.reply(200, "text/xml", doc)
        cfg.log.write(f"#{n} sts {what} -> 200 akid={akid} life={life:g}")

    def container(self, n, ctl):
        cfg = self.cfg
        try:
            with open(cfg.container_auth) as f:
                want = f.read().strip()
        except (OSError, TypeError):
            want = None
        got = self.headers.get("Authorization")
        what = f"auth={'ok' if got == want else ('NONE' if got is None else 'WRONG')}"
        if want is None or got != want:
            self.reply(401, "application/json",
                       json.dumps({"code": "InvalidAuthorizationToken",
                                   "message": "the Authorization header is not the pod's token"}))
            cfg.log.write(f"#{n} container {what} -> 401")
            return
        akid, secret, token, exp, life = self.issue(ctl)
        self.reply(200, "application/json",
                   json.dumps({"AccessKeyId": akid, "SecretAccessKey": secret, "Token": token,
                               "AccountId": "123456789012", "Expiration": iso(exp)}))
        cfg.log.write(f"#{n} container {what} -> 200 akid={akid} life={life:g}")


    def imds(self, n, ctl, path):
        cfg = self.cfg
        if path == "/latest/api/token":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if self.command != "PUT" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                self.reply(400, "text/plain", "Bad Request")
                cfg.log.write(f"#{n} imds token {self.command} ttl={ttl or 'NONE'} -> 400")
                return
            tok = "AQAEA" + rand(string.ascii_letters + string.digits + "_-", 50) + "=="
            with cfg.lock:
                cfg.imds_tokens.add(tok)
            self.reply(200, "text/plain", tok)
            cfg.log.write(f"#{n} imds token ttl={ttl} -> 200")
            return
        got = self.headers.get("X-aws-ec2-metadata-token")
        with cfg.lock:
            ok = got in cfg.imds_tokens
        what = f"token={'ok' if ok else ('NONE' if got is None else 'WRONG')}"
        if self.command != "GET" or not ok:
            self.reply(401, "text/plain", "Unauthorized")
            cfg.log.write(f"#{n} imds {self.command} {path} {what} -> 401")
            return
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            self.reply(200, "text/plain", "cairn-node-role")
            cfg.log.write(f"#{n} imds role {what} -> 200")
        elif path == base + "cairn-node-role":
            akid, secret, token, exp, life = self.issue(ctl)
            self.reply(200, "text/plain",
                       json.dumps({"Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
                                   "AccessKeyId": akid, "SecretAccessKey": secret, "Token": token,
                                   "Expiration": iso(exp)}, indent=2))
            cfg.log.write(f"#{n} imds creds {what} -> 200 akid={akid} life={life:g}")
        else:
            self.reply(404, "text/plain", "Not Found")
            cfg.log.write(f"#{n} imds GET {path} {what} -> 404")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log")
    p.add_argument("--max-seconds", type=float, default=1800)
    p.add_argument("--role-arn", required=True, help="the only role that may be assumed")
    p.add_argument("--tokens", help='valid web identity tokens, "NAME TOKEN" per line')
    p.add_argument("--container-auth", help="file holding the expected Authorization value")
    p.add_argument("--creds-out", required=True, help="append issued credentials here")
    p.add_argument("--control", help="behaviour file (see the docstring)")
    args = p.parse_args()
    args.upstream = "(none)"
    cfg = Config()
    cfg.role_arn = args.role_arn
    cfg.tokens = args.tokens
    cfg.container_auth = args.container_auth
    cfg.creds_out = args.creds_out
    cfg.control = args.control
    cfg.control_stamp = None
    cfg.failed = 0
    cfg.imds_tokens = set()
    cfg.lock = threading.Lock()
    cfg.log = s3httpd.Log(args.log)
    open(cfg.creds_out, "a").close()
    Handler.cfg = cfg
    s3httpd.serve(args, Handler, "fake_sts")


if __name__ == "__main__":
    main()
