"""tests/serve/test_operations.py — what an operator relies on: the drain on every way a cluster is told to stop
(SIGTERM to `tessera launch`, to mpirun, SIGUSR1), the json log format, and a /metrics that promtool accepts with
the process and HTTP-duration families in it.

Environment (set by ctest): TESSERA_BIN, TESSERA_ORACLES, TESSERA_DEFAULT_MODEL (optional).
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from served import BIN, ENV, ORACLES, SMOL, TINY, Served, assert_openai_error, free_port, metric_sum

needs_smol = pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
needs_tiny = pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")


def open_stream(s, max_tokens):
    """A streamed completion that has sent its first chunk: (response, line iterator, token ids so far)."""
    r = requests.post(s.url + "/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": max_tokens,
                                                       "temperature": 0, "ignore_eos": True, "stream": True,
                                                       "return_token_ids": True}, stream=True, timeout=120)
    assert r.status_code == 200, r.text
    lines = r.iter_lines()
    first = next(line for line in lines if line.startswith(b"data: "))
    return r, lines, json.loads(first[6:])["choices"][0]["token_ids"]


def finish_stream(lines, ids):
    """Reads the rest of a stream: every token and its [DONE], else the assertion says what was cut off."""
    rest = [line[6:].decode() for line in lines if line.startswith(b"data: ")]
    assert rest and rest[-1] == "[DONE]", f"the stream ended without [DONE] after {len(ids) + len(rest)} chunks"
    finish = None
    for e in rest[:-1]:
        c = json.loads(e)["choices"][0]
        ids = ids + c["token_ids"]
        finish = c["finish_reason"] or finish
    return ids, finish


def assert_draining(s):
    late = s.post("/v1/completions", {"prompt": [1], "max_tokens": 2})
    assert_openai_error(late, 503)
    assert "Retry-After" in late.headers
    assert requests.get(s.url + "/ready", timeout=10).status_code == 503


@contextlib.contextmanager
def serving(*args, **kw):
    """A Served that is killed if the test leaves it running (a drain test ends it itself)."""
    s = Served(*args, **kw)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def drain_and_check(s, send_signal, max_tokens, exit_timeout):
    """One stream in flight, then send_signal(): new requests 503, /ready 503, the stream ends complete; returns
    the exit code and the seconds from the signal to the exit."""
    _, lines, ids = open_stream(s, max_tokens)
    send_signal()
    t0 = time.monotonic()
    time.sleep(0.3)
    assert_draining(s)
    ids, finish = finish_stream(lines, ids)
    assert len(ids) == max_tokens and finish == "length"
    code = s.proc.wait(timeout=exit_timeout)
    return code, time.monotonic() - t0


@needs_smol
def test_sigterm_to_launch_drains_an_mpirun_cluster_and_exits_0(tmp_path):
    # What a pod gets: the kubelet's SIGTERM goes to PID 1, `tessera launch`, which forwards SIGUSR1 through mpirun
    log = tmp_path / "serve.log"
    with serving(SMOL, "--set", "server.drain_timeout_s=60", tp=1, launcher=[BIN, "launch", "--"],
                 stderr_path=str(log), env={"TESSERA_LOG_LEVEL": "info"}) as s:
        code, elapsed = drain_and_check(s, lambda: s.proc.send_signal(signal.SIGTERM), 150, 60)
    assert code == 0, log.read_text()[-3000:]
    assert elapsed < 60
    text = log.read_text()
    assert "odls_base_sigkill_timeout 1 (the default)" in text  # mpirun's default cannot drain: said at start
    assert "drained: exiting" in text


@needs_smol
def test_sigterm_to_mpirun_drains_from_its_kill_sequence(tmp_path):
    # Open MPI 4.1's mpirun answers SIGTERM with SIGCONT to every rank, SIGTERM after odls_base_sigkill_timeout,
    # SIGKILL after as long again, and exits 1 whatever the ranks did (docs/deploy.md): the coordinator drains
    # from the SIGCONT, so the stream completes and nothing is SIGKILLed when the timeout covers the drain.
    log = tmp_path / "serve.log"
    with serving(SMOL, "--set", "server.drain_timeout_s=12", tp=1,
                 mpi_args=["--mca", "odls_base_sigkill_timeout", "11"], stderr_path=str(log),
                 env={"TESSERA_LOG_LEVEL": "info"}) as s:
        code, _ = drain_and_check(s, lambda: s.proc.send_signal(signal.SIGTERM), 150, 60)
    text = log.read_text()
    assert "mpirun is ending the job: draining" in text, text[-3000:]
    assert "drained: exiting" in text
    assert "odls_base_sigkill_timeout" not in text.split("mpirun is ending")[0]  # 11 s covers a 12 s drain
    assert "signal 9" not in text and "second signal" not in text
    assert code in (0, 1), text[-3000:]  # 1: Open MPI's own exit code after its kill sequence


@needs_smol
def test_sigusr1_drains_like_sigterm():
    with serving(SMOL, "--set", "server.drain_timeout_s=60") as s:
        assert drain_and_check(s, lambda: s.proc.send_signal(signal.SIGUSR1), 150, 60)[0] == 0


@needs_tiny
def test_json_log_format_is_one_object_per_line_with_the_access_fields(tmp_path):
    log = tmp_path / "serve.log"
    s = Served(TINY, "--set", "logging.format=json", "--set", "logging.stats_interval_s=0", stderr_path=str(log),
               env={"TESSERA_LOG_LEVEL": "info"})
    try:
        done = s.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "ignore_eos": True},
                      headers={"X-Request-Id": "client-7"})
        assert done.status_code == 200
        assert requests.get(s.url + "/no/such\"route").status_code == 404  # a quote in the path stays inside a string
    finally:
        assert s.stop() == 0
    records = []
    for line in log.read_text().splitlines():
        rec = json.loads(line)  # every line, not only the access log
        assert set(rec) >= {"time", "level"} and rec["time"].endswith("Z"), rec
        records.append(rec)
    assert any(r.get("msg", "").startswith("serving ") for r in records)
    access = [r for r in records if r.get("event") == "access"]
    comp = [r for r in access if r["path"] == "/v1/completions"]
    assert len(comp) == 1, access
    c = comp[0]
    assert c["status"] == 200 and c["method"] == "POST" and c["id"] == done.json()["id"]
    assert c["request_id"] == "client-7" == done.headers["X-Request-Id"]
    assert c["prompt_tokens"] == 3 and c["completion_tokens"] == 5 and c["cached_tokens"] == 0
    assert 0 <= c["ttft_ms"] <= c["latency_ms"]
    assert all(r["request_id"] for r in access)
    assert any(r["status"] == 404 and r["path"] in ('/no/such"route', "/no/such%22route") for r in access), access


@needs_tiny
def test_metrics_pass_promtool_with_process_and_http_duration_families():
    s = Served(TINY)
    try:
        for _ in range(3):
            assert s.post("/v1/completions", {"prompt": [1, 2], "max_tokens": 3}).status_code == 200
        assert requests.get(s.url + "/health").status_code == 200
        text = requests.get(s.url + "/metrics", timeout=10).text
        m = s.metrics()
    finally:
        assert s.stop() == 0
    assert metric_sum(m, "tessera_http_request_duration_seconds_count", route="/v1/completions") == 3
    assert metric_sum(m, "tessera_http_request_duration_seconds_count", route="/health") == 1
    assert metric_sum(m, "tessera_http_request_duration_seconds_sum", route="/v1/completions") > 0
    assert metric_sum(m, "process_resident_memory_bytes") > 1e6
    assert metric_sum(m, "process_open_fds") >= 3
    assert metric_sum(m, "process_max_fds") >= metric_sum(m, "process_open_fds")
    assert metric_sum(m, "process_cpu_seconds_total") > 0
    assert abs(metric_sum(m, "process_start_time_seconds") - time.time()) < 3600
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-deps.sh installs it): the lint did not run")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.skipif(not BIN, reason="TESSERA_BIN is not set")
def test_metrics_answer_while_the_model_loads(tmp_path):
    # A model "file" that is a FIFO: every open() of it blocks until a writer comes, so the load stays in
    # progress as long as the test likes. Meanwhile /health is 503 (what a startupProbe waits on) and /metrics
    # answers 200 with tessera_ready 0, so the scraper's `up` stays 1 during a long load.
    fifo = tmp_path / "slow.gguf"
    os.mkfifo(fifo)
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--model", str(fifo), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(url + "/health", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the port was not bound before the model load"
                time.sleep(0.1)
        assert health.status_code == 503 and "loading" in health.text
        m = requests.get(url + "/metrics", timeout=5)
        assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'tessera_ready{model_name="slow"} 0' in m.text and "process_resident_memory_bytes" in m.text
        # Let every blocked open() see an empty file: the load fails, naming the file, exit 2.
        while proc.poll() is None and time.monotonic() < deadline + 30:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader at this moment
                pass
            time.sleep(0.1)
        assert proc.wait(timeout=30) == 2
        assert str(fifo) in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
