#!/usr/bin/env python3
"""Reference logits and greedy continuations of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF).

    python tests/python/smollm2_reference.py MODEL.gguf OUTDIR [--threads 2] [--cache-dir DIR] [--no-compare]

The GGUF is dequantized tensor by tensor with the PyPI ``gguf`` package (Q4_1 / Q8_0 / F32 -> float32), llama.cpp's
Q/K row permutation is undone, and the weights are loaded into a float32 ``transformers.LlamaForCausalLM`` built
from the GGUF metadata (tests/python/hf_gguf.py). Prompts are tokenized with a tokenizer built from the GGUF's own
vocabulary (hf_gguf.tokenizer_from_gguf), cross-checked against transformers' GGUF tokenizer; chat prompts use
the GGUF's ChatML template.

Also the top-1 token (and top-2 margin) transformers gives at every position of a ~500-token text of several kinds,
teacher-forced (reference.json's "teacher_forced"). Writes OUTDIR/reference.json and OUTDIR/case<i>.f32 (raw little-endian float32, [n_steps, vocab] row-major):
step 0 = logits at the last prompt position, step t = logits after feeding the t-th greedy token.

Cross-checks (unless --no-compare): every tensor against transformers' own GGUF loader
(``transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint``), plus the logits of the full
``from_pretrained(dir, gguf_file=...)`` path when ``accelerate`` happens to be importable (it is not a dependency).
Exits non-zero if a check fails or the model does not answer "Paris".
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hf_gguf  # noqa: E402

N_NEW = 32

PLAIN_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
]
# Teacher forcing over natural text of several kinds (prose, code, numbers, dialogue): transformers' top-1 token at
# every position, what the approximate CPU mode's agreement is measured against (tests/e2e/test_smollm2.cpp).
TEACHER_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable "
    "metal type, oil-based ink and a wooden screw press into a system that could produce books far faster than "
    "any scribe. Within fifty years, presses were running in more than two hundred cities across Europe, and the "
    "price of a book fell so sharply that ordinary merchants could afford to own a small library.\n\n"
    "def merge_sorted(a, b):\n"
    "    result = []\n"
    "    i, j = 0, 0\n"
    "    while i < len(a) and j < len(b):\n"
    "        if a[i] <= b[j]:\n"
    "            result.append(a[i])\n"
    "            i += 1\n"
    "        else:\n"
    "            result.append(b[j])\n"
    "            j += 1\n"
    "    return result + a[i:] + b[j:]\n\n"
    "In 2023 the city recorded 1,482 millimetres of rain, about 12 percent more than the average of the previous "
    "thirty years. March was the wettest month, with 214 millimetres, while August stayed almost completely dry.\n\n"
    "Customer: Hello, I ordered a pair of running shoes last week but the parcel has not arrived yet.\n"
    "Agent: I am sorry to hear that. Could you give me your order number, please?\n"
    "Customer: Yes, it is 55-2190. The tracking page says it left the warehouse on Monday.\n"
    "Agent: Thank you. I can see that the parcel was delayed at the regional depot; it should reach you tomorrow "
    "morning, and I will refund the shipping cost for the trouble.\n\n"
    "Photosynthesis takes place in the chloroplasts of plant cells. Light energy splits water molecules, releasing "
    "oxygen, while the energy captured in the process is used to turn carbon dioxide into sugars that the plant "
    "stores or burns for growth. Without it, there would be almost no oxygen in the atmosphere."
)

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the ocean.",
    "What is 12 + 25? Answer with just the number.",
]


def log(*a: object) -> None:
    print(*a, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="keep the dequantized state dict here (safetensors) for faster re-runs")
    ap.add_argument("--no-compare", action="store_true", help="skip the cross-checks against transformers' loader")
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_all = time.time()
    path = args.model.resolve()
    if not path.is_file():
        log(f"error: {path} not found (run scripts/fetch-model.sh)")
        return 2
    args.outdir.mkdir(parents=True, exist_ok=True)

    # ---- tokenizer
    t0 = time.time()
    tok = hf_gguf.tokenizer_from_gguf(path)
    log(f"tokenizer from GGUF metadata: {len(tok)} tokens ({time.time() - t0:.1f}s)")

    prompts: list[dict] = []
    for text in PLAIN_PROMPTS:
        prompts.append({"kind": "text", "prompt_text": text})
    for q in CHAT_PROMPTS:
        rendered = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        prompts.append({"kind": "chat", "messages": [{"role": "user", "content": q}], "prompt_text": rendered})
    for p in prompts:
        p["prompt_ids"] = tok(p["prompt_text"], add_special_tokens=False).input_ids
        assert tok.decode(p["prompt_ids"]) == p["prompt_text"], "tokenizer round trip failed"

    tok_check = "skipped"
    if not args.no_compare:
        from transformers import AutoTokenizer

        t0 = time.time()
        hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        same = all(hf_tok(p["prompt_text"], add_special_tokens=False).input_ids == p["prompt_ids"] for p in prompts)
        bos_added = hf_tok(PLAIN_PROMPTS[0]).input_ids[:1] == [tok.bos_token_id]
        tok_check = (f"transformers' GGUF tokenizer gives {'the same' if same else 'DIFFERENT'} ids "
                     f"(with add_special_tokens=False); by default it {'prepends' if bos_added else 'does not prepend'}"
                     f" BOS although tokenizer.ggml.add_bos_token is false")
        log(f"{tok_check} ({time.time() - t0:.1f}s)")
        if not same:
            return 1

    # ---- model
    t0 = time.time()
    model = hf_gguf.load_llama_from_gguf(path, cache_dir=args.cache_dir)
    cfg = model.config
    cfg.eos_token_id = None  # nothing may stop or bias the manual greedy loop
    log(f"model: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, heads {cfg.num_attention_heads}/"
        f"{cfg.num_key_value_heads}, ffn {cfg.intermediate_size}, vocab {cfg.vocab_size}, tied "
        f"{cfg.tie_word_embeddings}, rope_theta {cfg.rope_theta}, rms_eps {cfg.rms_norm_eps} ({time.time() - t0:.1f}s)")

    # ---- cross-check against transformers' own GGUF loader
    compare: dict = {}
    if not args.no_compare:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        t0 = time.time()
        hf_tensors = load_gguf_checkpoint(str(path), return_tensors=True)["tensors"]
        ours = model.state_dict()
        worst = 0.0
        for name, t in hf_tensors.items():
            if name not in ours:
                log(f"  transformers produced an unexpected tensor {name}")
                return 1
            worst = max(worst, float((ours[name] - t.float()).abs().max()))
        missing = [k for k in ours if k not in hf_tensors and not (cfg.tie_word_embeddings and k == "lm_head.weight")]
        compare["tensors_max_abs_diff_vs_transformers_load_gguf_checkpoint"] = worst
        log(f"tensors vs transformers' load_gguf_checkpoint: {len(hf_tensors)} tensors, max |diff| {worst:g}, "
            f"missing {missing} ({time.time() - t0:.1f}s)")
        del hf_tensors
        if worst != 0.0 or missing:
            return 1
        try:
            import accelerate  # noqa: F401
        except ImportError:
            compare["from_pretrained_gguf_file"] = "not run: transformers 4.46.3 requires accelerate for it"
            log("from_pretrained(gguf_file=...): not run (needs accelerate, which is not installed)")
        else:
            from transformers import AutoModelForCausalLM

            t0 = time.time()
            m2 = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                      torch_dtype=torch.float32).eval()
            if cfg.tie_word_embeddings and not m2.config.tie_word_embeddings:
                # transformers 4.46.3 does not notice that a GGUF without output.weight has tied embeddings: it
                # leaves lm_head randomly initialized. Tie it by hand so the rest can be compared.
                compare["from_pretrained_gguf_file_note"] = "lm_head left random (tied embeddings missed); tied by hand"
                log("from_pretrained(gguf_file=...) left lm_head random (tie_word_embeddings missed); tying by hand")
                m2.lm_head.weight = m2.model.embed_tokens.weight
            with torch.no_grad():
                ids = torch.tensor([prompts[0]["prompt_ids"]])
                d = float((model(ids).logits - m2(ids).logits).abs().max())
            compare["from_pretrained_gguf_file_max_abs_logit_diff"] = d
            log(f"from_pretrained(gguf_file=...) vs ours: max |logit diff| {d:g} ({time.time() - t0:.1f}s)")
            del m2
            if d > 1e-4:
                return 1

    # ---- reference cases
    cases = []
    vocab = cfg.vocab_size
    for i, p in enumerate(prompts):
        t0 = time.time()
        greedy, logits = hf_gguf.greedy_with_logits(model, p["prompt_ids"], N_NEW)
        assert logits.shape == (N_NEW + 1, vocab)
        fname = f"case{i}.f32"
        hf_gguf.write_f32(args.outdir / fname, logits)
        text = tok.decode(greedy)
        # margin between the top two logits at each greedy step: small margins are where a tiny numeric
        # difference could flip a greedy token
        top2 = np.sort(logits[:N_NEW], axis=1)[:, -2:]
        min_margin = float((top2[:, 1] - top2[:, 0]).min())
        case = {
            "kind": p["kind"],
            "prompt_text": p["prompt_text"],
            "prompt_ids": p["prompt_ids"],
            "greedy_ids": greedy,
            "greedy_text": text,
            "logits_file": fname,
            "n_steps": N_NEW + 1,
            "vocab": vocab,
            "min_top2_margin": min_margin,
        }
        if "messages" in p:
            case["messages"] = p["messages"]
        cases.append(case)
        log(f"case {i} ({p['kind']}, {len(p['prompt_ids'])} prompt tokens, {time.time() - t0:.1f}s, "
            f"min top-2 margin {min_margin:.3f}): {p['prompt_text']!r}\n    -> {text!r}")

    # ---- teacher forcing over TEACHER_TEXT: top-1 and top-2 margin at every position (logits of the next token)
    t0 = time.time()
    teacher_ids = tok(TEACHER_TEXT, add_special_tokens=False).input_ids
    with torch.no_grad():
        tl = model(torch.tensor([teacher_ids])).logits[0].float().numpy()
    t2 = np.sort(tl, axis=1)[:, -2:]
    teacher = {"text": TEACHER_TEXT, "ids": teacher_ids, "top1": [int(v) for v in tl.argmax(axis=1)],
               "top2_margin": [round(float(v), 5) for v in (t2[:, 1] - t2[:, 0])]}
    log(f"teacher forcing: {len(teacher_ids)} tokens ({time.time() - t0:.1f}s)")

    ref = {
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "arch": "llama",
        "model_file": path.name,
        "model_sha256": sha256_file(path),
        "dtype": "float32",
        "generator": {
            "script": "tests/python/smollm2_reference.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gguf": _version("gguf"),
            "numpy": np.__version__,
            "threads": args.threads,
        },
        "tokenizer": "hf_gguf.tokenizer_from_gguf (byte-level BPE from GGUF metadata, add_special_tokens=False)",
        "tokenizer_check": tok_check,
        "cross_checks": compare,
        "cases": cases,
        "teacher_forced": teacher,
    }
    hf_gguf.write_reference_json(args.outdir / "reference.json", ref)

    if "paris" not in cases[0]["greedy_text"].lower() or "paris" not in cases[2]["greedy_text"].lower():
        log("error: the model did not answer Paris: the loaded weights are wrong")
        return 1
    log(f"wrote {args.outdir / 'reference.json'} and {len(cases)} logits files ({time.time() - t_all:.1f}s total)")
    return 0


def _version(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
