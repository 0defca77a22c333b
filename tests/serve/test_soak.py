"""tests/serve/test_soak.py — `tessera serve` under a long mixed load of good and hostile clients (issue 9).

One server (the tiny oracle model unless TESSERA_SOAK_MODEL names another), 1000 requests (10000 from
scripts/soak.sh) from ~12 concurrent clients on 127.0.0.1, in a fixed pseudo-random order:
  greedy / greedy_stream    completions (temperature 0, ignore_eos, fixed max_tokens) whose token ids were
                            computed on the quiet server before the soak, checked exactly
  malformed_json / bad_value / nested_json / too_long_prompt   400 each
  oversize                  a body declared over server.max_body_bytes: 413, then the connection closes
  disconnect_fin / disconnect_rst   a stream hung up after k SSE events or before the answer, FIN or RST
Checks: every answer is what its kind expects and none hangs (a timeout on each request, a bound on the whole
run); afterwards the server is alive, its running/waiting gauges are back at 0, greedy output is unchanged, its
resident memory grew < 5 % from after the warm-up to the end (the warm-up runs the same mix until memory
settles: ASan's quarantine fills over the first ~1000 requests), it printed no sanitizer report and it exits 0
on SIGTERM. A summary (requests by kind, statuses, p50/p99 latency, RSS, duration) is printed and, with
TESSERA_SOAK_SUMMARY, written to that file (markdown, for docs/benchmarks.md).

Environment: TESSERA_SOAK_BIN (default TESSERA_BIN; scripts/test.sh points it at the ASan + UBSan build),
TESSERA_SOAK_REQUESTS (1000), TESSERA_SOAK_SECONDS (180: the bound on the measured part), TESSERA_SOAK_CONCURRENCY
(12), TESSERA_SOAK_SEED (1), TESSERA_SOAK_MODEL, TESSERA_SOAK_LABEL (a name for the binary in the summary),
TESSERA_SOAK_SUMMARY, TESSERA_SOAK_KINDS (a comma-separated subset of the kinds); TESSERA_ORACLES as for the
other serving tests.
"""
import concurrent.futures
import datetime
import json
import os
import platform
import random
import threading
import time

import pytest
import requests

from hostile import connect, hang_up, http_bytes, nested, read_response, rss_kb, wait_idle
from served import BIN, ORACLES, TINY, Served

SOAK_BIN = os.environ.get("TESSERA_SOAK_BIN") or BIN
MODEL = os.environ.get("TESSERA_SOAK_MODEL") or TINY
N_REQUESTS = int(os.environ.get("TESSERA_SOAK_REQUESTS", "1000"))
SECONDS = float(os.environ.get("TESSERA_SOAK_SECONDS", "180"))
CONCURRENCY = int(os.environ.get("TESSERA_SOAK_CONCURRENCY", "12"))
SEED = int(os.environ.get("TESSERA_SOAK_SEED", "1"))
SUMMARY = os.environ.get("TESSERA_SOAK_SUMMARY", "")
LABEL = os.environ.get("TESSERA_SOAK_LABEL", "")

pytestmark = pytest.mark.skipif(not SOAK_BIN or not (ORACLES or os.environ.get("TESSERA_SOAK_MODEL")),
                                reason="TESSERA_BIN / TESSERA_SOAK_BIN and TESSERA_ORACLES are not set")

KINDS = {  # kind: weight
    "greedy": 30, "greedy_stream": 25, "malformed_json": 7, "bad_value": 4, "nested_json": 4,
    "too_long_prompt": 4, "oversize": 5, "disconnect_fin": 10, "disconnect_rst": 11,
}
if os.environ.get("TESSERA_SOAK_KINDS"):  # a comma-separated subset, e.g. to bisect a failure
    KINDS = {k: KINDS[k] for k in os.environ["TESSERA_SOAK_KINDS"].split(",")}
MAX_BODY = 1 << 20          # server.max_body_bytes (the default, set explicitly)
REQUEST_TIMEOUT_S = 60      # one request; a hung server fails it
RSS_GROWTH_LIMIT = 0.05
WARMUP_MIN, WARMUP_BATCH, WARMUP_MAX_BATCHES, WARMUP_SETTLED = 50, 100, 40, 0.01


