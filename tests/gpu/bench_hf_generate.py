#!/usr/bin/env python3
"""EET's end-to-end setup on Hugging Face transformers: the peer of tests/gpu/bench_cuda_generate.cpp.

A GPT-2-medium-shaped model (hidden 1024, 24 layers, 16 heads, vocab 50257, 1024 positions) with random weights
(torch seed 0), saved with save_pretrained to OUT_DIR so that tessera loads the *same* weights; then batch 4,
prompt 512, 512 new tokens, greedy, fp16 on the GPU, timed with CUDA synchronization around generate().
Prompt ids: (b * 1000003 + i * 7919 + 17) % vocab, as in bench_cuda_generate.

Usage: bench_hf_generate.py OUT_DIR [--batch 4 --prompt 512 --new 512]
"""
import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=512)
    a = ap.parse_args()
    cfg = GPT2Config(n_embd=1024, n_layer=24, n_head=16, n_positions=1024, vocab_size=50257,
                     activation_function="gelu_new")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(a.out_dir, safe_serialization=True)
    model = model.half().cuda()
    V = cfg.vocab_size
    ids = torch.tensor([[(b * 1000003 + i * 7919 + 17) % V for i in range(a.prompt)] for b in range(a.batch)],
                       device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=mask)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    assert out.shape[1] == a.prompt + a.new, out.shape
    print(f"hf_generate gpt2-medium-shaped f16 B={a.batch} prompt={a.prompt} new={a.new}: total {dt * 1e3:.1f} ms = "
          f"{dt * 1e3 / a.new:.3f} ms/token (per generated step), {a.batch * a.new / dt:.0f} tokens/s "
          f"(torch {torch.__version__}, transformers {__import__('transformers').__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
