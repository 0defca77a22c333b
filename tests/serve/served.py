"""tests/serve/served.py — one `tessera serve` process for the serving tests, and what they read back from it.

Shared by test_serve.py, test_hostile.py and test_soak.py: `Served` (start on a free 127.0.0.1 port, wait for
/ready, SIGTERM to stop; stderr to a pipe or to a file that is checked for sanitizer reports), a strict parser of
the Prometheus text format, SSE payloads, and the OpenAI error shape.

Environment (set by ctest): TESSERA_BIN, TESSERA_ORACLES, TESSERA_DEFAULT_MODEL (optional).
"""
import os
import re
import signal
import socket
import subprocess
import time

import requests

BIN = os.environ.get("TESSERA_BIN", "")
ORACLES = os.environ.get("TESSERA_ORACLES", "")
SMOL = os.environ.get("TESSERA_DEFAULT_MODEL", "")
TINY = os.path.join(ORACLES, "llama_gqa_untied") if ORACLES else ""
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", TESSERA_LOG_LEVEL="warn")

# What AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer print when they find something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehavior",
                   "SUMMARY: AddressSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """One `tessera serve` process; stopped with SIGTERM.

    bin: the tessera binary (default TESSERA_BIN). stderr_path: write the server's stderr there (else a pipe,
    read only when it fails to start). ready_headers: sent with the /ready polls (a server whose /ready needs the
    API key). env: extra environment variables. launcher: a command put in front (`tessera launch --`);
    mpi_args: more mpirun options (tp > 0)."""

    def __init__(self, model, *args, tp=0, ready_timeout=180, bin=None, stderr_path=None, ready_headers=None,
                 env=None, launcher=(), mpi_args=()):
        self.port = free_port()
        self.tp = tp
        self.stderr_path = stderr_path
        cmd = list(launcher) + ([] if tp == 0 else MPIRUN + list(mpi_args) + ["-np", str(tp + 1)]) + [
            bin or BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(self.port), *args]
        if tp:
            cmd += ["--tp", str(tp)]
        self._stderr_file = open(stderr_path, "wb") if stderr_path else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if stderr_path else subprocess.PIPE,
                                     stderr=self._stderr_file or subprocess.PIPE, env=dict(ENV, **(env or {})))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"`{' '.join(cmd)}` exited {self.proc.returncode}: {self.stderr()}"
            try:
                if requests.get(self.url + "/ready", headers=ready_headers, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("server did not become ready")

    def stderr(self, limit=20000):
        """What the server wrote to stderr so far (the file), or all of it once it has exited (the pipe)."""
        if self.stderr_path:
            if self._stderr_file:
                self._stderr_file.flush()
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
        elif self.proc.poll() is not None and self.proc.stderr:
            text = self.proc.stderr.read().decode(errors="replace")
        else:
            return ""
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def digest(self, frames=12, width=240):
        """A short account of stderr for an assertion message: each sanitizer report's first line, its first
        frames and its SUMMARY (lines cut to `width`), or else the last 40 lines."""
        lines = self.stderr(limit=10**9).splitlines()
        out, keep = [], 0
        for line in lines:
            if any(m in line for m in SANITIZER_MARKS) or line.startswith("=="):
                out.append(line[:width])
                keep = 0 if "SUMMARY" in line else frames
            elif keep and line.lstrip().startswith("#"):
                out.append(line[:width])
                keep -= 1
                if keep == 0:
                    out.append("    ...")
        return "\n".join(out if out else [line[:width] for line in lines[-40:]])

    def sanitizer_reports(self):
        """The sanitizer reports in the server's stderr file ("" when clean or when stderr is a pipe)."""
        if not self.stderr_path:
            return ""
        text = self.stderr(limit=10**9)
        return self.digest() if any(m in text for m in SANITIZER_MARKS) else ""

    def post(self, path, body, **kw):
        return requests.post(self.url + path, json=body, timeout=kw.pop("timeout", 300), **kw)

    def metrics(self, headers=None):
        r = requests.get(self.url + "/metrics", headers=headers, timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(r.text)

    def rank_pids(self):
        """Under mpirun: {world rank: pid} of the processes mpirun started (read from their environment); mpirun
        is our child or, under a launcher, its child."""
        def children(pid):
            out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
            return list(map(int, out))
        ranks = {}
        for pid in children(self.proc.pid) + [g for c in children(self.proc.pid) for g in children(c)]:
            try:
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            for var in env:
                if var.startswith(b"OMPI_COMM_WORLD_RANK="):
                    ranks[int(var.split(b"=", 1)[1])] = pid
        return ranks

    def coordinator_pid(self):
        """Under mpirun: the world-rank-0 process (mpirun itself would forward SIGTERM to every rank)."""
        return self.rank_pids().get(0, self.proc.pid)

    def stop(self, timeout=60):
        try:
            if self.proc.poll() is None:
                os.kill(self.coordinator_pid() if self.tp else self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise
        finally:
            if self._stderr_file:
                self._stderr_file.close()
                self._stderr_file = None


# --- a strict little Prometheus text-format (0.0.4) parser --------------------------------------------------
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text):
    """{(name, frozenset(labels)): value}; raises on any line that is not valid exposition."""
    samples, types = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        labels, rest = {}, m.group(3) or ""
        while rest:
            lm = _LABEL.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        value = float(m.group(4))  # accepts +Inf / NaN spellings Python knows
        key = (m.group(1), frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = value
        base = re.sub(r"_(bucket|sum|count|total)$", "", m.group(1))
        assert m.group(1) in types or base in types, f"sample without TYPE: {line!r}"
    return samples


def metric_sum(samples, name, **want):
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, str(x)) in labels for k, x in want.items()))


def sse_events(resp):
    """The data payloads of an SSE response (requests with stream=True)."""
    out = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            out.append(line[6:].decode())
    return out


def assert_openai_error(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and "code" in err
    return err
