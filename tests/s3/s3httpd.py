"""HTTP plumbing shared by the S3 test proxies (sigv4_proxy.py, fault_proxy.py).

Python standard library only. A threaded HTTP/1.1 server whose handlers read
a whole request, decide what to do with it, and either answer themselves (an
S3 XML error) or forward it to an upstream server and relay the response.

The proxies serve loopback test traffic only: they bind 127.0.0.1, and each
stops by itself after --max-seconds.
"""

import argparse
import http.client
import http.server
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from xml.sax.saxutils import escape

# Headers that describe one hop, not the request; never forwarded as they are.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "expect", "proxy-authenticate", "proxy-authorization",
}

MAX_BODY = 1 << 30  # refuse request bodies above 1 GiB (tests stay far below)


class HTTPError(Exception):
    """A malformed request at the HTTP level: answered with 400, then close."""


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Log:
    """Line-oriented log file shared by the handler threads."""

    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace") if path else None
        self._n = 0

    def next_id(self):
        with self._lock:
            self._n += 1
            return self._n

    def write(self, line):
        if self._f is None:
            return
        with self._lock:
            self._f.write(line.rstrip("\n") + "\n")


def read_exact(rfile, n):
    chunks = []
    left = n
    while left > 0:
        b = rfile.read(min(left, 1 << 20))
        if not b:
            raise HTTPError(f"request body ended after {n - left} of {n} bytes")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_http_chunked(rfile):
    """Decode a Transfer-Encoding: chunked request body (HTTP framing)."""
    out = []
    total = 0
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise HTTPError("bad chunk size line")
        size_s = line.split(b";", 1)[0].strip()
        try:
            size = int(size_s, 16)
        except ValueError:
            raise HTTPError(f"bad chunk size {size_s!r}")
        if size == 0:
            # Trailer section, up to an empty line.
            while True:
                t = rfile.readline(8192)
                if t in (b"\r\n", b"\n", b""):
                    break
            return b"".join(out)
        total += size
        if total > MAX_BODY:
            raise HTTPError("request body too large")
        out.append(read_exact(rfile, size))
        if rfile.readline(16) not in (b"\r\n", b"\n"):
            raise HTTPError("chunk not followed by CRLF")


def xml_error(code, message, resource="", extra=(), request_id=None):
    rid = request_id or uuid.uuid4().hex[:16].upper()
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
             f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    for tag, val in extra:
        parts.append(f"<{tag}>{escape(str(val))}</{tag}>")
    parts.append(f"<Resource>{escape(resource)}</Resource>")
    parts.append(f"<RequestId>{rid}</RequestId></Error>\n")
    return "".join(parts).encode("utf-8"), rid


