"""tests/serve/test_serve.py — `tessera serve` through real sockets on 127.0.0.1.

Raw HTTP (http.client / requests) and the official `openai` client against SmolLM2 (the default model) and a
tiny oracle model (llama_gqa_untied: vocab 256, no tokenizer, token-id prompts); every error status with an
OpenAI-shaped body; 64 concurrent streams that must equal their solo greedy tokens; a disconnect that frees
its slot; /metrics parsed strictly and its counters added up; SIGTERM drain; TP = 3 under mpirun.

Environment (set by ctest): TESSERA_BIN, TESSERA_ORACLES, TESSERA_DEFAULT_MODEL (optional). `Served` and the
parsers live in served.py (shared with test_hostile.py and test_soak.py).
"""
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from served import BIN, ORACLES, SMOL, TINY, Served, assert_openai_error, metric_sum, sse_events

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]

pytestmark = pytest.mark.skipif(not BIN, reason="TESSERA_BIN is not set")
needs_smol = pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
needs_tiny = pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")


@pytest.fixture(scope="module")
def smol():
    if not SMOL:
        pytest.skip("TESSERA_DEFAULT_MODEL is not set")
    s = Served(SMOL, "--set", "scheduler.max_running=8")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def tiny():
    if not ORACLES:
        pytest.skip("TESSERA_ORACLES is not set")
    s = Served(TINY, "--set", "scheduler.max_running=16", "--set",
               "scheduler.max_waiting=128")
    yield s
    assert s.stop() == 0


# --- SmolLM2 -------------------------------------------------------------------------------------------------
@needs_smol
def test_health_ready_models(smol):
    assert requests.get(smol.url + "/health").status_code == 200
    assert requests.get(smol.url + "/ready").json()["status"] == "ready"
    models = requests.get(smol.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "SmolLM2-135M-Instruct.Q4_1"


@needs_smol
def test_tokenize_detokenize(smol):
    r = smol.post("/tokenize", {"prompt": "Hello world"}).json()
    assert r["count"] == len(r["tokens"]) > 0
    assert smol.post("/detokenize", {"tokens": r["tokens"]}).json()["prompt"] == "Hello world"
    chat = smol.post("/tokenize", {"messages": FRANCE}).json()
    assert chat["count"] > r["count"]


@needs_smol
def test_chat_france_raw_http(smol):
    conn = http.client.HTTPConnection("127.0.0.1", smol.port, timeout=120)
    body = json.dumps({"model": "SmolLM2-135M-Instruct.Q4_1", "messages": FRANCE, "max_tokens": 32,
                       "temperature": 0, "some_unknown_field": None})  # null: as if absent
    ids = set()
    for _ in range(2):  # keep-alive: two requests on one connection
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        ids.add(resp.getheader("X-Request-Id"))
        j = json.loads(resp.read())
        assert j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-")
        choice = j["choices"][0]
        assert choice["message"]["role"] == "assistant" and "Paris" in choice["message"]["content"]
        assert choice["finish_reason"] in ("stop", "length")
        u = j["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["completion_tokens"] > 0
    conn.close()
    assert len(ids) == 2 and all(i and i.startswith("req-") for i in ids)  # one made per request


@needs_smol
def test_fields_not_honoured_are_refused_by_name_and_request_ids_come_back(smol):
    chat = {"messages": FRANCE, "max_tokens": 4}
    for extra, param in [({"frobnicate": 1}, "frobnicate"), ({"tools": [{"type": "function"}]}, "tools"),
                         ({"response_format": {"type": "json_object"}}, "response_format"),
                         ({"best_of": 3}, "best_of"), ({"use_beam_search": True}, "use_beam_search")]:
        r = smol.post("/v1/chat/completions", dict(chat, **extra), headers={"X-Request-Id": "mine-1"})
        assert_openai_error(r, 400)
        assert r.json()["error"]["param"] == param, r.text
        assert r.headers["X-Request-Id"] == "mine-1"
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    r = smol.post("/v1/chat/completions", {"messages": image})
    assert_openai_error(r, 400)
    assert r.json()["error"]["param"] == "messages[0].content[0]"
    r = smol.post("/v1/completions", {"prompt": "a", "suffix": "b", "max_tokens": 2})
    assert r.json()["error"]["param"] == "suffix"
    # An id that could split a header or a log line is replaced by one of the server's.
    r = requests.get(smol.url + "/health", headers={"X-Request-Id": "a b\"c"})
    assert r.headers["X-Request-Id"].startswith("req-")


@needs_smol
def test_prefix_cache_reports_cached_tokens_and_changes_nothing(smol):
    system = ("You are a meticulous assistant for a railway company. Answer in one short sentence, name the "
              "station when you know it, and never invent timetables. ") * 3
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Where is Paris Nord?"}],
            "max_tokens": 12, "temperature": 0}
    first = smol.post("/v1/chat/completions", body).json()
    before = metric_sum(smol.metrics(), "tessera_prefix_cache_hits_total")
    again = smol.post("/v1/chat/completions", body).json()
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    prompt = again["usage"]["prompt_tokens"]
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    # every whole block of 16 but the one holding the last prompt token
    assert cached == (prompt - 1) // 16 * 16 and cached > 0, again["usage"]
    assert metric_sum(smol.metrics(), "tessera_prefix_cache_hits_total") - before == cached
    other = dict(body, messages=[body["messages"][0], {"role": "user", "content": "And Lyon Part-Dieu?"}])
    assert smol.post("/v1/chat/completions", other).json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


@needs_smol
def test_openai_client_chat_and_completions(smol):
    import openai
    client = openai.OpenAI(base_url=smol.url + "/v1", api_key="unused")
    r = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=FRANCE, max_tokens=32,
                                       temperature=0)
    assert "Paris" in r.choices[0].message.content
    stream = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=FRANCE, max_tokens=32,
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(parts) == r.choices[0].message.content
    assert usage.completion_tokens == r.usage.completion_tokens and finish == r.choices[0].finish_reason
    c = client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt="The capital of France is",
                                  max_tokens=8, temperature=0, logprobs=2)
    assert c.choices[0].text and len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens
    assert all(len(t) == 2 for t in c.choices[0].logprobs.top_logprobs)
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt="The capital of France is", max_tokens=8, temperature=0,
        stream=True) if ch.choices)
    assert streamed == c.choices[0].text


