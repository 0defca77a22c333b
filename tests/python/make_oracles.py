#!/usr/bin/env python3
"""Tiny deterministic random checkpoints + Hugging Face reference logits (tessera's numeric oracles).

    python tests/python/make_oracles.py OUTDIR [--threads 2]

For each model OUTDIR/<name>/ holds:
  config.json + model.safetensors   transformers' save_pretrained(safe_serialization=True), float32
  model-f32.gguf                    (Llama models) the same weights as an F32 GGUF in llama.cpp's layout, Q/K
                                    rows permuted for llama.cpp's RoPE exactly as convert_hf_to_gguf.py does
  reference.json                    {"model", "arch", "cases": [{"prompt_ids", "greedy_ids", "logits_file",
                                    "n_steps", "vocab", ...}], ...}
  case<i>.f32                       raw little-endian float32 logits [n_steps=33, vocab] row-major; step 0 =
                                    logits at the last prompt position, step t = after feeding greedy token t

Weights are not transformers' default init (std 0.02, zero biases, unit norms): every parameter is drawn so that
biases and norm weights are non-trivial (a loader that drops one is caught) and logits are well spread (greedy
argmax is decided by a clear margin, not by rounding). If any greedy step of a model has a top-2 logit margin
below MIN_MARGIN the seed is bumped (deterministically) and the model redrawn.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hf_gguf  # noqa: E402

N_NEW = 32
PROMPT_LENS = (5, 17, 40)
MIN_MARGIN = 0.02   # 20x the 1e-3 logits tolerance tessera is held to on these models
VOCAB = 256
OUT_GAIN = 8.0
N_POS = 128

MODELS = {
    "gpt2": dict(arch="gpt2", seed=1000),
    "llama_gqa_tied": dict(arch="llama", seed=2000, n_head=4, n_kv=2, tied=True, rope_theta=10000.0),
    "llama_gqa_untied": dict(arch="llama", seed=3000, n_head=4, n_kv=1, tied=False, rope_theta=500000.0),
    "llama_mha": dict(arch="llama", seed=4000, n_head=4, n_kv=4, tied=False, rope_theta=10000.0),
}


def build(name: str, spec: dict, seed: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if spec["arch"] == "gpt2":
        cfg = GPT2Config(vocab_size=VOCAB, n_positions=N_POS, n_embd=64, n_layer=2, n_head=4,
                         activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                         tie_word_embeddings=True, torch_dtype="float32")
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                          num_attention_heads=spec["n_head"], num_key_value_heads=spec["n_kv"],
                          max_position_embeddings=N_POS, rms_norm_eps=1e-5, rope_theta=spec["rope_theta"],
                          tie_word_embeddings=spec["tied"], hidden_act="silu", attention_bias=False,
                          mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                          torch_dtype="float32")
        model = LlamaForCausalLM(cfg)
    model = model.float().eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = None

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname == "lm_head.weight" and cfg.tie_word_embeddings:
                continue  # shares the embedding
            leaf = pname.rsplit(".", 1)[-1]
            is_norm = any(k in pname for k in ("ln_", "norm"))
            if is_norm and leaf == "weight":
                v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
            elif leaf == "bias":
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif pname.endswith(("wte.weight", "embed_tokens.weight")):
                v = torch.randn(p.shape, generator=g)  # tied: logits = h . wte, std ~ sqrt(64)
            elif pname.endswith("wpe.weight"):
                v = 0.5 * torch.randn(p.shape, generator=g)
            elif pname == "lm_head.weight":
                v = torch.randn(p.shape, generator=g)
            else:
                # GPT-2's Conv1D stores [in, out]; nn.Linear stores [out, in]
                fan_in = p.shape[0] if spec["arch"] == "gpt2" else p.shape[1]
                v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
                if pname.endswith(("o_proj.weight", "down_proj.weight", "c_proj.weight")):
                    # Residual-branch outputs 8x the embedding scale: otherwise the token's own embedding
                    # dominates the residual stream and a tied model just repeats its last input token.
                    v *= OUT_GAIN
            p.copy_(v)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model


def run_cases(model, seed: int):
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(seed + 7)
    cases = []
    for n in PROMPT_LENS:
        ids = torch.randint(0, VOCAB, (n,), generator=g).tolist()
        greedy, logits = hf_gguf.greedy_with_logits(model, ids, N_NEW)
        top2 = np.sort(logits[:N_NEW], axis=1)[:, -2:]
        cases.append((ids, greedy, logits, float((top2[:, 1] - top2[:, 0]).min())))
    return cases


def check_gguf_roundtrip(model, gguf_path: Path) -> float:
    """Load the GGUF back through hf_gguf (un-permute) and compare tensors and logits with the HF model."""
    import torch
    from transformers.modeling_gguf_pytorch_utils import reverse_permute_weights

    cfg, sd, meta = hf_gguf.llama_state_dict_from_gguf(gguf_path)
    ref = model.state_dict()
    for k, v in sd.items():
        if not torch.equal(torch.from_numpy(v), ref[k]):
            raise AssertionError(f"{gguf_path}: tensor {k} does not round-trip")
    # our permutation must be the one transformers (and llama.cpp) invert
    q = ref["model.layers.0.self_attn.q_proj.weight"].numpy()
    k_ = ref["model.layers.0.self_attn.k_proj.weight"].numpy()
    n_h, n_kv = model.config.num_attention_heads, model.config.num_key_value_heads
    assert (reverse_permute_weights(hf_gguf.permute_qk(q, n_h, n_h), n_h, n_h) == q).all()
    assert (reverse_permute_weights(hf_gguf.permute_qk(k_, n_h, n_kv), n_h, n_kv) == k_).all()
    assert ("output.weight" in {hf_gguf.gguf_name_from_hf(n) for n in sd}) == (not cfg.tie_word_embeddings)
    m2 = hf_gguf.load_llama_from_gguf(gguf_path)
    with torch.no_grad():
        ids = torch.arange(0, 20).unsqueeze(0)
        return float((model(ids).logits - m2(ids).logits).abs().max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="subset of " + ", ".join(MODELS))
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    t_all = time.time()
    for name, spec in MODELS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        d = args.outdir / name
        d.mkdir(parents=True, exist_ok=True)
        seed = spec["seed"]
        for _ in range(20):
            model = build(name, spec, seed)
            cases = run_cases(model, seed)
            margin = min(c[3] for c in cases)
            if margin >= MIN_MARGIN:
                break
            seed += 1
        else:
            raise RuntimeError(f"{name}: no seed with top-2 margin >= {MIN_MARGIN}")

        model.save_pretrained(str(d), safe_serialization=True)
        files = ["config.json", "model.safetensors"]
        extra = {}
        if spec["arch"] == "llama":
            gg = d / "model-f32.gguf"
            hf_gguf.write_llama_gguf(gg, model.config, model.state_dict(), name)
            extra["gguf_roundtrip_max_abs_logit_diff"] = check_gguf_roundtrip(model, gg)
            files.append(gg.name)

        out_cases = []
        for i, (ids, greedy, logits, m) in enumerate(cases):
            fname = f"case{i}.f32"
            hf_gguf.write_f32(d / fname, logits)
            files.append(fname)
            out_cases.append({"prompt_ids": ids, "greedy_ids": greedy, "logits_file": fname,
                              "n_steps": N_NEW + 1, "vocab": VOCAB, "min_top2_margin": m})
        c = model.config
        ref = {
            "model": name,
            "arch": spec["arch"],
            "seed": seed,
            "dtype": "float32",
            "config": {
                "vocab": VOCAB,
                "hidden": c.hidden_size,
                "layers": c.num_hidden_layers,
                "heads": c.num_attention_heads,
                "kv_heads": getattr(c, "num_key_value_heads", c.num_attention_heads),
                "ffn": getattr(c, "intermediate_size", None) or 4 * c.hidden_size,
                "max_positions": N_POS,
                "tied_embeddings": bool(c.tie_word_embeddings),
                "rope_theta": getattr(c, "rope_theta", None),
                "norm_eps": getattr(c, "rms_norm_eps", getattr(c, "layer_norm_epsilon", None)),
            },
            "generator": {"script": "tests/python/make_oracles.py", "transformers": transformers.__version__,
                          "torch": torch.__version__, "numpy": np.__version__},
            "checks": extra,
            "cases": out_cases,
        }
        hf_gguf.write_reference_json(d / "reference.json", ref)
        files.append("reference.json")
        print(f"{name}: seed {seed}, min top-2 margin {margin:.3f}, "
              + "".join(f"{k} {v:g}, " for k, v in extra.items())
              + f"{time.time() - t0:.1f}s -> {d}/{{{','.join(files)}}}", flush=True)
        if extra.get("gguf_roundtrip_max_abs_logit_diff", 0.0) != 0.0:
            print(f"error: {name}: GGUF round trip changed the logits", file=sys.stderr)
            return 1
    print(f"done in {time.time() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
