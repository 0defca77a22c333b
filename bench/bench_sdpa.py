#!/usr/bin/env python3
"""bench/bench_sdpa.py — the peer for causal prefill attention: torch.nn.functional.scaled_dot_product_attention
on the same GPU and shapes as bench_kernels (B 1, 32 heads, head_dim 128, bf16, causal), CUDA events, warm-up,
median. Prints one markdown row per length. Usage: bench_sdpa.py [--quick]"""
import sys

import torch
import torch.nn.functional as F


def median_ms(fn, warmup=2, iters=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    lens = [4096] if "--quick" in sys.argv else [4096, 16384, 32768]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    print("| kernel | shape | median ms | achieved |\n|---|---|---|---|")
    H, D = 32, 128
    for L in lens:
        q, k, v = (torch.randn(1, H, L, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), iters=5 if L >= 16384 else 10)
        tflops = 4.0 * L * L / 2 * D * H / ms / 1e9
        print(f"| torch SDPA bf16 causal | B1 L{L} H32 D128 | {ms:.4f} | {tflops:.1f} TFLOP/s |", flush=True)


if __name__ == "__main__":
    main()
