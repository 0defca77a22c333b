"""GGUF <-> Hugging Face helpers shared by tessera's Python reference scripts.

- ``permute_qk`` / ``unpermute_qk``: llama.cpp's convert_hf_to_gguf.py stores Llama's Q and K projection rows
  permuted for its RoPE layout (HF rotates the halves [0, d/2) and [d/2, d) of each head, llama.cpp rotates
  adjacent pairs (2i, 2i+1)). ``permute_qk`` is that conversion (HF -> GGUF), ``unpermute_qk`` its inverse.
- ``gguf_metadata``: the GGUF key/value pairs as plain Python values.
- ``llama_config_from_gguf`` / ``llama_state_dict_from_gguf`` / ``load_llama_from_gguf``: build a float32
  ``LlamaForCausalLM`` from any llama-architecture GGUF, dequantizing every tensor with the PyPI ``gguf``
  package (F32, F16, BF16, Q8_0, Q4_0, Q4_1, K-quants ...). transformers 4.46.3 cannot do this for us through
  ``from_pretrained(gguf_file=...)`` without ``accelerate`` (see docs/testing-references.md).
- ``write_llama_gguf``: write an HF Llama state dict as an F32 GGUF in llama.cpp's layout.
- ``write_f32`` / ``write_reference_json``: the raw little-endian float32 logits files and reference.json.

Only numpy, torch, transformers and gguf are needed; importing this module is cheap (heavy imports are lazy).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------------------------
# Q/K permutation (llama.cpp RoPE layout)


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF -> GGUF, as llama.cpp's convert_hf_to_gguf.py does (for Q pass n_head, n_head; for K n_head, n_head_kv).

    ``w`` is [n_heads_of_this_tensor * head_dim, ...] (rows = output features, HF/torch layout).
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = w.shape[0]
    assert rows % (2 * n_head) == 0, (w.shape, n_head)
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """GGUF -> HF: the inverse of :func:`permute_qk`."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = w.shape[0]
    assert rows % (2 * n_head) == 0, (w.shape, n_head)
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------------------------------------------------------
# Reading GGUF


