#!/usr/bin/env python3
"""A verifying S3 front for s3rver: checks every request's SigV4 signature.

s3rver (the S3 test server) only checks that the access key exists. This proxy
sits in front of it and does what AWS S3 does before it stores or returns
anything:

  * recomputes the signature of each request independently with botocore
    (S3SigV4Auth over the request's own method, path, query, signed headers
    and payload hash) and answers 403 SignatureDoesNotMatch on any mismatch,
    403 InvalidAccessKeyId for an unknown key, 403 AccessDenied for anonymous
    requests or x-amz-* headers that were not signed, 403
    RequestTimeTooSkewed beyond 15 minutes, 400 AuthorizationHeaderMalformed
    for a wrong region or credential date;
  * path and query are canonicalized the way S3 does it (decoded, then
    re-encoded with the SigV4 rules, query parameters sorted, a bare key
    written "key="), so a client that signs anything else fails as it would
    against AWS;
  * x-amz-content-sha256: UNSIGNED-PAYLOAD; a hex SHA-256, checked against
    the body (400 XAmzContentSHA256Mismatch); STREAMING-AWS4-HMAC-SHA256-PAYLOAD
    (aws-chunked, every chunk signature checked) and
    STREAMING-UNSIGNED-PAYLOAD-TRAILER (aws-chunked with a checksum trailer),
    both decoded and forwarded as a plain body with the right Content-Length;
  * Content-MD5 and x-amz-checksum-{crc32,crc32c,sha1,sha256} are checked
    against the body (400 BadDigest), and DeleteObjects needs one of them, as
    on AWS (400 InvalidRequest).

Temporary credentials (--session-creds FILE, written by fake_sts.py, one line
"AKID SECRET TOKEN EXPIRY_EPOCH" each, re-read when the file changes): a
request signed with such a key must carry its x-amz-security-token (400
InvalidToken otherwise), and gets 400 ExpiredToken once the request arrived
after EXPIRY_EPOCH, as S3 answers. The verdict says "token=ok".

Accepted requests are forwarded to s3rver with the client's Host and
Authorization headers (s3rver checks only that the key exists; a request
verified with another --cred is forwarded under --upstream-key) and the
response is streamed back. Each request gets one log line: request line, verdict, status;
a signature mismatch also logs the canonical request and string to sign the
proxy computed (they are in the XML error body too, as AWS does).

Usage: sigv4_proxy.py --upstream 127.0.0.1:S3RVER_PORT [--port 0 --port-file F]
                      [--cred AKID:SECRET ...] [--region us-east-1] [--log FILE]
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import os
import sys
import threading
import time
import zlib
from urllib.parse import unquote_to_bytes

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3httpd  # noqa: E402

try:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials
except ImportError:  # pragma: no cover
    sys.exit("sigv4_proxy.py: python3-botocore is required (apt-get install python3-botocore)")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
MAX_SKEW = datetime.timedelta(minutes=15)


def sigv4_encode(raw: bytes, keep_slash: bool) -> str:
    return "".join(chr(c) if c in UNRESERVED or (keep_slash and c == 0x2F) else "%%%02X" % c
                   for c in raw)


def canonical_path(raw_path: str) -> str:
    """S3's canonical URI: the decoded path, re-encoded once, '/' kept."""
    return sigv4_encode(unquote_to_bytes(raw_path), keep_slash=True)


def canonical_query(raw_query: str) -> str:
    """Each parameter decoded and re-encoded (botocore then sorts them)."""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append(sigv4_encode(unquote_to_bytes(k), False) + "=" + sigv4_encode(unquote_to_bytes(v), False))
    return "&".join(pairs)


class ExactHeadersSigner(S3SigV4Auth):
    """botocore's S3 SigV4 signer, told which headers the client signed.

    botocore would otherwise choose the headers itself (all but a few); a
    server must use exactly the SignedHeaders list of the request."""

    def __init__(self, credentials, region, signed_names):
        super().__init__(credentials, "s3", region)
        self._signed_names = signed_names

    def headers_to_sign(self, request):
        hm = HTTPHeaders()
        for name in self._signed_names:
            for v in request.headers.get_all(name) or []:
                hm[name] = v
        return hm


# -- CRC32C (Castagnoli), for x-amz-checksum-crc32c ---------------------------
def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def checksum_b64(algo: str, data: bytes):
    """base64 of the checksum S3 would compute, or None if not supported here."""
    if algo == "crc32":
        return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    if algo == "crc32c":
        return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()
    if algo == "sha1":
        return base64.b64encode(hashlib.sha1(data).digest()).decode()
    if algo == "sha256":
        return base64.b64encode(hashlib.sha256(data).digest()).decode()
    return None


