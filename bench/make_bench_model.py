#!/usr/bin/env python3
"""Random-weight checkpoints in real shapes for benchmarks, made from a name and a seed (never downloaded).

    python bench/make_bench_model.py gpt2-small OUTDIR [--seed 0]

gpt2-small: GPT-2 124M's shape (12 layers, hidden 768, 12 heads, FFN 3072, vocab 50257, 1024 positions), which
tensor parallelism can split 1, 2, 3, 4, 6 or 12 ways. Saved as a Hugging Face directory (safetensors).
"""
import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {"gpt2-small": dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)}

ap = argparse.ArgumentParser()
ap.add_argument("name", choices=sorted(SHAPES))
ap.add_argument("outdir")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
GPT2LMHeadModel(GPT2Config(**SHAPES[a.name])).save_pretrained(a.outdir, safe_serialization=True)
print(a.outdir)
