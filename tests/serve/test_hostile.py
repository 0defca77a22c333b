"""tests/serve/test_hostile.py — `tessera serve` against clients that misbehave (issue 9, "Reliability").

Raw sockets on 127.0.0.1: many clients hanging up mid-stream at once (FIN, RST, half-close, before the answer,
after k SSE events), deeply nested JSON, huge bad values, API-key schemes and public routes, chat messages
that are not messages, malformed HTTP framing (each with its status, an OpenAI-shaped body and a closed
connection), idle and slow connections (408), and a model file that is not one. After each test the server
must still be alive, answer, have its running/waiting gauges back at 0 and have printed no sanitizer report
(its stderr goes to a file; run against the ASan + UBSan build by scripts/test.sh).

Every loop is bounded in count and time; every socket has a timeout.
Environment (set by ctest): TESSERA_BIN, TESSERA_ORACLES, TESSERA_DEFAULT_MODEL (optional).
"""
import json
import os
import random
import re
import select
import subprocess
import threading
import time

import pytest
import requests

from hostile import connect, exchange, hang_up, http_bytes, nested, read_response, recv_until_closed, wait_idle
from served import BIN, ORACLES, SMOL, TINY, Served, assert_openai_error, free_port, metric_sum, sse_events

pytestmark = pytest.mark.skipif(not BIN, reason="TESSERA_BIN is not set")
needs_smol = pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
needs_tiny = pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")

READY_S = 240  # a loaded 2-core machine with the ASan build: generous, but bounded
SMOL_ID = "SmolLM2-135M-Instruct.Q4_1"
AUTH = {"Authorization": "Bearer sekret"}
NEST_RE = re.compile(r"nest|depth|deep", re.I)


def check_alive(s, headers=None, what="the server"):
    """Alive and answering /health; if not, says how it died (a crash may still be printing its report)."""
    assert s.proc.poll() is None, f"{what} died (exit {s.proc.returncode}):\n{s.digest()}"
    try:
        r = requests.get(s.url + "/health", headers=headers, timeout=30)
    except requests.RequestException as e:
        try:
            s.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        died = f"; it died (exit {s.proc.returncode}):\n{s.digest()}" if s.proc.poll() is not None else ""
        raise AssertionError(f"{what} does not answer /health: {e}{died}") from None
    assert r.status_code == 200, r.text


def check_healthy(s, headers=None, what="the server"):
    """Alive, answering, gauges back to 0, no sanitizer report so far."""
    check_alive(s, headers, what)
    assert wait_idle(s, timeout=20, headers=headers) == (0, 0), "running/waiting gauges did not return to 0"
    reports = s.sanitizer_reports()
    assert not reports, f"sanitizer report in {what}'s stderr:\n{reports}"


def finish(s, headers=None):
    """Checks a server is still fine, then stops it (SIGTERM, exit 0)."""
    try:
        check_healthy(s, headers)
    finally:
        rc = s.stop()
    reports = s.sanitizer_reports()
    assert not reports, f"sanitizer report at shutdown:\n{reports}"
    assert rc == 0, f"exit code {rc}:\n{s.digest()}"


@pytest.fixture
def servers(tmp_path):
    """start(model, *args, **kw) → a Served with its stderr in tmp_path; each is checked and stopped afterwards."""
    started = []

    def start(model, *args, headers=None, **kw):
        s = Served(model, *args, ready_timeout=READY_S, stderr_path=str(tmp_path / f"serve{len(started)}.stderr"),
                   **kw)
        started.append((s, headers))
        return s

    yield start
    failures = []
    for s, headers in started:
        if s.proc.poll() is not None:  # the test has seen it die (or will say so): no second copy of its stderr
            s.stop()
            failures.append(f"{s.url}: the server exited {s.proc.returncode} during the test")
            continue
        try:
            finish(s, headers)
        except (AssertionError, OSError, subprocess.SubprocessError, requests.RequestException) as e:
            failures.append(f"{s.url}: {e}")
    assert not failures, "\n".join(failures)


