#!/usr/bin/env python3
"""Send one SigV4-signed S3 request, correct or deliberately wrong.

For the proxy self-test (tests/e2e/s3_proxy_selftest.sh). The signer here is
written from the SigV4 specification with the standard library only (no
botocore), so that a request the verifying proxy accepts has been signed by
an implementation other than the proxy's own; each --tamper mode breaks one
rule and must be refused.

Prints one line: "STATUS CODE" (CODE is the <Code> of an S3 XML error, or
"-"), or "ERR EXCEPTION after N body bytes" when the connection failed (reset,
timeout, truncated body); with --out the response body is written there.

  --tamper none            correct request
  --tamper body            sign the body's hash, send the body with one byte changed
  --tamper hash-header     send a changed body with its own (unsigned) hash header
  --tamper path            sign one key, send the request to another
  --tamper query-unsorted  sign the query parameters in the order given, unsorted
  --tamper bare-key        sign a bare query key as "key" instead of "key="
  --tamper unsigned-header add an x-amz-meta header that is not in SignedHeaders
  --tamper skew            sign (consistently) with a time an hour ago
  --tamper region          sign for another region
  --tamper secret          sign with a wrong secret
  --tamper md5             a correct signature over a wrong Content-MD5
  --tamper chunk           aws-chunked body with one wrong chunk signature
  --payload hex|unsigned|streaming   how the payload is declared (default hex)
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import re
import sys
from urllib.parse import quote, urlsplit

EMPTY = hashlib.sha256(b"").hexdigest()


def enc(s, safe):
    return quote(s, safe=safe)  # quote keeps A-Za-z0-9 _.-~ and `safe`


def hmac256(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region):
    k = hmac256(("AWS4" + secret).encode("utf-8"), date)
    k = hmac256(k, region)
    k = hmac256(k, "s3")
    return hmac256(k, "aws4_request")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--method", default="GET")
    p.add_argument("--path", required=True, help="/bucket/key (not encoded)")
    p.add_argument("--query", default="", help="k=v&k2 (not encoded; order kept on the wire)")
    p.add_argument("--body", default="", help="request body text")
    p.add_argument("--body-file", help="read the request body from this file")
    p.add_argument("--access-key", default="S3RVER")
    p.add_argument("--secret", default="S3RVER")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--tamper", default="none")
    p.add_argument("--payload", default="hex", choices=["hex", "unsigned", "streaming"])
    p.add_argument("--content-md5", action="store_true", help="send a (correct) Content-MD5")
    p.add_argument("--out", help="write the response body here")
    p.add_argument("--timeout", type=float, default=30, help="socket timeout in seconds (default 30)")
    a = p.parse_args()

    ep = urlsplit(a.endpoint)
    host = ep.netloc
    body = a.body.encode("utf-8")
    if a.body_file:
        with open(a.body_file, "rb") as f:
            body = f.read()
    now = datetime.datetime.now(datetime.timezone.utc)
    if a.tamper == "skew":
        now -= datetime.timedelta(hours=1)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    region = "eu-west-1" if a.tamper == "region" else a.region
    secret = "not-the-secret" if a.tamper == "secret" else a.secret
    scope = f"{date}/{region}/s3/aws4_request"
    key = signing_key(secret, date, region)

    # Query: wire form in the given order; canonical form sorted.
    params = []
    for part in a.query.split("&") if a.query else []:
        k, sep, v = part.partition("=")
        params.append((k, v, bool(sep)))
    wire_query = "&".join(enc(k, "") + ("=" + enc(v, "") if sep else "") for k, v, sep in params)
    canon = [(enc(k, ""), enc(v, "")) for k, v, _ in params]
    if a.tamper != "query-unsorted":
        canon.sort()
    if a.tamper == "bare-key":
        canon_query = "&".join(k if v == "" else f"{k}={v}" for k, v in canon)
    else:
        canon_query = "&".join(f"{k}={v}" for k, v in canon)

    canon_path = enc(a.path, "/")
    wire_path = canon_path + ("x" if a.tamper == "path" else "")

    headers = {"host": host, "x-amz-date": amz_date}
    send_body = body
    if a.payload == "unsigned":
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    elif a.payload == "streaming":
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(len(body))
    else:
        headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    if a.content_md5 or a.tamper == "md5":
        md5 = hashlib.md5(body + (b"!" if a.tamper == "md5" else b"")).digest()
        headers["content-md5"] = base64.b64encode(md5).decode()

    if a.payload == "streaming":
        # Chunk lengths are known up front, so Content-Length is too.
        chunk_size = 64 * 1024
        pieces = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)] + [b""]
        sig_len = 64
        total = sum(len(f"{len(c):x};chunk-signature=") + sig_len + 2 + len(c) + 2 for c in pieces)
        headers["content-length"] = str(total)

    signed_names = sorted(headers)
    canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed_names)
    creq = "\n".join([a.method, canon_path, canon_query, canonical_headers, ";".join(signed_names),
                      headers["x-amz-content-sha256"]])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={a.access_key}/{scope}, "
                                f"SignedHeaders={';'.join(signed_names)}, Signature={signature}")

    if a.payload == "streaming":
        prev = signature
        out = []
        for i, c in enumerate(pieces):
            csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY, hashlib.sha256(c).hexdigest()])
            csig = hmac.new(key, csts.encode(), hashlib.sha256).hexdigest()
            if a.tamper == "chunk" and i == 0:
                csig = "0" * 64
            out.append(f"{len(c):x};chunk-signature={csig}\r\n".encode() + c + b"\r\n")
            prev = csig
        send_body = b"".join(out)

    if a.tamper in ("body", "hash-header"):
        if not send_body:
            sys.exit("--tamper body needs a --body")
        send_body = bytes([send_body[0] ^ 1]) + send_body[1:]
        if a.tamper == "hash-header":
            headers["x-amz-content-sha256"] = hashlib.sha256(send_body).hexdigest()
    if a.tamper == "unsigned-header":
        headers["x-amz-meta-unsigned"] = "sneaky"

    if send_body or a.method in ("PUT", "POST"):
        headers["content-length"] = str(len(send_body))
    target = wire_path + ("?" + wire_query if wire_query else "")
    conn = http.client.HTTPConnection(ep.hostname, ep.port or 80, timeout=a.timeout)
    got = 0
    try:
        conn.putrequest(a.method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(send_body if send_body else None)
        resp = conn.getresponse()
        chunks = []
        while True:
            b = resp.read1(65536)
            if not b:
                break
            chunks.append(b)
            got += len(b)
        length = resp.getheader("Content-Length")
        if a.method != "HEAD" and length is not None and int(length) != got:
            raise http.client.IncompleteRead(b"", int(length) - got)
        data = b"".join(chunks)
    except (OSError, http.client.HTTPException) as e:
        # Transport failures are results too (the fault proxy's self-test).
        print("ERR", type(e).__name__, f"after {got} body bytes")
        return
    m = re.search(rb"<Code>([^<]*)</Code>", data)
    if a.out:
        with open(a.out, "wb") as f:
            f.write(data)
    print(resp.status, m.group(1).decode() if m else "-")

if __name__ == "__main__":
    main()
