#!/usr/bin/env python3
"""The peer for tessera's CPU numbers: Hugging Face transformers (torch, fp32) running the same model on the same
machine, with the same prompts and lengths as scripts/bench-cpu.sh.

    python bench/bench_hf_cpu.py MODEL.gguf --threads 2 [--prefill-len 512] [--decode-len 128] [--batch 8]

Prints one JSON line: prefill tokens/s (one 512-token prompt), single-stream decode tokens/s, aggregate decode
tokens/s of a left-padded batch of 8 (transformers' own padding, with an attention mask). Greedy, KV cache on.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import torch  # noqa: E402

import hf_gguf  # noqa: E402


def decode_rate(model, ids, mask, n_new):
    """Tokens/s of n_new greedy decode steps after a prefill (the prefill is not timed)."""
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(n_new - 1):
            mask = torch.cat([mask, torch.ones_like(tok)], dim=1)
            pos = (mask.sum(-1, keepdim=True) - 1)
            out = model(input_ids=tok, attention_mask=mask, past_key_values=past, position_ids=pos, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
        dt = time.perf_counter() - t0
    return ids.shape[0] * (n_new - 1) / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--decode-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = hf_gguf.load_llama_from_gguf(a.model, cache_dir=a.cache_dir)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    res = {"peer": f"transformers (torch {torch.__version__}, fp32, {a.threads} threads)"}
    with torch.no_grad():
        ids = torch.randint(100, vocab, (1, a.prefill_len), generator=g)
        model(input_ids=ids[:, :16])  # warm-up
        t0 = time.perf_counter()
        model(input_ids=ids, use_cache=True)
        res["prefill_tok_s"] = a.prefill_len / (time.perf_counter() - t0)
    ids = torch.randint(100, vocab, (1, 8), generator=g)
    res["decode_tok_s"] = decode_rate(model, ids, torch.ones_like(ids), a.decode_len)
    lens = [8 + 7 * i for i in range(a.batch)]  # different prompt lengths, left-padded
    L = max(lens)
    ids = torch.zeros((a.batch, L), dtype=torch.long)
    mask = torch.zeros((a.batch, L), dtype=torch.long)
    for b, n in enumerate(lens):
        ids[b, L - n:] = torch.randint(100, vocab, (n,), generator=g)
        mask[b, L - n:] = 1
    res["batch"] = a.batch
    res["batch_decode_tok_s"] = decode_rate(model, ids, mask, a.decode_len // 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