class Soak:
    def __init__(self, served):
        self.s = served
        self.local = threading.local()
        self.max_len = requests.get(served.url + "/v1/models", timeout=30).json()["data"][0]["max_model_len"]
        rng = random.Random(SEED)
        self.refs = []  # (prompt, max_tokens, token ids), from the quiet server
        for i in range(8):
            n = rng.choice([8, 16, 24])
            prompt = [rng.randrange(1, 256) for _ in range(rng.randint(1, min(40, self.max_len - n - 1)))]
            self.refs.append((prompt, n, None))
        self.refs = [(p, n, self.greedy(p, n)) for p, n, _ in self.refs]
        for p, n, ids in self.refs:
            assert len(ids) == n
            assert self.greedy(p, n, stream=True) == ids, "streamed and whole greedy answers differ"

    def session(self):
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def greedy(self, prompt, n, stream=False):
        body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "return_token_ids": True,
                "stream": stream}
        r = self.session().post(self.s.url + "/v1/completions", json=body, stream=stream, timeout=REQUEST_TIMEOUT_S)
        assert r.status_code == 200, r.text
        if not stream:
            c = r.json()["choices"][0]
            assert c["finish_reason"] == "length", c
            return c["token_ids"]
        events = [line[6:].decode() for line in r.iter_lines() if line.startswith(b"data: ")]
        assert events and events[-1] == "[DONE]", events[-3:]
        chunks = [json.loads(e)["choices"][0] for e in events[:-1]]
        assert chunks[-1]["finish_reason"] == "length", chunks[-1]
        return [i for c in chunks for i in c["token_ids"]]

    def jobs(self, n, seed):
        rng = random.Random(seed)
        kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=n)
        return [(kind, rng.randrange(1 << 30)) for kind in kinds]

    def run_job(self, job):
        """→ (kind, outcome, seconds); outcome is an HTTP status, "hung_up", or "FAIL: why"."""
        kind, seed = job
        rng = random.Random(seed)
        t0 = time.monotonic()
        try:
            outcome = self._run(kind, rng)
        except AssertionError as e:
            outcome = f"FAIL: {e}"
        except (OSError, EOFError, TimeoutError, requests.RequestException, ValueError) as e:
            outcome = f"FAIL: {type(e).__name__}: {e}"
        return kind, outcome, time.monotonic() - t0

    def _post_raw(self, data, expect):
        r = self.session().post(self.s.url + "/v1/completions", data=data,
                                headers={"Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT_S)
        assert r.status_code == expect, f"status {r.status_code}, expected {expect}: {r.text[:300]}"
        assert "error" in r.json(), r.text[:300]
        return r.status_code

    def _run(self, kind, rng):
        prompt, n, ids = rng.choice(self.refs)
        if kind in ("greedy", "greedy_stream"):
            got = self.greedy(prompt, n, stream=kind == "greedy_stream")
            assert got == ids, f"tokens {got}, expected {ids}"
            return 200
        if kind == "malformed_json":
            return self._post_raw(json.dumps({"prompt": prompt, "max_tokens": n})[:-rng.randint(1, 8)].encode(), 400)
        if kind == "bad_value":
            return self._post_raw(json.dumps({"prompt": prompt, "temperature": "hot"}).encode(), 400)
        if kind == "nested_json":
            return self._post_raw(('{"prompt": ' + nested(100000) + ', "max_tokens": 2}').encode(), 400)
        if kind == "too_long_prompt":
            return self._post_raw(json.dumps({"prompt": [1] * (self.max_len + 8), "max_tokens": 2}).encode(), 400)
        if kind == "oversize":
            head = http_bytes("POST", "/v1/completions", b"", headers=[("Content-Type", "application/json"),
                                                                      ("Content-Length", str(MAX_BODY + 4096))],
                              content_length=False)
            with connect(self.s.port, timeout=10) as sock:
                sock.sendall(head + b'{"prompt": "' + b"x" * 4000)
                r = read_response(sock, timeout=REQUEST_TIMEOUT_S, wait_close=10)
            assert r.status == 413, r
            assert r.closed, "the connection stayed open after 413"
            return 413
        if kind in ("disconnect_fin", "disconnect_rst"):
            body = {"prompt": prompt, "max_tokens": rng.randint(40, self.max_len - len(prompt) - 1), "temperature": 0,
                    "ignore_eos": True, "stream": True}
            mode = "before_headers" if rng.random() < 0.2 else "after_events"
            hang_up(self.s.port, body, mode, k=rng.randint(1, 6), rst=kind == "disconnect_rst",
                    timeout=REQUEST_TIMEOUT_S)
            return "hung_up"
        raise AssertionError(f"unknown kind {kind}")

    def run(self, jobs, deadline):
        def guarded(job):
            if time.monotonic() > deadline:
                return job[0], "skipped", 0.0
            return self.run_job(job)

        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(guarded, jobs))


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summarize(results, took, warm, rss0, rss1, label, extra):
    kinds = {}
    for kind, outcome, dt in results:
        kinds.setdefault(kind, []).append((outcome, dt))
    lines = [f"### `tessera serve` soak, {datetime.date.today().isoformat()}: {label}",
             "",
             f"{len(results)} requests in {took:.1f} s ({len(results) / max(took, 1e-9):.1f}/s) from {CONCURRENCY} "
             f"concurrent clients on 127.0.0.1, model {os.path.basename(MODEL.rstrip('/'))}, seed {SEED}, "
             f"{platform.machine()} with {os.cpu_count()} cores; warm-up {warm} requests of the same mix before.",
             "",
             "| kind | requests | outcomes | p50 ms | p99 ms |",
             "|---|---:|---|---:|---:|"]
    all_dt = []
    for kind in list(KINDS) + sorted(set(kinds) - set(KINDS)):
        rows = kinds.get(kind, [])
        if not rows:
            continue
        counts = {}
        for outcome, _ in rows:
            key = outcome if not str(outcome).startswith("FAIL") else "FAIL"
            counts[key] = counts.get(key, 0) + 1
        dts = [dt for _, dt in rows]
        all_dt += dts
        lines.append(f"| {kind} | {len(rows)} | " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))
                     + f" | {1000 * percentile(dts, 0.5):.1f} | {1000 * percentile(dts, 0.99):.1f} |")
    lines.append(f"| all | {len(results)} | | {1000 * percentile(all_dt, 0.5):.1f} | "
                 f"{1000 * percentile(all_dt, 0.99):.1f} |")
    lines += ["", f"RSS after the warm-up {rss0 / 1024:.1f} MiB, at the end {rss1 / 1024:.1f} MiB "
                  f"({100 * (rss1 - rss0) / rss0:+.2f} %)."]
    lines += extra
    return "\n".join(lines) + "\n"