class Reject(Exception):
    def __init__(self, status, code, message, extra=(), log_extra=()):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra, self.log_extra = list(extra), list(log_extra)


def parse_authorization(value):
    algo, _, rest = value.strip().partition(" ")
    if algo == "AWS":
        raise Reject(400, "InvalidRequest", "The authorization mechanism you have provided is not "
                     "supported. Please use AWS4-HMAC-SHA256.")
    if algo != "AWS4-HMAC-SHA256":
        raise Reject(400, "InvalidArgument", f"Unsupported Authorization Type '{algo}'")
    comp = {}
    for item in rest.split(","):
        k, sep, v = item.strip().partition("=")
        if not sep:
            raise Reject(400, "AuthorizationHeaderMalformed",
                         f"The authorization header is malformed; '{item.strip()}' is not KEY=VALUE.")
        comp[k] = v
    for need in ("Credential", "SignedHeaders", "Signature"):
        if need not in comp:
            raise Reject(400, "AuthorizationHeaderMalformed",
                         f"The authorization header is malformed; missing {need}.")
    cred = comp["Credential"].split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        raise Reject(400, "AuthorizationHeaderMalformed",
                     "The authorization header is malformed; the Credential is mal-formed; "
                     "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    signed = comp["SignedHeaders"].split(";")
    if any(not s or s != s.lower() for s in signed):
        raise Reject(400, "AuthorizationHeaderMalformed",
                     "The authorization header is malformed; SignedHeaders must be lowercase, ';'-separated.")
    return {"akid": cred[0], "date": cred[1], "region": cred[2], "service": cred[3],
            "signed": signed, "signature": comp["Signature"]}


class Proxy(s3httpd.Handler):
    cfg = None  # set in main()

    # ------------------------------------------------------------------
    def handle_request(self):
        cfg = self.cfg
        n = cfg.log.next_id()
        self.t_start = time.time()  # S3 checks a token's expiry when the request starts
        raw_body = self.read_body()
        verdict = []
        try:
            body, fwd_headers = self.verify(raw_body, verdict)
        except Reject as r:
            rid = self.send_error_xml(r.status, r.code, r.message, r.extra)
            cfg.log.write(f"{s3httpd.utc_now()} #{n} {self.command} {self.path} len={len(raw_body)} "
                          f"-> {r.status} {r.code} REJECTED {' '.join(verdict)} rid={rid}")
            for k, v in r.log_extra:
                cfg.log.write(f"    {k}: {v!r}")
            return
        try:
            conn, resp = s3httpd.open_upstream(cfg.up_host, cfg.up_port, self.command, self.path,
                                               fwd_headers, body, cfg.upstream_timeout)
        except OSError as e:
            self.close_connection = True
            self.send_error_xml(502, "InternalError", f"test proxy: upstream s3rver unreachable: {e}")
            cfg.log.write(f"{s3httpd.utc_now()} #{n} {self.command} {self.path} -> 502 upstream error {e}")
            return
        status = resp.status
        sent = s3httpd.relay_response(self, conn, resp)
        cfg.log.write(f"{s3httpd.utc_now()} #{n} {self.command} {self.path} len={len(body)} "
                      f"-> {status} ok {' '.join(verdict)} sent={sent}")
        # XML request bodies (CompleteMultipartUpload, DeleteObjects) and
        # s3rver's error answers help whoever debugs a client.
        if self.command == "POST" and body and len(body) <= 8192:
            cfg.log.write(f"    request-body: {body.decode('utf-8', 'backslashreplace')!r}")
        if status >= 400 and getattr(self, "error_body", b""):
            cfg.log.write(f"    s3rver-answer: {self.error_body.decode('utf-8', 'backslashreplace')!r}")

    # ------------------------------------------------------------------
    def verify(self, raw_body, verdict):
        """Check the request as S3 would. Returns (body, headers to forward)."""
        cfg = self.cfg
        h = self.headers
        auth = h.get("Authorization")
        qs_auth = "X-Amz-Algorithm=" in self.path or "X-Amz-Signature=" in self.path
        if auth is None:
            if qs_auth:
                raise Reject(403, "AccessDenied", "Query-string (presigned) authentication is not "
                             "supported by this test proxy.")
            raise Reject(403, "AccessDenied", "Access Denied (anonymous request to a private bucket)")
        a = parse_authorization(auth)
        verdict.append(f"akid={a['akid']}")
        secret = cfg.creds.get(a["akid"])
        session = cfg.sessions.lookup(a["akid"]) if secret is None and cfg.sessions else None
        if session is not None:
            secret, token, expiry = session
            got = h.get("x-amz-security-token")
            if got != token:
                verdict.append("token=WRONG" if got else "token=NONE")
                raise Reject(400 if got else 403, "InvalidToken" if got else "InvalidAccessKeyId",
                             "The provided token is malformed or otherwise invalid." if got else
                             "The AWS Access Key Id you provided does not exist in our records.")
            if self.t_start >= expiry:
                verdict.append("token=EXPIRED")
                raise Reject(400, "ExpiredToken", "The provided token has expired.")
            verdict.append("token=ok")
        if secret is None:
            raise Reject(403, "InvalidAccessKeyId",
                         "The AWS Access Key Id you provided does not exist in our records.",
                         [("AWSAccessKeyId", a["akid"])])
        amz_date = h.get("x-amz-date")
        if amz_date is None:
            raise Reject(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise Reject(403, "AccessDenied", f"Invalid x-amz-date '{amz_date}' (want YYYYMMDDTHHMMSSZ)")
        now = datetime.datetime.now(datetime.timezone.utc)
        if abs(now - t) > MAX_SKEW:
            raise Reject(403, "RequestTimeTooSkewed",
                         "The difference between the request time and the current time is too large.",
                         [("RequestTime", amz_date), ("ServerTime", now.strftime("%Y-%m-%dT%H:%M:%SZ")),
                          ("MaxAllowedSkewMilliseconds", "900000")])
        if a["date"] != amz_date[:8]:
            raise Reject(400, "AuthorizationHeaderMalformed",
                         f"Invalid credential date \"{a['date']}\". This date is not the same as X-Amz-Date: \"{amz_date[:8]}\".")
        if a["region"] != cfg.region:
            raise Reject(400, "AuthorizationHeaderMalformed",
                         f"The authorization header is malformed; the region '{a['region']}' is wrong; "
                         f"expecting '{cfg.region}'", [("Region", cfg.region)])
        if a["service"] != "s3":
            raise Reject(400, "AuthorizationHeaderMalformed",
                         f"The authorization header is malformed; incorrect service \"{a['service']}\". "
                         "This endpoint belongs to \"s3\".")
        payload = h.get("x-amz-content-sha256")
        if payload is None:
            raise Reject(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if "host" not in a["signed"]:
            raise Reject(403, "AccessDenied", "The host header must be signed (SignedHeaders lacks 'host').")
        unsigned = sorted({k.lower() for k in h.keys() if k.lower().startswith("x-amz-")} - set(a["signed"]))
        if unsigned:
            raise Reject(403, "AccessDenied", "There were headers present in the request which were not signed",
                         [("HeadersNotSigned", ", ".join(unsigned))])

        # The signature, recomputed with botocore.
        raw_path, _, raw_query = self.path.partition("?")
        cpath, cquery = canonical_path(raw_path), canonical_query(raw_query)
        host = h.get("Host", "")
        req = AWSRequest(method=self.command, url=f"http://{host}{cpath}" + (f"?{cquery}" if cquery else ""))
        req.headers = HTTPHeaders()
        for k, v in self.header_list():
            if k.lower() in a["signed"]:
                req.headers[k.lower()] = v
        req.context["timestamp"] = amz_date
        signer = ExactHeadersSigner(Credentials(a["akid"], secret), cfg.region, a["signed"])
        creq = signer.canonical_request(req)
        sts = signer.string_to_sign(req, creq)
        expected = signer.signature(sts, req)
        if not hmac.compare_digest(expected, a["signature"]):
            verdict.append("sig=MISMATCH")
            raise Reject(403, "SignatureDoesNotMatch",
                         "The request signature we calculated does not match the signature you "
                         "provided. Check your key and signing method.",
                         [("AWSAccessKeyId", a["akid"]), ("StringToSign", sts),
                          ("SignatureProvided", a["signature"]), ("CanonicalRequest", creq)],
                         [("canonical-request", creq), ("string-to-sign", sts),
                          ("signature-provided", a["signature"]), ("signature-expected", expected)])
        verdict.append("sig=ok")

        # The payload.
        fwd = [(k, v) for k, v in self.header_list() if k.lower() not in s3httpd.HOP_BY_HOP
               and k.lower() != "content-length"]
        if a["akid"] != cfg.upstream_key:
            # s3rver knows one account; it checks the key exists, not the signature.
            fwd = [(k, v.replace(f"Credential={a['akid']}/", f"Credential={cfg.upstream_key}/", 1)
                    if k.lower() == "authorization" else v) for k, v in fwd]
        body = raw_body
        if payload == "UNSIGNED-PAYLOAD":
            verdict.append("payload=unsigned")
        elif len(payload) == 64 and all(c in "0123456789abcdef" for c in payload):
            got = hashlib.sha256(raw_body).hexdigest()
            if got != payload:
                verdict.append("payload=MISMATCH")
                raise Reject(400, "XAmzContentSHA256Mismatch",
                             "The provided 'x-amz-content-sha256' header does not match what was computed.",
                             [("ClientComputedContentSHA256", payload), ("S3ComputedContentSHA256", got)])
            verdict.append("payload=sha256-ok")
        elif payload in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
            body = self.decode_aws_chunked(raw_body, payload, signer, req, a["signature"], verdict)
            fwd = [(k, v) for k, v in fwd if k.lower() not in
                   ("x-amz-decoded-content-length", "x-amz-trailer", "x-amz-content-sha256")]
            enc = [e.strip() for e in h.get("Content-Encoding", "").split(",")
                   if e.strip() and e.strip().lower() != "aws-chunked"]
            fwd = [(k, v) for k, v in fwd if k.lower() != "content-encoding"]
            if enc:
                fwd.append(("Content-Encoding", ", ".join(enc)))
            fwd.append(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
        elif payload.startswith("STREAMING-"):
            raise Reject(501, "NotImplemented", f"x-amz-content-sha256 '{payload}' is not supported by this test proxy")
        else:
            raise Reject(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                         "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.",
                         [("ArgumentName", "x-amz-content-sha256"), ("ArgumentValue", payload)])

        self.verify_checksums(body, verdict)
        if self.command == "POST" and any(p == "delete" or p.startswith("delete=") for p in raw_query.split("&")):
            if h.get("Content-MD5") is None and not any(k.lower().startswith("x-amz-checksum-") for k in h.keys()):
                raise Reject(400, "InvalidRequest",
                             "Missing required header for this request: Content-MD5 (or an x-amz-checksum-* header)")
        if self.command in ("PUT", "POST") or body:
            fwd.append(("Content-Length", str(len(body))))
        return body, fwd

    def verify_checksums(self, body, verdict):
        h = self.headers
        md5 = h.get("Content-MD5")
        if md5 is not None:
            try:
                want = base64.b64decode(md5, validate=True)
            except (binascii.Error, ValueError):
                want = b""
            if len(want) != 16:
                raise Reject(400, "InvalidDigest", "The Content-MD5 you specified was invalid.",
                             [("Content-MD5", md5)])
            if hashlib.md5(body).digest() != want:
                raise Reject(400, "BadDigest", "The Content-MD5 you specified did not match what we received.",
                             [("ExpectedDigest", md5),
                              ("CalculatedDigest", base64.b64encode(hashlib.md5(body).digest()).decode())])
            verdict.append("md5=ok")
        for k, v in self.header_list():
            kl = k.lower()
            if not kl.startswith("x-amz-checksum-") or kl in ("x-amz-checksum-algorithm", "x-amz-checksum-mode",
                                                                "x-amz-checksum-type"):
                continue
            algo = kl[len("x-amz-checksum-"):]
            got = checksum_b64(algo, body)
            if got is None:
                verdict.append(f"{algo}=unverified")
                continue
            if got != v.strip():
                raise Reject(400, "BadDigest",
                             f"The {algo.upper()} you specified did not match the calculated checksum.",
                             [("Expected", v.strip()), ("Calculated", got)])
            verdict.append(f"{algo}=ok")

    def decode_aws_chunked(self, raw, mode, signer, req, seed_signature, verdict):
        """Decode an aws-chunked body; check chunk signatures or the trailer."""
        h = self.headers
        dlen = h.get("x-amz-decoded-content-length")
        if dlen is None:
            raise Reject(411, "MissingContentLength", "You must provide the x-amz-decoded-content-length header.")
        signed = mode == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        scope = signer.credential_scope(req)
        ts = req.context["timestamp"]
        prev = seed_signature
        pos, out, nchunks = 0, [], 0
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                raise Reject(400, "IncompleteBody", "aws-chunked body: missing chunk header")
            head = raw[pos:eol].decode("latin-1")
            pos = eol + 2
            size_s, _, ext = head.partition(";")
            try:
                size = int(size_s, 16)
            except ValueError:
                raise Reject(400, "InvalidChunkSizeError", f"aws-chunked body: bad chunk size '{size_s}'")
            data = raw[pos:pos + size]
            if len(data) != size:
                raise Reject(400, "IncompleteBody", "aws-chunked body: chunk shorter than its size")
            pos += size
            nchunks += 1
            if signed:
                if not ext.startswith("chunk-signature="):
                    raise Reject(403, "SignatureDoesNotMatch", "aws-chunked body: chunk without chunk-signature")
                sig = ext[len("chunk-signature="):]
                sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", ts, scope, prev, EMPTY_SHA256,
                                 hashlib.sha256(data).hexdigest()])
                want = signer.signature(sts, req)
                if not hmac.compare_digest(want, sig):
                    verdict.append(f"chunk{nchunks}=MISMATCH")
                    raise Reject(403, "SignatureDoesNotMatch",
                                 f"The chunk signature of chunk {nchunks} does not match.",
                                 [("StringToSign", sts)], [("chunk-string-to-sign", sts)])
                prev = sig
            if size == 0:
                break
            out.append(data)
            if raw[pos:pos + 2] != b"\r\n":
                raise Reject(400, "IncompleteBody", "aws-chunked body: chunk not followed by CRLF")
            pos += 2
        body = b"".join(out)
        trailers = {}
        rest = raw[pos:]
        for line in rest.split(b"\r\n"):
            if not line:
                continue
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep:
                raise Reject(400, "MalformedTrailerError", f"aws-chunked body: bad trailer line {line[:80]!r}")
            trailers[k.strip().lower()] = v.strip()
        if str(len(body)) != dlen.strip():
            raise Reject(400, "IncompleteBody", f"aws-chunked body decodes to {len(body)} bytes, "
                         f"x-amz-decoded-content-length says {dlen}")
        want_trailer = h.get("x-amz-trailer", "").strip().lower()
        if want_trailer:
            if want_trailer not in trailers:
                raise Reject(400, "MalformedTrailerError", f"the trailer {want_trailer} announced in x-amz-trailer is missing")
            algo = want_trailer[len("x-amz-checksum-"):] if want_trailer.startswith("x-amz-checksum-") else ""
            got = checksum_b64(algo, body)
            if got is None:
                verdict.append(f"trailer-{algo or want_trailer}=unverified")
            elif got != trailers[want_trailer]:
                raise Reject(400, "BadDigest", f"The {algo.upper()} you specified did not match the calculated checksum.")
            else:
                verdict.append(f"trailer-{algo}=ok")
        verdict.append(f"payload=aws-chunked({nchunks} chunks{', signed' if signed else ''})")
        return body


class Config:
    pass


class SessionCreds:
    """Temporary credentials issued by fake_sts.py, re-read when the file changes."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.stamp = None
        self.table = {}

    def lookup(self, akid):
        with self.lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self.stamp:
                    table = {}
                    with open(self.path) as f:
                        for line in f:
                            parts = line.split()
                            if len(parts) == 4:
                                table[parts[0]] = (parts[1], parts[2], float(parts[3]))
                    self.table, self.stamp = table, stamp
            except OSError:
                pass
            return self.table.get(akid)


def main():
    p = s3httpd.common_args(__doc__.split("\n", 1)[0])
    p.add_argument("--cred", action="append", default=[],
                   help="ACCESS_KEY:SECRET accepted (repeatable; default S3RVER:S3RVER)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--session-creds", help="temporary credentials issued by fake_sts.py "
                   "(AKID SECRET TOKEN EXPIRY per line), re-read when it changes")
    p.add_argument("--upstream-key", default="S3RVER",
                   help="access key s3rver knows; requests verified with another --cred are "
                        "forwarded under this one (default S3RVER)")
    args = p.parse_args()
    cfg = Config()
    cfg.creds = {}
    for c in args.cred or ["S3RVER:S3RVER"]:
        k, sep, s = c.partition(":")
        if not sep:
            p.error(f"--cred wants ACCESS_KEY:SECRET, got {c!r}")
        cfg.creds[k] = s
    cfg.region = args.region
    cfg.sessions = SessionCreds(args.session_creds) if args.session_creds else None
    cfg.upstream_key = args.upstream_key
    cfg.up_host, cfg.up_port = s3httpd.parse_hostport(args.upstream)
    cfg.upstream_timeout = args.upstream_timeout
    cfg.log = s3httpd.Log(args.log)
    Proxy.cfg = cfg
    s3httpd.serve(args, Proxy, "sigv4_proxy")


if __name__ == "__main__":
    main()
