#!/usr/bin/env python3
"""tests/python/make_quant_fixtures.py OUTDIR — reference files for tests/formats/test_quant_fixtures.cpp.

Writes, with implementations nobody on this project wrote (PyPI `gguf` 0.10.0 and `safetensors`):
  OUTDIR/fixtures.gguf          F32, F16, BF16, Q8_0, Q4_0, Q4_1 tensors of random data + metadata of many types
                                (gguf.GGUFWriter; quantized with gguf.quants.quantize), and Q4_K, Q6_K tensors of
                                random but valid super-block bytes (gguf 0.10 cannot quantize K types; its
                                dequantize does them)
  OUTDIR/model.safetensors      F32, F16, BF16 tensors (safetensors.torch.save_file)
  OUTDIR/<file>.<tensor>.f32    the expected values, raw little-endian float32 (gguf.quants.dequantize for the
                                GGUF tensors; torch's .float() for the safetensors ones)
  OUTDIR/fixtures.json          {"gguf": {"file", "tensors": [{name, type, shape, ref}], "metadata": [{key,
                                type, value}]}, "safetensors": {...same tensors list...}}
Deterministic (fixed seed). Shapes are PyTorch order, as the C++ readers report them.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    manifest = {"gguf": {"file": "fixtures.gguf", "tensors": [], "metadata": []},
                "safetensors": {"file": "model.safetensors", "tensors": []}}

    # --- GGUF ---
    writer = gguf.GGUFWriter(os.path.join(out, "fixtures.gguf"), arch="llama")
    manifest["gguf"]["metadata"].append({"key": "general.architecture", "type": "string", "value": "llama"})
    scalars = [
        ("test.u8", V.UINT8, 200), ("test.i8", V.INT8, -100), ("test.u16", V.UINT16, 60000),
        ("test.i16", V.INT16, -30000), ("test.u32", V.UINT32, 4000000000), ("test.i32", V.INT32, -2000000000),
        ("test.u64", V.UINT64, 2**62 + 7), ("test.i64", V.INT64, -(2**62) - 9), ("test.f32", V.FLOAT32, 0.15625),
        ("test.f64", V.FLOAT64, 1e-300), ("test.bool_true", V.BOOL, True), ("test.bool_false", V.BOOL, False),
        ("test.str", V.STRING, "h\u00e9llo, w\u00f6rld \U0001F600"),
    ]
    for key, vtype, value in scalars:
        writer.add_key_value(key, value, vtype)
        manifest["gguf"]["metadata"].append({"key": key, "type": vtype.name.lower(), "value": value})
    arrays = [
        ("test.arr_i32", [3, -1, 4, -1, 5, -9, 2, 6]),
        ("test.arr_str", ["<s>", "</s>", "\u0120the", "", "a b"]),
        ("test.arr_f32", [0.5, -1.25, 3.0, 1e-3]),
        ("test.arr_bool", [True, False, True]),
    ]
    for key, value in arrays:
        writer.add_array(key, value)
        kind = ("int" if isinstance(value[0], int) and not isinstance(value[0], bool) else
                "bool" if isinstance(value[0], bool) else "float" if isinstance(value[0], float) else "string")
        if kind == "float":  # stored as float32
            value = [float(np.float32(v)) for v in value]
        manifest["gguf"]["metadata"].append({"key": key, "type": "array_" + kind, "value": value})

    specs = [
        ("w_f32", Q.F32, (7, 96)), ("w_f16", Q.F16, (7, 96)), ("w_bf16", Q.BF16, (7, 96)),
        ("w_q8_0", Q.Q8_0, (7, 96)), ("w_q4_0", Q.Q4_0, (7, 96)), ("w_q4_1", Q.Q4_1, (7, 96)),
        ("w3_q8_0", Q.Q8_0, (3, 2, 64)), ("w3_q4_1", Q.Q4_1, (2, 3, 32)), ("v_f32", Q.F32, (50,)),
        ("v_q4_0", Q.Q4_0, (64,)),
    ]
    for name, qtype, shape in specs:
        data = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0)).astype(np.float32)
        data.flat[0] = 0.0  # an exact zero in the mix
        quant = gguf.quants.quantize(data, qtype)
        ref = gguf.quants.dequantize(quant, qtype).astype(np.float32).reshape(shape)
        if qtype in (Q.F32, Q.F16):
            writer.add_tensor(name, quant)
        else:
            writer.add_tensor(name, quant, raw_dtype=qtype)
        ref_file = f"fixtures.gguf.{name}.f32"
        ref.astype("<f4").tofile(os.path.join(out, ref_file))
        manifest["gguf"]["tensors"].append({"name": name, "type": qtype.name, "shape": list(shape), "ref": ref_file})
    # K-quants: random bytes in every field, with finite, moderate fp16 super-block scales (a few of them subnormal
    # or zero). Shapes: rows of 1-3 super-blocks, a 3-D tensor whose C++ view [3, 2*256] has rows spanning two
    # GGUF rows, a 1-D one, and a tall one for column-block reads not aligned to 256.
    k_specs = [
        ("w_q4_k", Q.Q4_K, (5, 512)), ("w_q6_k", Q.Q6_K, (5, 512)), ("w3_q4_k", Q.Q4_K, (3, 2, 256)),
        ("w3_q6_k", Q.Q6_K, (2, 3, 256)), ("v_q6_k", Q.Q6_K, (256,)), ("v_q4_k", Q.Q4_K, (256,)),
        ("w_q4_k_tall", Q.Q4_K, (9, 768)), ("w_q6_k_tall", Q.Q6_K, (9, 768)),
    ]
    for name, qtype, shape in k_specs:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = int(np.prod(shape)) // block_size
        blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

        def scales(n):
            v = (rng.uniform(-1.0, 1.0, size=n) * 10.0 ** rng.uniform(-4.0, -1.0, size=n)).astype(np.float16)
            v[rng.integers(0, n)] = np.float16(3e-6)  # a subnormal
            if n > 1:
                v[rng.integers(0, n)] = np.float16(0.0)
            assert np.all(np.isfinite(v))
            return v.reshape(n, 1).view(np.uint8)

        if qtype == Q.Q4_K:  # {fp16 d, fp16 dmin, 12 scale bytes, 128 quant bytes}
            blocks[:, 0:2] = scales(n_blocks)
            blocks[:, 2:4] = scales(n_blocks)
        else:  # Q6_K: {128 ql, 64 qh, 16 int8 scales, fp16 d}
            blocks[:, 208:210] = scales(n_blocks)
        raw = blocks.reshape(*shape[:-1], shape[-1] // block_size * type_size)
        ref = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(shape)
        assert np.all(np.isfinite(ref))
        writer.add_tensor(name, raw, raw_dtype=qtype)
        ref_file = f"fixtures.gguf.{name}.f32"
        ref.astype("<f4").tofile(os.path.join(out, ref_file))
        manifest["gguf"]["tensors"].append({"name": name, "type": qtype.name, "shape": list(shape), "ref": ref_file})

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    # --- safetensors ---
    import torch
    from safetensors.torch import save_file
    tensors = {}
    for name, dtype, shape in [("st_f32", torch.float32, (5, 33)), ("st_f16", torch.float16, (4, 3, 8)),
                               ("st_bf16", torch.bfloat16, (9, 17)), ("st_vec", torch.float32, (11,))]:
        t = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(dtype)
        tensors[name] = t
        ref_file = f"model.safetensors.{name}.f32"
        t.float().numpy().astype("<f4").tofile(os.path.join(out, ref_file))
        manifest["safetensors"]["tensors"].append(
            {"name": name, "type": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype],
             "shape": list(shape), "ref": ref_file})
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt", "origin": "fixtures"})

    with open(os.path.join(out, "fixtures.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote fixtures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
