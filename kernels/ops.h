// kernels/ops.h — the CPU definition of every op of a transformer forward pass. The forward pass reaches them
// through the op interface (kernels/backend.h, implemented on the CPU by kernels/cpu/cpu_backend.h).
//
// These are the CPU implementations (fp32, threaded, OpenBLAS for GEMMs). kernels/cuda/ implements the same
// ops with the same argument order on device pointers (fp16/bf16/fp32 storage, fp32 accumulation), and each
// CUDA op is tested against the function of the same name here.
//
// Layout conventions: row-major; a "row" is one token. Shape comments list the outermost dimension first.
// Weights follow Hugging Face's nn.Linear layout [out_features, in_features].
// Pre-padding (EET): a prefill group of B prompts is left-padded to L columns; row b has pad[b] pad columns,
// query column i of row b attends keys j with pad[b] <= j <= i; pad keys are never read, pad query rows are
// written as zeros.
// Thread-safety: every function is reentrant; none keeps state between calls.
#pragma once

#include <cstdint>

#include "kernels/tensor.h"

namespace tessera::ops {

// y[m, n] = x[m, k] · w[n, k]^T (+ bias[n] when bias != nullptr).
void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

// y[m, n] = x[m, k] · w[k, n] (+ bias[n]): the weight stored [in, out] (GPT-2's Conv1D), row stride ldw >= n.
void linear_kn(const float* x, const float* w, int64_t ldw, const float* bias, float* y, int64_t m, int64_t n,
               int64_t k);

// out[i, :] = wte[ids[i], :] (+ wpe[pos[i], :] when wpe != nullptr).  out: [n, dim]
void embedding(const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, float* out, int64_t n,
               int64_t dim);

// y = x / rms(x) * gamma, per row.  x, y: [rows, dim]
void rms_norm(const float* x, const float* gamma, float* y, int64_t rows, int64_t dim, float eps);
// residual += delta; y = rms_norm(residual).  The fused residual add of every layer boundary.
void add_rms_norm(float* residual, const float* delta, const float* gamma, float* y, int64_t rows, int64_t dim,
                  float eps);
// y = (x - mean) / sqrt(var + eps) * gamma + beta, per row.
void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t dim, float eps);
// residual += delta; y = layer_norm(residual).
void add_layer_norm(float* residual, const float* delta, const float* gamma, const float* beta, float* y, int64_t rows,
                    int64_t dim, float eps);

// x[r, c] = gelu_tanh(x[r, c] + bias[c]) in place (GPT-2's "gelu_new").  x: [rows, cols]
void add_bias_gelu(float* x, const float* bias, int64_t rows, int64_t cols);
// out[r, c] = silu(gate_up[r, c]) * gate_up[r, ffn + c].  gate_up: [rows, 2 * ffn], out: [rows, ffn]
void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t ffn);

// Rotary embedding in Hugging Face's rotate-half layout, in place, on n_heads heads of every row.
// x: rows of stride `row_stride` floats, head h at x + row * row_stride + h * head_dim.  pos: [rows]
void rope(float* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
          float theta);

// Copies K and V of n_tokens rows into the cache; rows whose slot is negative (pad columns) are skipped.
// k, v: rows of stride `src_stride`, [n_kv_heads, head_dim] each.  cache_k, cache_v: [n_slots, n_kv_heads,
// max_ctx, head_dim].  Row t goes to slot slots[t] at position positions[t].
void kv_write(const float* k, const float* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
              int64_t n_tokens, float* cache_k, float* cache_v, int64_t n_kv_heads, int64_t max_ctx, int64_t head_dim);

// Causal self-attention of a pre-padded prefill group, online softmax, no [L, L] buffer.
// q: [B, L] rows of stride q_stride holding [n_heads, head_dim]; k, v: [B, L] rows of stride kv_stride holding
// [n_kv_heads, head_dim] (GQA: query head h reads kv head h / (n_heads / n_kv_heads)).  pad: [B].
// out: [B, L, n_heads, head_dim] dense.
void attention_prefill(const float* q, int64_t q_stride, const float* k, const float* v, int64_t kv_stride,
                       const int32_t* pad, float* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                       int64_t head_dim, float scale);

// kv_write into a cache of cache_type: fp32, or fp16 / bf16 (rounded to nearest even).
void kv_write(const float* k, const float* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
              int64_t n_tokens, void* cache_k, void* cache_v, DType cache_type, int64_t n_kv_heads, int64_t max_ctx,
              int64_t head_dim);

// The paged KV cache: cache_k, cache_v: [n_blocks, n_kv_heads, block_size, head_dim] in cache_type. A sequence's
// position p lives in block tables[p / block_size] of its block table (tables + b · table_stride for row b), at row
// p % block_size. (One block of max_ctx tokens per sequence, table_stride 1, is the older slot layout.) kv_write
// above writes it with slots = each token's block and positions = its row in the block (max_ctx = block_size).

// One query token per sequence against its cached positions [starts[b], starts[b] + lens[b]), through its table.
// q: [B] rows of stride q_stride holding [n_heads, head_dim]; out: [B, n_heads, head_dim] dense.
void attention_decode(const float* q, int64_t q_stride, const void* cache_k, const void* cache_v, DType cache_type,
                      const int32_t* tables, int64_t table_stride, const int32_t* starts, const int32_t* lens,
                      float* out, int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size,
                      float scale);

// Causal attention of a pre-padded group whose keys are already in the paged cache (kv_write first): row b's column
// c >= pad[b] is the query at position cached[b] + c − pad[b] and sees the row's positions [0, that position]
// (a cached prefix of cached[b] tokens, then the group's own), read through the row's table; pad query rows are
// written as zeros. q: [B, L] rows of stride q_stride; out: [B, L, n_heads, head_dim] dense. With cached = 0 and an
// fp32 cache it gives attention_prefill's result bit for bit.
void attention_prefill_paged(const float* q, int64_t q_stride, const void* cache_k, const void* cache_v,
                             DType cache_type, const int32_t* tables, int64_t table_stride, const int32_t* pad,
                             const int32_t* cached, float* out, int64_t B, int64_t L, int64_t n_heads,
                             int64_t n_kv_heads, int64_t head_dim, int64_t block_size, float scale);

}  // namespace tessera::ops
