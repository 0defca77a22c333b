#!/usr/bin/env python3
"""Random-weight checkpoints in real shapes for benchmarks, made from a name and a seed (never downloaded).

    python bench/make_bench_model.py gpt2-small OUTDIR [--seed 0]

gpt2-small: GPT-2 124M's shape (12 layers, hidden 768, 12 heads, FFN 3072, vocab 50257, 1024 positions), which
tensor parallelism can split 1, 2, 3, 4, 6 or 12 ways. Saved as a Hugging Face directory (safetensors).
gpt3-layer: one GPT-3 175B layer (hidden 12288, 96 heads, FFN 49152) with GPT-2's vocabulary and 2048 positions:
9.8 GB of fp32 in two shards (embeddings; the layer), written tensor by tensor so that at most one shard is in memory.
"""
import argparse
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {"gpt2-small": dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024),
          "gpt3-layer": dict(n_embd=12288, n_layer=1, n_head=96, vocab_size=50257, n_positions=2048)}

ap = argparse.ArgumentParser()
ap.add_argument("name", choices=sorted(SHAPES))
ap.add_argument("outdir")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
cfg = GPT2Config(**SHAPES[a.name])
if a.name != "gpt3-layer":
    GPT2LMHeadModel(cfg).save_pretrained(a.outdir, safe_serialization=True)
else:
    from safetensors.torch import save_file
    os.makedirs(a.outdir, exist_ok=True)
    H, F, V, P = cfg.n_embd, 4 * cfg.n_embd, cfg.vocab_size, cfg.n_positions
    def rnd(*shape, std=0.02):
        return torch.empty(*shape, dtype=torch.float32).normal_(0.0, std)
    shards = {
        "model-00001-of-00002.safetensors": lambda: {"transformer.wte.weight": rnd(V, H),
                                                     "transformer.wpe.weight": rnd(P, H, std=0.01)},
        "model-00002-of-00002.safetensors": lambda: {
            "transformer.h.0.ln_1.weight": torch.ones(H), "transformer.h.0.ln_1.bias": torch.zeros(H),
            "transformer.h.0.attn.c_attn.weight": rnd(H, 3 * H), "transformer.h.0.attn.c_attn.bias": torch.zeros(3 * H),
            "transformer.h.0.attn.c_proj.weight": rnd(H, H), "transformer.h.0.attn.c_proj.bias": torch.zeros(H),
            "transformer.h.0.ln_2.weight": torch.ones(H), "transformer.h.0.ln_2.bias": torch.zeros(H),
            "transformer.h.0.mlp.c_fc.weight": rnd(H, F), "transformer.h.0.mlp.c_fc.bias": torch.zeros(F),
            "transformer.h.0.mlp.c_proj.weight": rnd(F, H), "transformer.h.0.mlp.c_proj.bias": torch.zeros(H),
            "transformer.ln_f.weight": torch.ones(H), "transformer.ln_f.bias": torch.zeros(H)},
    }
    weight_map, total = {}, 0
    for fname, make in shards.items():
        tensors = make()
        for k, t in tensors.items():
            weight_map[k] = fname
            total += t.numel() * 4
        save_file(tensors, os.path.join(a.outdir, fname), metadata={"format": "pt"})
        del tensors
    with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    cfg.save_pretrained(a.outdir)
print(a.outdir)