def _cached(model, tmp_path_factory, *args):
    """A module-wide server that is started again when a test killed it (that test fails on its own)."""
    box = {"n": 0}

    def get():
        s = box.get("s")
        if s is None or s.proc.poll() is not None:
            path = tmp_path_factory.mktemp("serve") / f"serve{box['n']}.stderr"
            box["n"] += 1
            s = box["s"] = Served(model, *args, ready_timeout=READY_S, stderr_path=str(path))
        return s

    return box, get


@pytest.fixture(scope="module")
def _smol_box(tmp_path_factory):
    if not SMOL:
        pytest.skip("TESSERA_DEFAULT_MODEL is not set")
    box, get = _cached(SMOL, tmp_path_factory, "--set", "scheduler.max_running=8")
    yield get
    if box.get("s") is not None and box["s"].proc.poll() is None:
        finish(box["s"])


def _after(s):
    if s.proc.poll() is not None:
        pytest.fail(f"the server exited {s.proc.returncode} during the test", pytrace=False)
    check_healthy(s)


@pytest.fixture
def smol(_smol_box):
    s = _smol_box()
    yield s
    _after(s)


@pytest.fixture(scope="module")
def _tiny_box(tmp_path_factory):
    if not ORACLES:
        pytest.skip("TESSERA_ORACLES is not set")
    box, get = _cached(TINY, tmp_path_factory, "--set", "scheduler.max_running=16", "--set",
                       "scheduler.max_waiting=256")
    yield get
    if box.get("s") is not None and box["s"].proc.poll() is None:
        finish(box["s"])


@pytest.fixture
def tiny(_tiny_box):
    s = _tiny_box()
    yield s
    _after(s)


def greedy_ids(s, prompt, n, stream=False):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
    if not stream:
        r = s.post("/v1/completions", body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["token_ids"]
    r = s.post("/v1/completions", dict(body, stream=True), stream=True, timeout=120)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    return [i for e in events[:-1] for i in json.loads(e)["choices"][0]["token_ids"]]


def complete_stream_raw(port, body, timeout=60):
    """A whole streamed completion over a raw socket → its token ids (asserts [DONE])."""
    with connect(port, timeout=10) as sock:
        sock.sendall(http_bytes("POST", "/v1/completions", body))
        r = read_response(sock, timeout=timeout, wait_close=0)
    assert r.status == 200, r
    events = [line[6:] for line in r.body.decode().split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", r
    return [i for e in events[:-1] for i in json.loads(e)["choices"][0].get("token_ids", [])]


def storm(port, n_threads, rounds, make_body, max_k, budget_s, seed, complete=None):
    """n_threads clients × rounds hang-ups at random points. complete: [(body, ids)] of which a few rounds
    (10 %) stream whole and must get exactly `ids`. Returns (outcomes, errors); bounded by budget_s."""
    outcomes, errors, lock = [], [], threading.Lock()
    deadline = time.monotonic() + budget_s
    modes = ["before_headers", "partial", "after_events", "shut_wr"]

    def worker(t):
        rng = random.Random(seed * 1009 + t)
        for _ in range(rounds):
            if time.monotonic() > deadline:
                return
            if complete and rng.random() < 0.1:
                body, ids = rng.choice(complete)
                try:
                    got = complete_stream_raw(port, body)
                    ok = got == ids
                except (AssertionError, OSError, EOFError, TimeoutError) as e:
                    ok, got = False, repr(e)
                with lock:
                    outcomes.append(("complete", False, 0))
                    if not ok:
                        errors.append(f"a whole stream during the storm got {got}, expected {ids}")
                continue
            mode = rng.choices(modes, weights=[2, 1, 6, 1])[0]
            k, rst = rng.randint(1, max_k), rng.random() < 0.5
            try:
                seen = hang_up(port, make_body(rng), mode, k=k, rst=rst, timeout=30)
                with lock:
                    outcomes.append((mode, rst, seen))
            except (OSError, TimeoutError) as e:
                with lock:
                    errors.append(f"{mode} k={k} rst={rst}: {e!r}")

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()) + 60)
    assert not any(t.is_alive() for t in threads), "storm clients still running after their bound (a hung server?)"
    return outcomes, errors


