#!/usr/bin/env python3
"""fuzz/make_seeds.py — writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) and the tiny tokenizer
fuzz_openai_request uses (fuzz/data/tokenizer/). Python's standard library only: the files are small and their
layouts are written out here by hand (GGUF, safetensors, tokenizer.json, the tessera wire), so a seed does not
depend on the code it tests. Deterministic: re-running rewrites the same bytes (the outputs are checked in).

Usage: python3 fuzz/make_seeds.py [--out DIR]   (DIR defaults to the folder of this script)
"""
import argparse
import json
import os
import struct

# --- GGUF ----------------------------------------------------------------------------------------------------------
# Value types (gguf.h GgufType) and GGML tensor types used below.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 3, 8, 30
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q",
          I64: "<q", F64: "<d"}


def gguf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == STR:
        return gguf_str(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gguf_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf_file(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, ne (GGML order), ggml_type, data bytes)]."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        head += gguf_str(key) + struct.pack("<I", t) + gguf_value(t, v)
    data, infos = b"", b""
    for name, ne, gt, blob in tensors:
        data += b"\0" * (-len(data) % alignment)
        infos += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", gt, len(data))
        data += blob
    head += infos
    return head + b"\0" * (-len(head) % alignment) + data


def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    return struct.pack("<f", x)[2:]


def q8_0(vals):  # one block of 32: f16 scale + 32 int8
    return f16(0.5) + bytes((v & 0xFF) for v in vals)


def q4_0(vals):  # f16 scale + 16 bytes of nibbles
    return f16(0.25) + bytes((vals[i] & 0xF) | (vals[i + 16] & 0xF) << 4 for i in range(16))


def q4_1(vals):  # f16 scale, f16 min, 16 bytes of nibbles
    return f16(0.25) + f16(-1.0) + bytes((vals[i] & 0xF) | (vals[i + 16] & 0xF) << 4 for i in range(16))


def gguf_model():
    kvs = [
        ("general.architecture", STR, "llama"),
        ("general.alignment", U32, 32),
        ("general.name", STR, "tiny fuzz seed"),
        ("llama.context_length", U32, 64),
        ("llama.embedding_length", U64, 4),
        ("llama.block_count", I32, 1),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.rope.freq_base", F64, 10000.0),
        ("general.quantized", BOOL, True),
        ("small.ints", ARR, (I16, [-2, -1, 0, 1, 2])),
        ("small.u8", ARR, (U8, [0, 255])),
        ("small.i8", ARR, (I8, [-128, 127])),
        ("small.u16", ARR, (U16, [65535])),
        ("small.i64", ARR, (I64, [-(1 << 62)])),
        ("small.u64", ARR, (U64, [1 << 63])),
        ("small.floats", ARR, (F32, [0.5, -1.25])),
        ("small.doubles", ARR, (F64, [3.5])),
        ("small.bools", ARR, (BOOL, [True, False])),
        ("small.strings", ARR, (STR, ["a", "", "c d"])),
        ("small.nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["x"])])),
        ("big.u64", U64, (1 << 64) - 1),
        ("neg.i8", I8, -7),
        ("u16", U16, 7),
        ("i16", I16, -7),
        ("u8", U8, 7),
        ("i64", I64, -(1 << 40)),
    ]
    tensors = [
        ("token_embd.weight", [3, 2], GGML_F32, b"".join(struct.pack("<f", x) for x in [1, 2, 3, 4, 5, 6])),
        ("norm.f16", [4], GGML_F16, b"".join(f16(x) for x in [0.5, -1, 2, 65504])),
        ("norm.bf16", [2, 2], GGML_BF16, b"".join(bf16(x) for x in [1, -2, 3.5, 1e30])),
        ("q8.weight", [32, 1], GGML_Q8_0, q8_0(list(range(-16, 16)))),
        ("q4_0.weight", [32, 2], GGML_Q4_0, q4_0(list(range(32))) + q4_0(list(range(31, -1, -1)))),
        ("q4_1.weight", [32], GGML_Q4_1, q4_1([i % 16 for i in range(32)])),
        ("scalar", [], GGML_F32, struct.pack("<f", 42.0)),
        ("empty", [0, 3], GGML_F32, b""),
        ("cube", [2, 2, 2], GGML_F16, b"".join(f16(x) for x in range(8))),
    ]
    return gguf_file(kvs, tensors)


# GPT-2's byte-level alphabet: each byte as a printable character (tokenizers' bytes_to_unicode).
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = bytes_to_unicode()
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
          "You are a fuzz assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
          "'<|im_start|>assistant\\n' }}{% endif %}")
MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (BYTE_CHAR[32], "w"), ("o", "r"),
          (BYTE_CHAR[32] + "w", "or"), ("a", "a"), ("1", "2")]
ADDED = [(270, "<|im_start|>", True), (271, "<|im_end|>", True), (272, "<user_tok>", False), (273, "<s>", True)]


def gguf_tokenizer():
    tokens = [BYTE_CHAR[b] for b in range(256)] + [a + b for a, b in MERGES]
    tokens += ["<pad%d>" % i for i in range(270 - len(tokens))] + [c for _, c, _ in ADDED]
    types = [1] * 270 + [3, 3, 4, 3]
    kvs = [
        ("general.architecture", STR, "llama"),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, "smollm"),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.merges", ARR, (STR, ["%s %s" % m for m in MERGES])),
        ("tokenizer.ggml.bos_token_id", U32, 273),
        ("tokenizer.ggml.eos_token_id", U32, 271),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.chat_template", STR, CHATML),
    ]
    return gguf_file(kvs, [("w", [2], GGML_F32, struct.pack("<ff", 1, 2))])


def gguf_llama3_tokenizer():
    tokens = [BYTE_CHAR[b] for b in range(256)] + [a + b for a, b in MERGES] + ["<|eot_id|>"]
    kvs = [
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, "llama-bpe"),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.token_type", ARR, (U8, [1] * (len(tokens) - 1) + [3])),
        ("tokenizer.ggml.merges", ARR, (STR, ["%s %s" % m for m in MERGES])),
        ("tokenizer.ggml.eos_token_id", I64, len(tokens) - 1),
    ]
    return gguf_file(kvs, [], version=2, alignment=64)


# --- safetensors ---------------------------------------------------------------------------------------------------
def safetensors_file(entries, metadata=None, pad_header=True):
    """entries: [(name, dtype, shape, data bytes)] laid out in order."""
    header, data = {}, b""
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad_header:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    f32 = lambda xs: b"".join(struct.pack("<f", x) for x in xs)
    return {
        "tiny-model": safetensors_file(
            [("model.embed_tokens.weight", "F32", [2, 3], f32([1, 2, 3, 4, 5, 6])),
             ("model.norm.weight", "F16", [4], b"".join(f16(x) for x in [1, -1, 0.5, 2])),
             ("lm_head.weight", "BF16", [2, 2], b"".join(bf16(x) for x in [1, 2, 3, 4])),
             ("position_ids", "I64", [2], struct.pack("<qq", 0, 1)),
             ("cube", "F32", [2, 1, 2], f32([1, 2, 3, 4]))],
            metadata={"format": "pt", "note": "fuzz seed"}),
        "scalar-and-empty": safetensors_file(
            [("scalar", "F32", [], f32([7])), ("empty", "F16", [0, 5], b""), ("flag", "BOOL", [3], b"\1\0\1")],
            pad_header=False),
        "header-only": safetensors_file([], metadata={}),
        # Found by fuzz_gguf: an empty tensor whose other dims overflow when multiplied (cols() was UB).
        "regress-empty-huge-dims": safetensors_file([("e", "F32", [0, 1 << 33, 1 << 33], b"")]),
    }