def set_linger_reset(sock):
    """Make close() send a TCP RST instead of a FIN (a connection reset)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._reset_lock = threading.Lock()
        self._reset = set()

    def mark_reset(self, sock):
        """Close this connection with a TCP RST (no FIN first)."""
        set_linger_reset(sock)
        with self._reset_lock:
            self._reset.add(sock)

    def shutdown_request(self, request):
        with self._reset_lock:
            reset = request in self._reset
            self._reset.discard(request)
        if reset:
            self.close_request(request)  # no shutdown(SHUT_WR): RST, not FIN
        else:
            super().shutdown_request(request)


class Handler(http.server.BaseHTTPRequestHandler):
    """Base handler: every method goes to self.handle_request()."""

    protocol_version = "HTTP/1.1"
    server_version = "cairn-s3-test"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this

    def log_message(self, fmt, *args):  # quiet: we keep our own log
        pass

    def _dispatch(self):
        try:
            self.handle_request()
        except HTTPError as e:
            self.close_connection = True
            try:
                self.send_error_xml(400, "IncompleteBody", str(e))
            except OSError:
                pass
        except (ConnectionError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _dispatch

    # -- request -----------------------------------------------------------
    def header_list(self):
        """The request headers as (name, value) pairs, duplicates kept."""
        return list(self.headers.items())

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            return read_http_chunked(self.rfile)
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        try:
            n = int(n)
        except ValueError:
            raise HTTPError(f"bad Content-Length {n!r}")
        if n < 0 or n > MAX_BODY:
            raise HTTPError(f"Content-Length {n} out of range")
        return read_exact(self.rfile, n)

    # -- response ----------------------------------------------------------
    def send_raw_head(self, status, reason, headers):
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        for k, v in headers:
            lines.append(f"{k}: {v}\r\n")
        lines.append("\r\n")
        self.wfile.write("".join(lines).encode("latin-1", "replace"))

    def send_error_xml(self, status, code, message, extra=(), extra_headers=()):
        resource = self.path.split("?", 1)[0]
        body, rid = xml_error(code, message, resource, extra)
        if self.command == "HEAD":
            body = b""
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                   ("x-amz-request-id", rid), ("Date", self.date_time_string()),
                   ("Server", "cairn-s3-test")]
        headers += list(extra_headers)
        if self.close_connection:
            headers.append(("Connection", "close"))
        self.send_raw_head(status, http.client.responses.get(status, "Error"), headers)
        if body:
            self.wfile.write(body)
        self.wfile.flush()
        return rid


def encode_target(target):
    """http.client wants ASCII: percent-encode any other byte of the target."""
    if target.isascii():
        return target
    raw = target.encode("latin-1", "replace")
    return "".join(chr(c) if c < 0x80 else "%%%02X" % c for c in raw)


def open_upstream(host, port, method, target, headers, body, timeout):
    """Send one request upstream; return (connection, response)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.putrequest(method, encode_target(target), skip_host=True, skip_accept_encoding=True)
    for k, v in headers:
        conn.putheader(k, v)
    conn.endheaders(body if body else None)
    return conn, conn.getresponse()


def response_has_body(method, status):
    return not (method == "HEAD" or 100 <= status < 200 or status in (204, 304))


def relay_headers(resp):
    """Upstream response headers without hop-by-hop ones."""
    return [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]


def relay_response(handler, conn, resp):
    """Stream an upstream response to the client. Returns bytes of body sent."""
    headers = relay_headers(resp)
    has_body = response_has_body(handler.command, resp.status)
    length = resp.getheader("Content-Length")
    sent = 0
    # The body of an error answer, kept (up to 4 KiB) for the caller's log.
    handler.error_body = b""
    capture = resp.status >= 400
    try:
        if has_body and length is None:
            data = resp.read()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
            if handler.close_connection:
                headers.append(("Connection", "close"))
            handler.send_raw_head(resp.status, resp.reason, headers)
            handler.wfile.write(data)
            sent = len(data)
            if capture:
                handler.error_body = data[:4096]
        else:
            if handler.close_connection:
                headers.append(("Connection", "close"))
            handler.send_raw_head(resp.status, resp.reason, headers)
            if has_body:
                want = int(length)
                while sent < want:
                    b = resp.read(min(65536, want - sent))
                    if not b:
                        # Upstream cut the body short: so must we.
                        handler.close_connection = True
                        break
                    handler.wfile.write(b)
                    if capture and len(handler.error_body) < 4096:
                        handler.error_body += b[:4096 - len(handler.error_body)]
                    sent += len(b)
        handler.wfile.flush()
    finally:
        conn.close()
    return sent


def common_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--listen", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    p.add_argument("--port-file", help="write the bound port to this file once listening")
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward requests to")
    p.add_argument("--log", help="append one line per request to this file")
    p.add_argument("--max-seconds", type=float, default=1800,
                   help="stop by itself after this many seconds (default 1800)")
    p.add_argument("--upstream-timeout", type=float, default=120)
    return p


def serve(args, handler_cls, name):
    server = Server((args.listen, args.port), handler_cls)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"{name}: listening on {args.listen}:{port}, upstream {args.upstream}", file=sys.stderr, flush=True)

    def stop_later():
        time.sleep(args.max_seconds)
        print(f"{name}: --max-seconds {args.max_seconds:g} reached, stopping", file=sys.stderr, flush=True)
        os._exit(0)

    threading.Thread(target=stop_later, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)