# --- clients that hang up ------------------------------------------------------------------------------------
@needs_tiny
def test_disconnect_storm_tiny(servers):
    """16 clients × 40 rounds: streaming completions hung up before the answer, mid-request, after k events,
    after a half-close; FIN or RST. The server survives, frees every slot, and greedy output is unchanged."""
    s = servers(TINY, "--set", "scheduler.max_running=16", "--set", "scheduler.max_waiting=256")
    refs = []
    for i in range(4):
        prompt = [(11 * i + 5 * j) % 256 for j in range(3 + 4 * i)]
        body = {"prompt": prompt, "max_tokens": 48, "temperature": 0, "ignore_eos": True, "stream": True,
                "return_token_ids": True}
        refs.append((body, greedy_ids(s, prompt, 48)))
        assert complete_stream_raw(s.port, body) == refs[-1][1]

    def body(rng):
        return {"prompt": [rng.randrange(256) for _ in range(rng.randint(1, 16))], "max_tokens": rng.randint(40, 100),
                "temperature": 0, "ignore_eos": True, "stream": True}

    t0 = time.monotonic()
    outcomes, errors = storm(s.port, 16, 40, body, max_k=8, budget_s=45, seed=9, complete=refs)
    took = time.monotonic() - t0
    check_alive(s, what=f"the server, after {len(outcomes)} hang-ups in {took:.1f} s,")
    assert not errors, errors[:10]
    assert len(outcomes) >= 100, f"only {len(outcomes)} hang-ups in {took:.1f} s"
    assert sum(1 for m, _, seen in outcomes if m == "after_events" and seen > 0) >= 50
    check_healthy(s)
    for b, ids in refs:
        assert greedy_ids(s, b["prompt"], 48) == ids
        assert greedy_ids(s, b["prompt"], 48, stream=True) == ids
    assert metric_sum(s.metrics(), "tessera_request_success_total", finished_reason="abort") >= 1


@needs_tiny
def test_four_clients_closing_after_two_events_repeatedly(servers):
    """The issue's reproduction: four clients that close after 2 SSE chunks, all at once, round after round."""
    s = servers(TINY, "--set", "scheduler.max_running=16")
    rounds, n = 30, 4
    barrier = threading.Barrier(n, timeout=60)
    errors = []
    body = {"prompt": [1, 2, 3], "max_tokens": 100, "temperature": 0, "ignore_eos": True, "stream": True}
    data = http_bytes("POST", "/v1/completions", body)

    def client(t):
        for r in range(rounds):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return
            try:
                sock = connect(s.port, timeout=10)
                sock.sendall(data)
                got, deadline = b"", time.monotonic() + 30
                while got.count(b"data: ") < 2 and time.monotonic() < deadline:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                sock.close()  # unread data in the socket: the kernel sends a RST
            except OSError as e:
                errors.append(f"client {t} round {r}: {e!r}")
                barrier.abort()
                return

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    check_alive(s)
    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in threads)
    check_healthy(s)
    assert greedy_ids(s, [1, 2, 3], 8) == greedy_ids(s, [1, 2, 3], 8, stream=True)