# --- tokenizer.json ------------------------------------------------------------------------------------------------
def tokenizer_json(pair_merges=False, pre=None, extra=None):
    vocab = {BYTE_CHAR[b]: b for b in range(256)}
    merges = []
    for i, (a, b) in enumerate(MERGES):
        vocab[a + b] = 256 + i
        merges.append([a, b] if pair_merges else a + " " + b)
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": s} for i, c, s in ADDED]
    doc = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre or {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [273], "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": merges},
    }
    if extra:
        extra(doc)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


TOKENIZER_CONFIG = json.dumps({"bos_token": "<s>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": False,
                               "chat_template": CHATML}, separators=(",", ":")).encode()
LLAMA3_SPLIT = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                           "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def tokenizer_seeds():
    # fuzz_tokenizer_json's input: tokenizer.json NUL tokenizer_config.json NUL text (the last two optional).
    def with_unk(doc):
        doc["model"]["unk_token"] = "<unk>"
        doc["model"]["vocab"]["<unk>"] = 274
        doc["model"]["ignore_merges"] = True
        doc["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}
        doc["post_processor"] = {"type": "Sequence", "processors": [{"type": "ByteLevel"}]}
        doc["normalizer"] = {"type": "Sequence", "normalizers": []}

    def split_string(doc):
        doc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}

    def vocab_id(v):
        return lambda doc: doc["model"]["vocab"].update({"zz": v})

    text = "hello world <|im_start|>user 12345<|im_end|> aaa \u00e9\u20ac\U0001f600\n".encode()
    return {
        # Found by fuzz_tokenizer_json (each was a crash: an exception other than tessera::Error, UB, or OOM).
        "regress-number-overflow": b'{"version":1e400}',
        "regress-dropout-string": tokenizer_json(extra=lambda doc: doc["model"].update({"dropout": "x"})),
        "regress-id-int32-max": tokenizer_json(extra=vocab_id(2147483647)),
        "regress-id-1e9": tokenizer_json(extra=vocab_id(1000000000)),
        "regress-id-wraps-int32": tokenizer_json(extra=vocab_id(5000000000)),
        "chatml-with-config": tokenizer_json() + b"\0" + TOKENIZER_CONFIG + b"\0" + text,
        "pair-merges-llama3-split": tokenizer_json(pair_merges=True, pre=LLAMA3_SPLIT) + b"\0\0" + text,
        "unk-ignore-merges": tokenizer_json(extra=with_unk),
        "split-string-list-template": tokenizer_json(extra=split_string) + b"\0" + json.dumps(
            {"bos_token": {"content": "<s>"}, "add_eos_token": False,
             "chat_template": [{"name": "default", "template": CHATML}, {"name": "tool_use", "template": "x"}]},
            separators=(",", ":")).encode() + b"\0" + b"<user_tok>hello",
    }


# --- OpenAI request bodies -----------------------------------------------------------------------------------------
def openai_seeds():
    j = lambda o: json.dumps(o, separators=(",", ":")).encode()
    depth = 1000
    return {
        "completion": j({"model": "m", "prompt": "hello world", "max_tokens": 4, "temperature": 0.7, "top_p": 0.9,
                         "seed": 1, "stop": ["\n", "wor"], "stream": True, "stream_options": {"include_usage": True},
                         "logprobs": 2, "echo": True, "user": "u", "ignore_eos": False}),
        "chat": j({"model": "m", "messages": [{"role": "system", "content": "S"},
                                               {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                                            {"type": "text", "text": " there"}]},
                                               {"role": "assistant", "content": "ok"},
                                               {"role": "user", "content": "again <|im_end|>"}],
                   "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 3, "n": 2, "presence_penalty": 0.5,
                   "frequency_penalty": -0.5, "top_k": 40, "ignore_eos": True, "stream": False}),
        "token-ids": j({"prompt": [1, 2, 3, 273], "max_tokens": 2, "return_token_ids": True, "logprobs": True}),
        "prompt-list": j({"prompt": [[1, 2], [3], "text"], "n": 1, "seed": -5, "top_k": -1, "stop": "x"}),
        "bad-fields": b'{"prompt":"x","max_tokens":1e300,"temperature":"hot","n":18446744073709551615,"top_p":-0.0}',
        # A number past double's range: nlohmann throws out_of_range (406), not parse_error, from the parser.
        "regress-number-overflow": b'{"prompt":"x","max_tokens":1e400}',
        "nested-arrays": b'{"prompt":' + b"[" * depth + b"]" * depth + b"}",
        "nested-objects": b'{"messages":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
        "unicode": '{"prompt":"\\u00e9\\ud83d\\ude00 \u20ac","stop":["\\u0000"],"user":"\\ud83d\\ude00"}'.encode(),
        "lone-surrogate": b'{"prompt":"\\ud800"}',
        # The deepest body parse_request_body accepts (64 levels, kMaxJsonDepth) and one level more.
        "nested-64": b'{"prompt":' + b"[" * 63 + b"1" + b"]" * 63 + b"}",
        "nested-65": b'{"prompt":' + b"[" * 64 + b"1" + b"]" * 64 + b"}",
    }