def _field_value(field: Any) -> Any:
    import gguf

    types = list(field.types)
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        sub = types[-1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    part = field.parts[field.data[0]]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    v = part.tolist()
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def gguf_metadata(reader_or_path: Any, skip_arrays_longer_than: int = 1024) -> dict[str, Any]:
    """All key/value pairs; long arrays (tokens, merges) are replaced by their length to keep this cheap."""
    import gguf

    reader = reader_or_path if isinstance(reader_or_path, gguf.GGUFReader) else gguf.GGUFReader(str(reader_or_path))
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > skip_arrays_longer_than:
            out[key] = f"<array of {len(field.data)}>"
            continue
        out[key] = _field_value(field)
    return out


def llama_config_from_gguf(meta: dict[str, Any], tied: bool):
    from transformers import LlamaConfig

    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama GGUF, got general.architecture={arch!r}")
    if any(k.startswith("llama.rope.scaling") for k in meta):
        raise NotImplementedError("RoPE scaling keys present; not handled by this reference loader")
    hidden = int(meta["llama.embedding_length"])
    n_head = int(meta["llama.attention.head_count"])
    n_head_kv = int(meta.get("llama.attention.head_count_kv", n_head))
    head_dim = hidden // n_head
    rope_dim = int(meta.get("llama.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise NotImplementedError(f"partial RoPE (rope dim {rope_dim} != head dim {head_dim})")
    vocab = meta.get("llama.vocab_size")
    if not isinstance(vocab, int):
        raise ValueError("llama.vocab_size missing; pass a GGUF written by llama.cpp's converter")
    return LlamaConfig(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(meta["llama.feed_forward_length"]),
        num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=n_head,
        num_key_value_heads=n_head_kv,
        max_position_embeddings=int(meta.get("llama.context_length", 2048)),
        rms_norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
        tie_word_embeddings=tied,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
        attention_bias=False,
        mlp_bias=False,
        torch_dtype="float32",
    )


_GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_HF_TO_GGUF = {v: k for k, v in _GGUF_TO_HF.items()}


def hf_name_from_gguf(name: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")  # blk.N.attn_q.weight
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_TO_HF:
        return f"model.layers.{parts[1]}.{_GGUF_TO_HF[parts[2]]}.{parts[3]}"
    raise KeyError(f"unknown GGUF tensor name {name!r}")


def gguf_name_from_hf(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    p = name.split(".")  # model.layers.N.self_attn.q_proj.weight
    if p[:2] == ["model", "layers"]:
        mid = ".".join(p[3:-1])
        if mid in _HF_TO_GGUF:
            return f"blk.{p[2]}.{_HF_TO_GGUF[mid]}.{p[-1]}"
    raise KeyError(f"unknown HF tensor name {name!r}")


def llama_state_dict_from_gguf(path: str | os.PathLike) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """(LlamaConfig, {hf_name: float32 ndarray}, metadata). Every tensor is dequantized; Q/K are un-permuted."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(path))
    meta = gguf_metadata(reader)
    names = {t.name for t in reader.tensors}
    config = llama_config_from_gguf(meta, tied="output.weight" not in names)
    n_head, n_head_kv = config.num_attention_heads, config.num_key_value_heads
    sd: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        # numpy shape is the GGUF shape (ne0 = innermost) reversed, i.e. torch's [out, in].
        w = w.reshape([int(x) for x in reversed(t.shape.tolist())])
        if ".attn_q." in t.name:
            w = unpermute_qk(w, n_head, n_head)
        elif ".attn_k." in t.name:
            w = unpermute_qk(w, n_head, n_head_kv)
        sd[hf_name_from_gguf(t.name)] = np.array(w, dtype=np.float32, order="C", copy=True)  # writable
    return config, sd, meta


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v1".encode()).hexdigest()[:16]


def load_llama_from_gguf(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """A float32 LlamaForCausalLM (eval mode) from a llama GGUF.

    With ``cache_dir`` the dequantized state dict is kept there as safetensors (keyed by path/size/mtime), which
    makes later loads of a quantized model faster.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    cached = Path(cache_dir) / f"{path.stem}.{_file_key(path)}.dequant.safetensors" if cache_dir else None
    if cached is not None and cached.exists():
        from safetensors import safe_open

        with safe_open(str(cached), framework="pt") as f:
            cfg = LlamaConfig.from_dict(json.loads(f.metadata()["config"]))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    else:
        cfg, sd, _ = llama_state_dict_from_gguf(path)
        tensors = {k: torch.from_numpy(v) for k, v in sd.items()}
        if cached is not None:
            from safetensors.torch import save_file

            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            save_file(tensors, str(tmp), metadata={"config": cfg.to_json_string(), "source": str(path)})
            os.replace(tmp, cached)
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():  # skip the random init: every weight is overwritten below
        model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model.float().eval()


# --------------------------------------------------------------------------------------------------------------
# Tokenizer


def tokenizer_from_gguf(path: str | os.PathLike):
    """A PreTrainedTokenizerFast equivalent to the original HF tokenizer.json of a byte-level BPE GGUF.

    transformers 4.46.3's own GGUF tokenizer (AutoTokenizer.from_pretrained(dir, gguf_file=...)) ignores
    ``tokenizer.ggml.pre`` (so for SmolLM2, whose pre-tokenizer splits digits one by one, it merges "2018" into
    multi-digit tokens) and ``tokenizer.ggml.add_bos_token`` (it prepends BOS). This builds the tokenizer the way
    llama.cpp reads the same metadata: digits split individually for pre types that do so (smollm, starcoder,
    refact, command-r, ...), then GPT-2's byte-level regex; control tokens are special added tokens; BOS only when
    add_bos_token is true.
    """
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reader = gguf.GGUFReader(str(path))
    f = reader.fields
    model_kind = _field_value(f["tokenizer.ggml.model"])
    if model_kind != "gpt2":
        raise NotImplementedError(f"tokenizer.ggml.model={model_kind!r}: only byte-level BPE ('gpt2') is handled")
    tokens = _field_value(f["tokenizer.ggml.tokens"])
    types = _field_value(f["tokenizer.ggml.token_type"]) if "tokenizer.ggml.token_type" in f else [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in _field_value(f["tokenizer.ggml.merges"])]
    pre = _field_value(f["tokenizer.ggml.pre"]) if "tokenizer.ggml.pre" in f else "default"
    meta = {k: _field_value(v) for k, v in f.items()
            if k.startswith("tokenizer.") and k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                                        "tokenizer.ggml.merges", "tokenizer.ggml.scores")}

    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt-2", "gpt2", "default"):
        tok.pre_tokenizer = byte_level
    else:
        raise NotImplementedError(f"tokenizer.ggml.pre={pre!r} not mapped in hf_gguf.tokenizer_from_gguf")
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(tokens[i], special=True, normalized=False) for i, ty in enumerate(types) if ty == 3]
    tok.add_special_tokens(special)

    def name(key: str):
        i = meta.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    if add_bos:
        from tokenizers import processors

        bos = name("tokenizer.ggml.bos_token_id")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=name("tokenizer.ggml.bos_token_id"),
        eos_token=name("tokenizer.ggml.eos_token_id"),
        unk_token=name("tokenizer.ggml.unknown_token_id"),
        pad_token=name("tokenizer.ggml.padding_token_id"),
        clean_up_tokenization_spaces=False,
    )
    if "tokenizer.chat_template" in meta:
        fast.chat_template = meta["tokenizer.chat_template"]
    return fast


# --------------------------------------------------------------------------------------------------------------
# Writing GGUF


def write_llama_gguf(path: str | os.PathLike, config: Any, state_dict: dict[str, Any], name: str) -> None:
    """Write an HF Llama (config + state dict of tensors/arrays) as an F32 GGUF in llama.cpp's layout."""
    import gguf

    def arr(t: Any) -> np.ndarray:
        if hasattr(t, "detach"):
            t = t.detach().cpu().float().numpy()
        return np.ascontiguousarray(np.asarray(t, dtype=np.float32))

    n_head = config.num_attention_heads
    n_head_kv = config.num_key_value_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(float(config.rope_theta))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_rope_dimension_count(config.hidden_size // n_head)
    w.add_vocab_size(config.vocab_size)
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))

    order = ["model.embed_tokens.weight"]
    for i in range(config.num_hidden_layers):
        for mid in ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                    "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                    "mlp.down_proj"):
            order.append(f"model.layers.{i}.{mid}.weight")
    order.append("model.norm.weight")
    if not config.tie_word_embeddings:
        order.append("lm_head.weight")
    for hf in order:
        t = arr(state_dict[hf])
        if hf.endswith("self_attn.q_proj.weight"):
            t = permute_qk(t, n_head, n_head)
        elif hf.endswith("self_attn.k_proj.weight"):
            t = permute_qk(t, n_head, n_head_kv)
        w.add_tensor(gguf_name_from_hf(hf), np.ascontiguousarray(t), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------------------------------------------
# Reference files


def write_f32(path: str | os.PathLike, a: Any) -> None:
    """Raw little-endian float32, row-major."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    np.ascontiguousarray(np.asarray(a), dtype="<f4").tofile(str(path))


def read_f32(path: str | os.PathLike, n_steps: int, vocab: int) -> np.ndarray:
    return np.fromfile(str(path), dtype="<f4").reshape(n_steps, vocab)


def _dumps(obj: Any, indent: int = 0) -> str:
    """Indented JSON, but lists of scalars (token ids) on one line."""
    pad, pad1 = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(pad1 + _dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_reference_json(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    text = _dumps(obj) + "\n"
    assert json.loads(text) == obj
    Path(path).write_text(text, encoding="utf-8")


def greedy_with_logits(model: Any, prompt_ids: list[int], n_new: int) -> tuple[list[int], np.ndarray]:
    """Manual greedy loop with the KV cache: returns (greedy ids, logits[n_new + 1, vocab]).

    Step 0 = logits at the last prompt position; step t = logits after feeding the t-th greedy token. No
    generate(): no repetition penalty, no EOS stop, no logits processors.
    """
    import torch

    rows = []
    out_ids: list[int] = []
    past = None
    if getattr(model, "_supports_cache_class", False):
        from transformers import DynamicCache

        past = DynamicCache()  # avoids the legacy tuple-cache path (deprecated in 4.46)
    with torch.no_grad():
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        out = model(input_ids=ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
        rows.append(logits.numpy().copy())
        for _ in range(n_new):
            nxt = int(torch.argmax(logits).item())
            out_ids.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]], dtype=torch.long), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            rows.append(logits.numpy().copy())
    return out_ids, np.stack(rows).astype(np.float32)