@needs_smol
def test_batched_prompts_n_echo_and_stop_strings(smol):
    base = {"max_tokens": 24, "temperature": 0, "ignore_eos": True}
    full = smol.post("/v1/completions", dict(base, prompt="Once upon a time")).json()["choices"][0]["text"]
    words = full.split()
    assert len(words) > 4
    stop = " " + words[2] + " " + words[3][:2]  # spans token boundaries
    assert stop in full
    for stream in (False, True):
        r = smol.post("/v1/completions", dict(base, prompt="Once upon a time", stop=[stop, "zzzz"], stream=stream),
                      stream=stream)
        if stream:
            events = sse_events(r)
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            text = "".join(c["choices"][0]["text"] for c in chunks)
            finish = chunks[-1]["choices"][0]["finish_reason"]
        else:
            text, finish = r.json()["choices"][0]["text"], r.json()["choices"][0]["finish_reason"]
        assert text == full[:full.index(stop)] and finish == "stop"
    # two prompts (a string and token ids), n = 2, echo: four choices in prompt-major order
    ids = smol.post("/tokenize", {"prompt": "Once upon a time"}).json()["tokens"]
    j = smol.post("/v1/completions", dict(base, prompt=["Once upon a time", ids], n=2, echo=True)).json()
    assert [c["index"] for c in j["choices"]] == [0, 1, 2, 3]
    for c in j["choices"]:
        assert c["text"] == "Once upon a time" + full  # greedy: every sequence is the same
    assert j["usage"]["prompt_tokens"] == 2 * len(ids)


def finish_counts(samples):
    return {reason: metric_sum(samples, "tessera_request_success_total", finished_reason=reason)
            for reason in ("stop", "length", "abort", "error")}