# --- HTTP requests -------------------------------------------------------------------------------------------------
def http_seeds():
    body = b'{"model":"m","prompt":"hi","max_tokens":2}'
    # fuzz_http_request's input: the first byte picks where the bytes are cut in two for the incremental parse.
    reqs = {
        "post-content-length": b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                               b"Authorization: Bearer k\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "post-chunked": b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\n{\"a\":\r\n3;ext=1\r\n12}\r\n0\r\nTrailer: v\r\n\r\n",
        "get-http10": b"GET /health HTTP/1.0\r\n\r\n",
        "pipelined": b"GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
                     b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "gzip-te": b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "content-encoding": b"POST /v1/completions HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
        "conflicting-length": b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "expect-continue": b"PUT /v1/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        # Found by fuzz_http_request: read_request() parsed header and body in one go (400, bad chunk) where the
        # server checks the header first (501).
        "regress-header-checked-first": b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                        b":\r\n\xc3\n",
    }
    return {name: bytes([min(len(r) // 2, 255)]) + r for name, r in reqs.items()}


# --- the coordinator <-> worker wire -------------------------------------------------------------------------------
WIRE_MAGIC, WIRE_VERSION = 0x54455353, 4


def wire_frame(payload):
    return struct.pack("<IIQ", WIRE_MAGIC, WIRE_VERSION, len(payload)) + payload


def wire_vec(fmt, items):
    return struct.pack("<Q", len(items)) + b"".join(struct.pack(fmt, *x) if isinstance(x, tuple) else
                                                   struct.pack(fmt, x) for x in items)


# SamplingParams as the C++ struct lays it out (x86-64): 5 × 4-byte fields, 4 bytes of padding, u64 seed, then
# n_logprobs, min_p, repetition_penalty, min_tokens (48 bytes, no tail padding).
SAMPLING = "<ffiff4xQiffi"


def wire_plan(kind, step_id, n_slots=0, max_ctx=0, block_size=0, kv_bytes=0, release=(), cols=0, tokens=(),
              pad=(), slots=(), cached=(), sampling=(), history_len=(), history=(), bias_len=(), bias=(),
              stop_len=(), stop=(), prompt_len=(), prompt=(), dtok=(), dslots=(), dpos=(), width=0, tables=()):
    p = struct.pack("<IQiiiQ", kind, step_id, n_slots, max_ctx, block_size, kv_bytes) + wire_vec("<i", list(release))
    p += struct.pack("<i", cols) + wire_vec("<i", list(tokens)) + wire_vec("<i", list(pad))
    p += wire_vec("<i", list(slots)) + wire_vec("<i", list(cached)) + wire_vec(SAMPLING, list(sampling))
    p += wire_vec("<i", list(history_len)) + wire_vec("<i", list(history))
    p += wire_vec("<i", list(bias_len)) + wire_vec("<if", list(bias))
    p += wire_vec("<i", list(stop_len)) + wire_vec("<i", list(stop))
    p += wire_vec("<i", list(prompt_len)) + wire_vec("<i", list(prompt))
    p += wire_vec("<i", list(dtok)) + wire_vec("<i", list(dslots)) + wire_vec("<i", list(dpos))
    p += struct.pack("<i", width) + wire_vec("<i", list(tables))
    return wire_frame(p)


def wire_result(step_id, tokens, logprobs, top, n_slots, error, t_step, t_coll, n_blocks=0, block_size=0):
    p = struct.pack("<Q", step_id) + wire_vec("<i", tokens) + wire_vec("<f", logprobs)
    p += struct.pack("<Q", len(top)) + b"".join(wire_vec("<if", row) for row in top)
    p += struct.pack("<iii", n_slots, n_blocks, block_size) + struct.pack("<Q", len(error)) + error
    p += struct.pack("<dd", t_step, t_coll)
    return wire_frame(p)


def wire_seeds():
    return {
        "plan-step": wire_plan(1, 7, release=[3], cols=3, tokens=[0, 5, 6, 7, 8, 9], pad=[1, 0], slots=[0, 1],
                               cached=[0, 16], sampling=[(0.0, 1.0, -1, 0.0, 0.0, 0, 0, 0.0, 1.0, 0),
                                                         (0.8, 0.95, 40, 0.5, -0.5, 1234, 2, 0.05, 1.2, 3)],
                               history_len=[0, 2], history=[21, 22], bias_len=[0, 2], bias=[(5, -100.0), (9, 2.5)],
                               stop_len=[0, 1], stop=[2], prompt_len=[0, 3], prompt=[6, 7, 8], dtok=[11], dslots=[2], dpos=[17], width=2,
                               tables=[4, -1, 0, 7, 2, 3]),
        "plan-configure": wire_plan(2, 0, n_slots=8, max_ctx=2048, block_size=16, kv_bytes=1 << 30),
        "plan-shutdown": wire_plan(3, 99),
        "result": wire_result(7, [5, 6, 11], [-0.5, -1.0, -2.0], [[(5, -0.5), (6, -1.5)], [(6, -1.0), (1, -2.0)],
                                                                  [(11, -2.0), (12, -3.0)]], 0, b"", 0.01, 0.002),
        "result-configure": wire_result(0, [], [], [], 16, b"", 0.0, 0.0, n_blocks=2048, block_size=16),
        "result-error": wire_result(8, [], [], [], 4, b"rank 2: CUDA error", 0.0, 0.0),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=here)
    out = ap.parse_args().out
    corpora = {
        "fuzz_gguf": {"tiny-model": gguf_model(), "tokenizer-smollm": gguf_tokenizer(),
                      "tokenizer-llama3-v2": gguf_llama3_tokenizer(),
                      # Found by fuzz_gguf: ne = [0, 2^33, 2^33] opened, then TensorInfo::numel() overflowed (UB).
                      "regress-empty-huge-dims": gguf_file([], [("e", [0, 1 << 33, 1 << 33], GGML_F32, b"")])},
        "fuzz_safetensors": safetensors_seeds(),
        "fuzz_tokenizer_json": tokenizer_seeds(),
        "fuzz_openai_request": openai_seeds(),
        "fuzz_http_request": http_seeds(),
        "fuzz_wire": wire_seeds(),
    }
    for target, files in corpora.items():
        d = os.path.join(out, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    tok = os.path.join(out, "data", "tokenizer")
    os.makedirs(tok, exist_ok=True)
    with open(os.path.join(tok, "tokenizer.json"), "wb") as f:
        f.write(tokenizer_json())
    with open(os.path.join(tok, "tokenizer_config.json"), "wb") as f:
        f.write(TOKENIZER_CONFIG)


if __name__ == "__main__":
    main()