def alive_rss(s, when):
    """The server's resident memory (kB); fails with how it died when it is gone."""
    assert s.proc.poll() is None, f"the server died {when} (exit {s.proc.returncode}):\n{s.digest()}"
    return rss_kb(s.proc.pid)


def test_soak(tmp_path):
    s = Served(MODEL, "--set", "scheduler.max_running=8", "--set", "scheduler.max_waiting=64", "--set",
               f"server.max_body_bytes={MAX_BODY}", bin=SOAK_BIN, ready_timeout=240,
               stderr_path=str(tmp_path / "soak.stderr"))
    label = LABEL or SOAK_BIN
    try:
        soak = Soak(s)
        # warm-up: the same mix until the resident memory settles (bounded in batches and time)
        warm_deadline = time.monotonic() + 120
        warm_jobs = soak.jobs(WARMUP_MIN + WARMUP_BATCH * WARMUP_MAX_BATCHES, SEED + 1)
        warm_results = soak.run(warm_jobs[:WARMUP_MIN], warm_deadline)
        rss_prev = alive_rss(s, "during the warm-up")
        rss_trace = [rss_prev]
        for b in range(WARMUP_MAX_BATCHES):
            if time.monotonic() > warm_deadline:
                break
            batch = warm_jobs[WARMUP_MIN + b * WARMUP_BATCH:WARMUP_MIN + (b + 1) * WARMUP_BATCH]
            warm_results += soak.run(batch, warm_deadline)
            rss = alive_rss(s, "during the warm-up")
            rss_trace.append(rss)
            settled = rss - rss_prev < WARMUP_SETTLED * rss_prev
            rss_prev = rss
            if settled:
                break
        bad = [r for r in warm_results if str(r[1]).startswith("FAIL")]
        assert not bad, f"{len(bad)} warm-up failures, e.g. {bad[:5]}"
        assert wait_idle(s, timeout=30) == (0, 0), "gauges did not return to 0 after the warm-up"
        rss0 = alive_rss(s, "after the warm-up")
        warm = sum(1 for r in warm_results if r[1] != "skipped")

        t0 = time.monotonic()
        results = soak.run(soak.jobs(N_REQUESTS, SEED + 2), t0 + SECONDS)
        took = time.monotonic() - t0

        alive_rss(s, "during the soak")
        gauges = wait_idle(s, timeout=30)
        rss1 = alive_rss(s, "at the end")
        after = [soak.greedy(p, n) == ids for p, n, ids in soak.refs]
        reports = s.sanitizer_reports()
        skipped = sum(1 for r in results if r[1] == "skipped")
        failures = [r for r in results if str(r[1]).startswith("FAIL")]
        extra = ["", f"Warm-up RSS (MiB, every {WARMUP_BATCH} requests): "
                 + " ".join(f"{kb / 1024:.0f}" for kb in rss_trace) + ".",
                 "", f"Afterwards: server alive, running/waiting gauges {gauges}, greedy output unchanged: {all(after)}, "
                 f"sanitizer reports: {'yes' if reports else 'none'}, failures: {len(failures)}, "
                 f"not run (time bound {SECONDS:.0f} s): {skipped}."]
        text = summarize([r for r in results if r[1] != "skipped"], took, warm, rss0, rss1, label, extra)
        print("\n" + text)
        if SUMMARY:
            with open(SUMMARY, "w") as f:
                f.write(text)

        assert not failures, f"{len(failures)} of {len(results)} requests failed, e.g.:\n" + "\n".join(
            f"  {k}: {o}" for k, o, _ in failures[:10])
        assert skipped == 0, f"only {len(results) - skipped} of {len(results)} requests within {SECONDS} s"
        assert gauges == (0, 0), f"running/waiting gauges stayed at {gauges}"
        assert all(after), "greedy output changed after the soak"
        assert not reports, f"sanitizer report:\n{reports}"
        assert rss1 - rss0 < RSS_GROWTH_LIMIT * rss0, f"RSS grew from {rss0} kB to {rss1} kB"
    finally:
        rc = s.stop(timeout=120)
    reports = s.sanitizer_reports()
    assert not reports, f"sanitizer report at shutdown:\n{reports}"
    assert rc == 0, f"exit code {rc}:\n{s.digest()}"
