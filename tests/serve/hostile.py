"""tests/serve/hostile.py — raw-socket clients that misbehave, for test_hostile.py and test_soak.py.

Everything talks to 127.0.0.1 only, and every wait is bounded (a socket timeout and an overall deadline).
  - http_bytes / RawResponse / read_response: one HTTP/1.1 request as bytes; a response read off a raw socket
    (Content-Length or chunked), then whether the server closed the connection after it.
  - hang_up: a streaming completion whose client goes away at a chosen point (before the answer, after k SSE
    events, after half-closing its side), with a FIN or a RST.
  - nested: deeply nested JSON text; gauges / wait_idle: the scheduler gauges from /metrics; rss_kb.
"""
import errno
import json
import socket
import struct
import time

from served import metric_sum

HOST = "127.0.0.1"
GAUGES = ("tessera_num_requests_running", "tessera_num_requests_waiting")


def http_bytes(method, path, body=b"", headers=None, version="HTTP/1.1", content_length=True):
    """One request as bytes. headers: a list of (name, value) (repeats kept, order kept)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    head = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    hs = list(headers or [])
    if body and not any(k.lower() == "content-type" for k, _ in hs):
        hs.append(("Content-Type", "application/json"))
    if content_length and (body or method == "POST"):
        hs.append(("Content-Length", str(len(body))))
    head += [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def connect(port, timeout=10.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def reset(sock):
    """Close with a RST (SO_LINGER {on, 0 s}) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def close_fin(sock):
    """Close with a FIN: drain what is already here first (unread data would make the kernel send a RST)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        for _ in range(64):
            if not sock.recv(65536):
                break
    except OSError:
        pass
    sock.close()


class RawResponse:
    def __init__(self, status, reason, version, headers, body, closed):
        self.status, self.reason, self.version = status, reason, version
        self.headers = headers  # {lower-case name: value} (the last one of a repeated name)
        self.body = body
        self.closed = closed    # the server closed the connection (EOF or reset) after the response

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"RawResponse({self.version} {self.status} {self.reason!r}, headers={self.headers}, "
                f"body={self.body[:300]!r}{'...' if len(self.body) > 300 else ''}, closed={self.closed})")


class _Reader:
    def __init__(self, sock, deadline):
        self.sock, self.deadline, self.buf, self.eof = sock, deadline, b"", False

    def more(self):
        if self.eof:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response before the deadline; got %r" % self.buf[:300])
        self.sock.settimeout(min(left, 10.0))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True  # loop again until the deadline
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def until(self, mark):
        while mark not in self.buf:
            if not self.more() and mark not in self.buf:
                return None
        i = self.buf.index(mark) + len(mark)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            if not self.more() and len(self.buf) < n:
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_response(sock, timeout=30.0, wait_close=5.0):
    """Reads one response (raises EOFError if the server closed without one, TimeoutError after `timeout`); then
    waits up to wait_close seconds (0: not at all) to see whether the server closes the connection."""
    r = _Reader(sock, time.monotonic() + timeout)
    head = r.until(b"\r\n\r\n")
    if head is None:
        raise EOFError("connection closed without a response; got %r" % r.buf[:300])
    lines = head.decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = r.until(b"\r\n")
            if size_line is None:
                raise EOFError("connection closed inside a chunked body")
            n = int(size_line.split(b";")[0].strip(), 16)
            if n == 0:
                r.until(b"\r\n")
                break
            body += r.exactly(n)
            r.exactly(2)
    elif "content-length" in headers:
        body = r.exactly(int(headers["content-length"]))
    else:
        while r.more():
            pass
        body, r.buf = r.buf, b""
    closed = r.eof
    if not closed and wait_close > 0:
        r.deadline = time.monotonic() + wait_close
        try:
            while r.more():
                if r.buf:
                    break  # the server sent something more: not closed
        except TimeoutError:
            pass
        closed = r.eof and not r.buf
    return RawResponse(int(status), reason, version, headers, body, closed)


def exchange(port, data, timeout=30.0, wait_close=5.0, shut_wr=False):
    """Send raw bytes on a fresh connection and read one response."""
    with connect(port, timeout=min(timeout, 10.0)) as s:
        s.sendall(data)
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        return read_response(s, timeout=timeout, wait_close=wait_close)


def recv_until_closed(sock, timeout):
    """Reads until the server closes (returns (bytes, True)) or `timeout` passes (returns (bytes, False))."""
    deadline, got = time.monotonic() + timeout, b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got, False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return got, False
        except ConnectionResetError:
            return got, True
        if not data:
            return got, True
        got += data


def hang_up(port, body, mode, k=0, rst=False, timeout=30.0):
    """A streaming request whose client goes away. mode:
      "before_headers": send the request and close at once (maybe before the server has read it);
      "partial": send half of the request and close;
      "after_events": read until k SSE events ("data: ") have arrived, then close;
      "shut_wr": send the request, half-close (SHUT_WR) at once, read whatever comes until the server closes.
    rst: close with a RST instead of a FIN. Returns how many SSE events were seen (-1 when the connection was
    refused or reset before anything arrived). Raises only on a timeout (a hung server)."""
    data = http_bytes("POST", "/v1/completions" if "prompt" in body else "/v1/chat/completions", body)
    try:
        s = connect(port, timeout=min(timeout, 10.0))
    except (ConnectionRefusedError, ConnectionResetError):
        return -1
    seen = 0
    try:
        if mode == "partial":
            s.sendall(data[:max(1, len(data) // 2)])
        else:
            s.sendall(data)
        if mode == "after_events":
            deadline, got = time.monotonic() + timeout, b""
            while got.count(b"data: ") < k:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{k} SSE events did not arrive within {timeout} s; got {got[:300]!r}")
                s.settimeout(min(left, 10.0))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break  # the stream ended before k events: fine
                got += chunk
            seen = got.count(b"data: ")
        elif mode == "shut_wr":
            s.shutdown(socket.SHUT_WR)
            got, closed = recv_until_closed(s, timeout)
            if not closed:
                raise TimeoutError(f"the server kept a half-closed connection open for {timeout} s")
            seen = got.count(b"data: ")
    except (ConnectionResetError, BrokenPipeError):
        seen = -1
    finally:
        (reset if rst else close_fin)(s)
    return seen


def nested(depth, kind="array", inner="1"):
    """JSON text nested `depth` levels: [[[...1...]]] or {"a":{"a":...1...}}."""
    if kind == "array":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


def gauges(served, headers=None):
    m = served.metrics(headers=headers)
    return tuple(metric_sum(m, g) for g in GAUGES)


def wait_idle(served, timeout=20.0, headers=None):
    """Waits until the running and waiting gauges are both 0; returns them (the caller asserts)."""
    deadline = time.monotonic() + timeout
    g = gauges(served, headers)
    while g != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
        g = gauges(served, headers)
    return g


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def is_reset(e):
    return isinstance(e, (ConnectionResetError, BrokenPipeError)) or getattr(e, "errno", None) in (
        errno.ECONNRESET, errno.EPIPE)