@needs_smol
def test_disconnect_storm_smol_chat(smol):
    """The text path (chat template, incremental detokenizer) under the same hang-ups, on SmolLM2."""
    france = [{"role": "user", "content": "What is the capital of France?"}]
    ref_body = {"messages": france, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    before = smol.post("/v1/chat/completions", ref_body).json()["choices"][0]["message"]["content"]
    questions = ["Hi", "Name a colour.", "What is 2 + 2?", "Tell me a joke.", "Write one word."]

    def body(rng):
        return {"messages": [{"role": "user", "content": rng.choice(questions)}], "max_tokens": rng.randint(16, 40),
                "temperature": 0, "ignore_eos": True, "stream": True}

    outcomes, errors = storm(smol.port, 8, 6, body, max_k=6, budget_s=60, seed=3)
    check_alive(smol)
    assert not errors, errors[:10]
    assert len(outcomes) >= 24
    check_healthy(smol)
    assert smol.post("/v1/chat/completions", ref_body).json()["choices"][0]["message"]["content"] == before


# --- bodies that are JSON but hostile --------------------------------------------------------------------------
DEEP = 100000
NESTED_CASES = {
    "completions_prompt": ("/v1/completions", '{"prompt": ' + nested(DEEP) + ', "max_tokens": 2}'),
    "detokenize_tokens": ("/detokenize", '{"tokens": ' + nested(DEEP) + '}'),
    "chat_unknown_field_objects": ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"}], '
                                   '"max_tokens": 2, "x": ' + nested(DEEP, "object") + '}'),
    "tokenize_top_level_objects": ("/tokenize", nested(DEEP, "object")),
}


@needs_smol
@pytest.mark.parametrize("case", sorted(NESTED_CASES))
def test_deeply_nested_json_is_400(smol, case):
    path, text = NESTED_CASES[case]
    r = requests.post(smol.url + path, data=text.encode(), headers={"Content-Type": "application/json"}, timeout=60)
    err = assert_openai_error(r, 400)
    assert NEST_RE.search(err["message"]), err
    assert "param" in err and len(r.content) < 4096
    assert smol.post("/v1/completions", {"prompt": "hi", "max_tokens": 2}).status_code == 200


HUGE = "x" * (900 << 10)


@needs_smol
@pytest.mark.parametrize("case", ["temperature", "prompt_object", "role", "model"])
def test_huge_bad_value_gives_a_small_error(smol, case):
    """A 900 KB value of the wrong type or value is named, not echoed whole."""
    body, status, param = {
        "temperature": ({"prompt": "hi", "temperature": HUGE}, 400, "temperature"),
        "prompt_object": ({"prompt": {"text": HUGE}}, 400, "prompt"),
        "role": ({"messages": [{"role": HUGE, "content": "hi"}]}, 400, "messages[0].role"),
        "model": ({"model": HUGE, "prompt": "hi"}, 404, None),
    }[case]
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    r = smol.post(path, dict(body, max_tokens=2))
    err = assert_openai_error(r, status)
    assert len(r.content) < 4096, f"{len(r.content)} bytes of error body"
    if param:
        assert err["param"] == param, err


# --- API key ------------------------------------------------------------------------------------------------
@needs_tiny
def test_api_key_scheme_is_case_insensitive_and_every_api_route_needs_it(servers):
    s = servers(TINY, "--set", "server.api_key=sekret")
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = requests.get(s.url + "/v1/models", headers={"Authorization": f"{scheme} sekret"}, timeout=30)
        assert r.status_code == 200, (scheme, r.text)
    for bad in (None, "Bearer wrong", "Bearer sekre", "Bearer sekret2", "Basic sekret", "sekret", "Bearer"):
        r = requests.get(s.url + "/v1/models", headers={"Authorization": bad} if bad else {}, timeout=30)
        assert_openai_error(r, 401)
    body = {"prompt": [1, 2], "max_tokens": 2}
    for method, path, b in (("POST", "/v1/completions", body),
                            ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                            ("POST", "/tokenize", {"prompt": "hi"}), ("POST", "/detokenize", {"tokens": [1, 2]}),
                            ("GET", "/v1/models", None)):
        r = requests.request(method, s.url + path, json=b, timeout=30)
        err = assert_openai_error(r, 401)
        assert err["type"] == "authentication_error", (path, err)
        r = requests.request(method, s.url + path, json=b, headers=AUTH, timeout=30)
        assert r.status_code != 401, (path, r.text)  # the tiny model has no tokenizer: /tokenize answers 400
    assert s.post("/v1/completions", body, headers=AUTH).status_code == 200
    for path in ("/health", "/ready", "/metrics"):
        assert requests.get(s.url + path, timeout=30).status_code == 200, path