@needs_smol
def test_stop_strings_count_as_stop_and_each_sibling_stops_on_its_own(smol):
    # One sequence that ends on a stop string: finish_reason and the metric both say "stop" (it was counted as
    # "abort": the stream cancelled the request and the scheduler finished it so).
    before = finish_counts(smol.metrics())
    r = smol.post("/v1/chat/completions", {"messages": FRANCE, "max_tokens": 32, "temperature": 0, "stop": ["Paris"]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    after = finish_counts(smol.metrics())
    assert {k: after[k] - before[k] for k in after} == {"stop": 1, "length": 0, "abort": 0, "error": 0}

    # n = 4 sampled siblings with a stop string they reach at different points: each stops on its own, its slot
    # is freed in that step, so the tokens generated are exactly the tokens returned (the stopped siblings went
    # on decoding, uncounted in usage, until the last one stopped).
    m0 = smol.metrics()
    body = {"prompt": "Write three short sentences about cats.", "n": 4, "temperature": 0.9, "seed": 11,
            "max_tokens": 48, "stop": ["."], "ignore_eos": True}
    j = smol.post("/v1/completions", body).json()
    m1 = smol.metrics()
    reasons = [c["finish_reason"] for c in j["choices"]]
    assert "stop" in reasons, reasons
    generated = metric_sum(m1, "tessera_generation_tokens_total") - metric_sum(m0, "tessera_generation_tokens_total")
    assert generated == j["usage"]["completion_tokens"], (generated, j["usage"], reasons)
    c0, c1 = finish_counts(m0), finish_counts(m1)
    assert {k: c1[k] - c0[k] for k in c1} == {"stop": reasons.count("stop"), "length": reasons.count("length"),
                                                "abort": 0, "error": 0}
    for c in j["choices"]:
        assert "." not in c["text"]


@needs_smol
def test_stream_has_one_chunk_per_token(smol):
    """Every sampled token leaves in its own chunk (vLLM's benchmark counts chunks as tokens and times them).
    Plain ASCII tokens carry their own text; a token whose text is held back (here: the first tokens of a
    Japanese character, which SmolLM2 spells with two or three byte tokens) gets a chunk with text ""."""
    n = 16
    for prompt, ascii_only in (("Once upon a time", True), ("日本の首都は", False)):
        base = {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}
        whole = smol.post("/v1/completions", dict(base, return_token_ids=True)).json()["choices"][0]
        ids = whole["token_ids"]
        assert len(ids) == n
        r = smol.post("/v1/completions", dict(base, stream=True, stream_options={"include_usage": True}), stream=True)
        events = sse_events(r)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == n
        # the token chunks, then one chunk with finish_reason "length" (and the text held back at the end)
        *tokens, fin = [c["choices"][0] for c in chunks[:-1]]
        assert fin["finish_reason"] == "length"
        assert len(tokens) == n, [t["text"] for t in tokens]
        assert all(t["finish_reason"] is None for t in tokens)
        texts = [t["text"] for t in tokens]
        assert "".join(texts) + fin["text"] == whole["text"]
        if ascii_only:
            assert whole["text"].isascii()
            assert texts == [smol.post("/detokenize", {"tokens": [i]}).json()["prompt"] for i in ids]
        else:
            assert "" in texts and len(whole["text"]) < n  # the prompt does make the server hold text back


def greedy_france(smol, max_tokens=4, **fields):
    body = dict({"messages": FRANCE, "max_tokens": max_tokens, "temperature": 0, "return_token_ids": True}, **fields)
    r = smol.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


@needs_smol
def test_logit_bias_moves_the_greedy_first_token(smol):
    first = greedy_france(smol)["token_ids"][0]
    biased = greedy_france(smol, logit_bias={str(first): -100})
    assert biased["token_ids"][0] != first, biased
    # A positive bias on another token makes it the greedy first token.
    other = greedy_france(smol, logit_bias={"28": 100})
    assert other["token_ids"][0] == 28, other
    err = assert_openai_error(smol.post("/v1/chat/completions", {"messages": FRANCE, "logit_bias": {"49152": 1}}), 400)
    assert err["param"] == "logit_bias"


@needs_smol
def test_stop_token_ids_end_a_stream_with_finish_reason_stop(smol):
    ids = greedy_france(smol, max_tokens=8, ignore_eos=True)["token_ids"]
    stop_id = ids[2]
    assert stop_id not in ids[:2]
    body = {"messages": FRANCE, "max_tokens": 8, "temperature": 0, "ignore_eos": True, "stop_token_ids": [stop_id],
            "stream": True, "return_token_ids": True, "stream_options": {"include_usage": True}}
    events = sse_events(smol.post("/v1/chat/completions", body, stream=True))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    assert choices[-1]["finish_reason"] == "stop", choices
    streamed = [t for c in choices for t in c.get("token_ids") or []]
    assert streamed == ids[:3]  # the stop token is the last token, even with ignore_eos
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    # Its text is left out, like EOS's: the content is that of the two tokens before it.
    text = "".join(c["delta"].get("content") or "" for c in choices)
    assert text == smol.post("/detokenize", {"tokens": ids[:2]}).json()["prompt"]


@needs_smol
def test_min_tokens_holds_back_every_stop(smol):
    ids = greedy_france(smol, max_tokens=8, ignore_eos=True)["token_ids"]
    first_text = smol.post("/detokenize", {"tokens": ids[:1]}).json()["prompt"]
    # Without min_tokens, each of these ends the answer at its first token.
    for stop in ({"stop_token_ids": [ids[0]]}, {"stop": [first_text]}):
        c = greedy_france(smol, max_tokens=8, **stop)
        assert c["finish_reason"] == "stop" and len(c["token_ids"]) == 1, (stop, c)
        # With min_tokens 5 nothing stops it before 5 tokens: the stop id cannot be sampled before then, and the
        # stop string is not looked for in the first 5 tokens' text.
        held = greedy_france(smol, max_tokens=8, min_tokens=5, **stop)
        assert len(held["token_ids"]) >= 5, (stop, held)
        if "stop_token_ids" in stop:
            assert ids[0] not in held["token_ids"][:5], held
    err = assert_openai_error(smol.post("/v1/chat/completions", {"messages": FRANCE, "max_tokens": 4,
                                                                  "min_tokens": 5}), 400)
    assert err["param"] == "min_tokens"


@needs_smol
def test_error_statuses_are_openai_shaped(smol):
    s = requests.Session()
    r = s.post(smol.url + "/v1/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    assert "malformed JSON" in assert_openai_error(r, 400)["message"]
    err = assert_openai_error(smol.post("/v1/completions", {"prompt": "hi", "temperature": "hot"}), 400)
    assert err["param"] == "temperature" and "temperature" in err["message"]
    assert assert_openai_error(smol.post("/v1/completions", {"prompt": "hi", "max_tokens": 10**6}), 400)["param"] == \
        "max_tokens"
    assert assert_openai_error(smol.post("/v1/completions", {"prompt": "hi", "n": 99}), 400)["param"] == "n"
    assert assert_openai_error(smol.post("/v1/chat/completions", {"messages": "hi"}), 400)["param"] == "messages"
    assert assert_openai_error(smol.post("/v1/completions", {"prompt": [1, -5]}), 400)["param"] == "prompt"
    long = assert_openai_error(smol.post("/v1/completions", {"prompt": [1] * 3000}), 400)["message"]
    assert "3000" in long and "2048" in long
    assert assert_openai_error(smol.post("/v1/nope", {}), 404)["type"]
    assert assert_openai_error(smol.post("/v1/completions", {"model": "gpt-9", "prompt": "hi"}), 404)["code"] == \
        "model_not_found"
    r = requests.get(smol.url + "/v1/completions")
    assert_openai_error(r, 405)
    assert r.headers["Allow"] == "POST"
    r = requests.post(smol.url + "/v1/completions", data=b"x" * (2 << 20), headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413)
    # the server is still fine after all of that
    assert smol.post("/v1/completions", {"prompt": "hi", "max_tokens": 2}).status_code == 200


@needs_smol
def test_mpirun_tp3_answers_the_france_question():
    s = Served(SMOL, tp=3, ready_timeout=300)
    try:
        r = s.post("/v1/chat/completions", {"messages": FRANCE, "max_tokens": 32, "temperature": 0})
        assert r.status_code == 200, r.text
        assert "Paris" in r.json()["choices"][0]["message"]["content"]
    finally:
        assert s.stop() == 0


@needs_smol
def test_disconnect_mid_stream_frees_the_slot(smol):
    body = json.dumps({"prompt": [1, 2, 3], "max_tokens": 1000, "temperature": 0, "ignore_eos": True,
                       "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", smol.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                 str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 2:
        got += sock.recv(4096)
    running = metric_sum(smol.metrics(), "tessera_num_requests_running")
    assert running >= 1
    sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if metric_sum(smol.metrics(), "tessera_num_requests_running") == 0:
            break
        time.sleep(0.1)
    m = smol.metrics()
    assert metric_sum(m, "tessera_num_requests_running") == 0
    assert metric_sum(m, "tessera_request_success_total", finished_reason="abort") >= 1


@needs_smol
def test_sigterm_drains_in_flight_requests_and_exits_0():
    s = Served(SMOL, "--set", "server.drain_timeout_s=60")
    auth = {}
    try:
        # SIGTERM: the in-flight stream finishes, new requests get 503, readiness is false, exit 0
        r = requests.post(s.url + "/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 60, "temperature": 0,
                                                           "ignore_eos": True, "stream": True, "return_token_ids": True},
                          headers=auth, stream=True, timeout=120)
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        assert first
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        late = s.post("/v1/completions", {"prompt": [1], "max_tokens": 2}, headers=auth)
        assert_openai_error(late, 503)
        assert "Retry-After" in late.headers
        assert requests.get(s.url + "/ready").status_code == 503
        rest = [line[6:].decode() for line in lines if line.startswith(b"data: ")]
        assert rest[-1] == "[DONE]"
        ids = json.loads(first[6:])["choices"][0]["token_ids"]
        for e in rest[:-1]:
            ids += json.loads(e)["choices"][0]["token_ids"]
        assert len(ids) == 60
        assert s.proc.wait(timeout=60) == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


# --- the tiny oracle model ---------------------------------------------------------------------------------
def tiny_stream(url, prompt, max_tokens):
    r = requests.post(url + "/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                                                     "ignore_eos": True, "stream": True}, stream=True, timeout=300)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    ids, finish = [], None
    for e in events[:-1]:
        c = json.loads(e)["choices"][0]
        ids += c["token_ids"]
        finish = c["finish_reason"] or finish
    assert finish == "length"
    return ids


@needs_tiny
def test_tiny_64_concurrent_streams_equal_their_solo_tokens(tiny):
    ref = json.load(open(os.path.join(TINY, "reference.json")))
    case = ref["cases"][0]
    n_first = len(case["greedy_ids"])
    first = tiny.post("/v1/completions", {"prompt": case["prompt_ids"], "max_tokens": n_first, "temperature": 0,
                                          "ignore_eos": True}).json()["choices"][0]
    assert first["token_ids"] == case["greedy_ids"]  # what Hugging Face transformers generates
    jobs = []
    for i in range(64):
        prompt = [(7 * i + 3 * k) % 256 for k in range(1 + (i * 37) % 70)]
        jobs.append((prompt, 4 + (i * 13) % 40))
    solo = [tiny_stream(tiny.url, p, m) for p, m in jobs]
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        together = list(pool.map(lambda j: tiny_stream(tiny.url, *j), jobs))
    for (p, m), a, b in zip(jobs, solo, together):
        assert len(a) == m
        assert a == b, f"prompt of {len(p)} tokens"


@needs_tiny
def test_print_config_shows_every_override_and_reads_back(tmp_path):
    args = ["--set", "scheduler.block_size=32", "--set", "server.api_key=sekrit", "--port", "9123"]
    out = subprocess.run([BIN, "serve", "--print-config", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "  block_size: 32\n" in out.stdout and "  port: 9123\n" in out.stdout
    assert '  api_key: "***"' in out.stdout and "sekrit" not in out.stdout  # the secret stays out of logs
    printed = tmp_path / "printed.yaml"
    printed.write_text(out.stdout)
    again = subprocess.run([BIN, "serve", "--print-config", "--config", str(printed)], capture_output=True,
                           text=True, timeout=30)
    assert again.returncode == 0, again.stderr
    assert again.stdout == out.stdout  # the printed file is a config that gives itself back


@needs_tiny
def test_stats_line_while_busy(tmp_path):
    log = tmp_path / "serve.log"
    s = Served(TINY, "--set", "logging.stats_interval_s=0.2", stderr_path=str(log),
               env={"TESSERA_LOG_LEVEL": "info"})
    try:
        r = s.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 100, "temperature": 0, "ignore_eos": True})
        assert r.status_code == 200
        time.sleep(0.6)  # at least one interval after the request
    finally:
        assert s.stop() == 0
    lines = [line for line in log.read_text().splitlines() if "stats: running" in line]
    assert lines, log.read_text()[-2000:]
    assert "generation" in lines[0] and "KV cache" in lines[0] and "tok/s" in lines[0]


@needs_tiny
def test_access_log_has_one_line_per_request(tmp_path):
    log = tmp_path / "serve.log"
    s = Served(TINY, "--set", "logging.stats_interval_s=0", stderr_path=str(log), env={"TESSERA_LOG_LEVEL": "info"})
    try:
        done = s.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "ignore_eos": True})
        assert done.status_code == 200
        streamed = s.post("/v1/completions",
                          {"prompt": [4, 5], "max_tokens": 4, "ignore_eos": True, "stream": True})
        assert streamed.status_code == 200
        assert requests.get(s.url + "/no/such/route").status_code == 404
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:  # a control byte in the path
            raw.sendall(b"GET /evil\x01path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while raw.recv(4096):
                pass
    finally:
        assert s.stop() == 0
    lines = [line for line in log.read_text().splitlines() if "access: " in line]
    completions = [line for line in lines if "POST /v1/completions 200" in line]
    assert len(completions) == 2, lines
    assert f"id={done.json()['id']} prompt_tokens=3 cached_tokens=0 completion_tokens=5 ttft_ms=" in completions[0]
    assert "prompt_tokens=2" in completions[1] and "completion_tokens=4" in completions[1]
    assert any("GET /no/such/route 404" in line for line in lines), lines
    assert any("access: - - 400" in line for line in lines), lines  # refused by the HTTP layer, logged as such
    assert all("\x01" not in line for line in lines)


@needs_tiny
def test_version_route_and_flag_agree():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("tessera "), out
    s = Served(TINY, "--set", "server.api_key=sekrit")
    try:
        r = requests.get(s.url + "/version")  # public by default, like the probes
        assert r.status_code == 200
        v = r.json()
        assert out.stdout.strip() == f"tessera {v['version']} (commit {v['commit']})"
    finally:
        assert s.stop() == 0


@needs_tiny
def test_a_busy_port_fails_before_the_model_loads_and_a_bad_one_names_the_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        t0 = time.monotonic()
        proc = subprocess.run([BIN, "serve", "--model", TINY, "--host", "127.0.0.1", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert elapsed < 5, elapsed  # the load of any model would come after
    bad = subprocess.run([BIN, "serve", "--model", TINY, "--port", "70000"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0 and "--port" in bad.stderr and "70000" in bad.stderr, bad.stderr


def test_tiny_api_key_queue_full_and_metrics_add_up():
    s = Served(TINY, "--set", "server.api_key=sekrit", "--set", "scheduler.max_running=1", "--set",
               "scheduler.max_waiting=1")
    try:
        auth = {"Authorization": "Bearer sekrit"}
        assert_openai_error(s.post("/v1/completions", {"prompt": [1, 2]}), 401)
        assert_openai_error(s.post("/v1/completions", {"prompt": [1, 2]}, headers={"Authorization": "Bearer no"}), 401)
        assert requests.get(s.url + "/v1/models").status_code == 401
        assert requests.get(s.url + "/v1/models", headers=auth).status_code == 200
        import openai
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="sekrit", max_retries=0)
        c = client.completions.create(model=client.models.list().data[0].id, prompt=[5, 6, 7], max_tokens=5,
                                      temperature=0)
        assert c.usage.completion_tokens == 5 and c.choices[0].finish_reason == "length"

        # queue full: 1 running + 1 waiting; the rest get 429 with Retry-After
        sent_ok, statuses = [], []

        def long_request(i):
            r = s.post("/v1/completions", {"prompt": [1 + i, 2, 3], "max_tokens": 100, "temperature": 0,
                                           "ignore_eos": True}, headers=auth)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert_openai_error(r, 429)
            else:
                assert r.status_code == 200, r.text
                sent_ok.append(r.json()["usage"])

        threads = [threading.Thread(target=long_request, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses

        # /metrics parses and its counters add up to what was answered
        m = s.metrics()
        done = [c.usage] + sent_ok
        assert metric_sum(m, "tessera_generation_tokens_total") == sum(u.completion_tokens if hasattr(u, "completion_tokens")
                                                                       else u["completion_tokens"] for u in done)
        assert metric_sum(m, "tessera_prompt_tokens_total") == sum(u.prompt_tokens if hasattr(u, "prompt_tokens")
                                                                   else u["prompt_tokens"] for u in done)
        assert metric_sum(m, "tessera_request_success_total", finished_reason="length") == len(done)
        assert metric_sum(m, "tessera_http_requests_total", route="/v1/completions") == 2 + 1 + len(statuses)
        assert metric_sum(m, "tessera_http_requests_total", route="/v1/completions", status="429") == \
            statuses.count(429)
        assert metric_sum(m, "tessera_ready") == 1

        assert s.stop() == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
