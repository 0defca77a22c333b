"""tests/serve/test_rank_death.py — a worker of a TP = 3 cluster under mpirun is killed (SIGKILL).

What a client must see (docs/api.md, "Shutdown"): every request in flight ends with an error — a streaming one
with an SSE error event and then `data: [DONE]`, a non-streaming one with a 500 — naming the dead rank;
`/ready` answers 503 naming it; and the job exits non-zero within 5 s of the death. The coordinator learns of
the death from the worker's lifeline (parallel/lifeline.h), both in the middle of a step and while idle.

Environment (set by ctest): TESSERA_BIN, TESSERA_DEFAULT_MODEL (SmolLM2; the tiny oracle model cannot be split
three ways).
"""
import json
import os
import signal
import threading
import time

import pytest
import requests

from served import BIN, SMOL, Served, assert_openai_error

pytestmark = [pytest.mark.skipif(not BIN, reason="TESSERA_BIN is not set"),
              pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")]

LONG = {"prompt": "Once upon a time", "max_tokens": 1500, "temperature": 0, "ignore_eos": True}


def watch_until_exit(s, t_kill, timeout=10):
    """Polls /ready every 50 ms until the job exits: the statuses seen after the kill, and the exit time."""
    seen = []
    deadline = t_kill + timeout
    while s.proc.poll() is None and time.monotonic() < deadline:
        try:
            r = requests.get(s.url + "/ready", timeout=0.5)
            seen.append((r.status_code, r.text))
        except requests.RequestException:
            seen.append((None, ""))
        time.sleep(0.05)
    try:
        s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except Exception:
        s.proc.kill()
        s.proc.wait(timeout=30)
        raise AssertionError(f"the job did not exit within {timeout} s of the death")
    return seen, time.monotonic() - t_kill


def test_kill_a_worker_mid_stream():
    s = Served(SMOL, "--set", "scheduler.max_running=4", tp=3, ready_timeout=300)
    try:
        out = {}

        def stream():
            r = requests.post(s.url + "/v1/completions", json=dict(LONG, stream=True), stream=True, timeout=60)
            out["stream_status"] = r.status_code
            out["events"] = [line[6:].decode() for line in r.iter_lines() if line.startswith(b"data: ")]

        def plain():
            out["plain"] = requests.post(s.url + "/v1/completions", json=LONG, timeout=60)

        threads = [threading.Thread(target=stream), threading.Thread(target=plain)]
        for t in threads:
            t.start()
        # Both are decoding once the stream has sent a few tokens.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "events" not in out:
            m = requests.get(s.url + "/metrics", timeout=5).text
            if "tessera_num_requests_running" in m and any(
                    line.startswith("tessera_num_requests_running") and float(line.split()[-1]) >= 2
                    for line in m.splitlines()):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        victim = s.rank_pids()[2]
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        seen, exit_after = watch_until_exit(s, t_kill)
        for t in threads:
            t.join(timeout=30)

        assert s.proc.returncode != 0
        assert exit_after < 5.0, exit_after
        # The stream: tokens, then an error event naming the rank, then [DONE].
        assert out["stream_status"] == 200
        events = out["events"]
        assert events[-1] == "[DONE]", events[-3:]
        err = json.loads(events[-2])["error"]
        assert "world rank 2" in err["message"] and "died" in err["message"], err
        assert err["type"] == "server_error"
        assert all("choices" in json.loads(e) for e in events[:-2])
        # The non-streaming request: a 500 naming it.
        e = assert_openai_error(out["plain"], 500)
        assert "world rank 2" in e["message"], e
        # /ready: 503 naming the failure before the job went away (never 200 after the death was noticed).
        fails = [text for code, text in seen if code == 503]
        assert fails and "world rank 2" in fails[0], seen[:5]
        first_503 = next(i for i, (code, _) in enumerate(seen) if code == 503)
        assert all(code != 200 for code, _ in seen[first_503:]), seen
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=30)


def test_kill_a_worker_while_idle():
    s = Served(SMOL, tp=3, ready_timeout=300)
    try:
        r = s.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 0})
        assert r.status_code == 200, r.text
        victim = s.rank_pids()[1]
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        seen, exit_after = watch_until_exit(s, t_kill)
        assert s.proc.returncode != 0
        assert exit_after < 5.0, exit_after
        fails = [text for code, text in seen if code == 503]
        assert fails and "world rank 1 (tensor-parallel rank 0) died" in fails[0], seen[:5]
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=30)