@needs_tiny
def test_public_routes_config_makes_metrics_need_the_key(servers, tmp_path):
    """server.public_routes (default [/health, /ready, /metrics]) from a YAML file: [/health] only."""
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("server:\n  api_key: sekret\n  public_routes: [/health]\n")
    s = servers(TINY, "--config", str(cfg), ready_headers=AUTH, headers=AUTH)
    assert requests.get(s.url + "/health", timeout=30).status_code == 200
    for path in ("/metrics", "/ready", "/v1/models"):
        assert_openai_error(requests.get(s.url + path, timeout=30), 401)
        assert requests.get(s.url + path, headers=AUTH, timeout=30).status_code == 200, path


# --- chat messages --------------------------------------------------------------------------------------------
@needs_smol
@pytest.mark.parametrize("messages,param", [
    ([{"role": "user"}], "messages[0].content"),
    ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
    ([{"role": "user\u0000", "content": "hi"}], "messages[0].role"),
    ([{"content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"role": "system", "content": "Be brief."}, {"role": "user"}], "messages[1].content"),
], ids=["no_content", "unknown_role", "role_with_nul", "no_role", "content_not_text", "second_without_content"])
def test_chat_message_validation(smol, messages, param):
    for path in ("/v1/chat/completions", "/tokenize"):
        r = smol.post(path, {"messages": messages, "max_tokens": 1})
        err = assert_openai_error(r, 400)
        assert err["param"] == param, (path, err)


@needs_smol
def test_chat_roles_accepted(smol):
    for role in ("system", "user", "assistant", "developer"):
        msgs = [{"role": role, "content": "Hi"}] + ([] if role == "user" else [{"role": "user", "content": "Hi"}])
        r = smol.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 1, "temperature": 0})
        assert r.status_code == 200, (role, r.text)


# --- HTTP framing -----------------------------------------------------------------------------------------------
_B = b'{"prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0}'
_HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def _chunked(body):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


FRAMING_CASES = {
    "two_content_lengths": (_HEAD + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(_B), len(_B) + 1) + _B,
                            400),
    "content_length_and_chunked": (_HEAD + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(_B) +
                                   _chunked(_B), 400),
    "bad_chunk_size": (_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + _B + b"\r\n0\r\n\r\n", 400),
    "header_without_colon": (_HEAD + b"X-Broken header line\r\nContent-Length: %d\r\n\r\n" % len(_B) + _B, 400),
    "bad_request_line": (b"HELLO\r\n\r\n", 400),
    "http_2_0": (b"POST /v1/completions HTTP/2.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(_B) + _B, 505),
    "header_70kb": (_HEAD + b"X-Big: " + b"a" * (70 << 10) + b"\r\nContent-Length: %d\r\n\r\n" % len(_B) + _B, 431),
    "gzip_chunked": (_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + _chunked(_B), 501),
    "content_encoding_gzip": (_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(_B) + _B, 415),
    "body_over_max_body_bytes": (_HEAD + b"Content-Length: %d\r\n\r\n" % (2 << 20), 413),
}


@needs_tiny
@pytest.mark.parametrize("case", sorted(FRAMING_CASES))
def test_malformed_framing_gets_its_status_then_close(tiny, case):
    data, status = FRAMING_CASES[case]
    try:
        r = exchange(tiny.port, data, timeout=30, wait_close=5)
    except EOFError as e:
        pytest.fail(f"no HTTP answer ({e})")
    assert r.version == "HTTP/1.1" and r.status == status, r
    assert r.headers.get("connection", "").lower() == "close", r
    assert r.headers.get("content-type", "").startswith("application/json"), r
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
    assert "param" in err and "code" in err, err
    assert r.closed, "the connection stayed open after the error"


@needs_tiny
def test_well_framed_variants_still_work(tiny):
    """Controls for the framing checks: chunked bodies, HTTP/1.0, a keep-alive connection carrying two."""
    r = exchange(tiny.port, _HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(_B), wait_close=0)
    assert r.status == 200, r
    r = exchange(tiny.port, b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(_B) + _B, wait_close=5)
    assert r.status == 200 and r.closed, r
    with connect(tiny.port) as sock:
        for _ in range(2):
            sock.sendall(_HEAD + b"Content-Length: %d\r\n\r\n" % len(_B) + _B)
            r = read_response(sock, wait_close=0)
            assert r.status == 200 and r.headers.get("connection", "").lower() == "keep-alive", r


# --- idle and slow connections ----------------------------------------------------------------------------------
@needs_tiny
def test_idle_timeout_408_and_silent_close(servers):
    s = servers(TINY, "--set", "server.idle_timeout_s=1")

    def expect_408(sock, t0):
        r = read_response(sock, timeout=6, wait_close=3)
        took = time.monotonic() - t0
        assert r.status == 408 and r.version == "HTTP/1.1", r
        assert r.headers.get("connection", "").lower() == "close", r
        assert r.json()["error"]["message"], r
        assert r.closed and took < 3.5, (took, r)

    # half a request head, then nothing
    with connect(s.port) as sock:
        t0 = time.monotonic()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        expect_408(sock, t0)
    # the whole head and part of the body, then nothing
    with connect(s.port) as sock:
        t0 = time.monotonic()
        sock.sendall(_HEAD + b"Content-Length: %d\r\n\r\n" % len(_B) + _B[:10])
        expect_408(sock, t0)
    # a head dribbled one byte every 0.2 s (slowloris): bytes keep coming, the request never arrives whole
    with connect(s.port) as sock:
        t0 = time.monotonic()
        head = _HEAD + b"X-Slow: " + b"s" * 200
        for b in head:
            if select.select([sock], [], [], 0.2)[0] or time.monotonic() - t0 > 4:
                break
            try:
                sock.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
        expect_408(sock, t0)
    # a keep-alive connection that answered once and then carries nothing: closed without a byte
    with connect(s.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock, wait_close=0).status == 200
        time.sleep(0.3)  # well within the timeout: the connection still carries a second request
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock, wait_close=0).status == 200
        t0 = time.monotonic()
        got, closed = recv_until_closed(sock, 6)
        took = time.monotonic() - t0
        assert closed and got == b"" and 0.5 < took < 3.5, (closed, got[:200], took)
    # a connection that never sends anything: closed without a byte
    with connect(s.port) as sock:
        t0 = time.monotonic()
        got, closed = recv_until_closed(sock, 6)
        assert closed and got == b"" and time.monotonic() - t0 < 3.5, (closed, got[:200])


# --- a model file that is not one -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.gguf", "x.bin"])
def test_model_file_that_is_not_gguf(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is a text file, not a model\n")
    env = dict(os.environ, TESSERA_LOG_LEVEL="warn", OMP_NUM_THREADS="1")
    runs = {
        "generate": [BIN, "generate", "--model", str(path), "--prompt-ids", "1,2", "--max-tokens", "2"],
        "serve": [BIN, "serve", "--model", str(path), "--host", "127.0.0.1", "--port", str(free_port())],
    }
    for what, cmd in runs.items():
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 2, (what, p.returncode, p.stderr)
        assert name in p.stderr and "not a GGUF file" in p.stderr, (what, p.stderr)
        assert "invalid JSON" not in p.stderr, (what, p.stderr)
