// kernels/cuda/cuda_ops.h — the CUDA backend of kernels/ops.h: the same ops, the same argument order, on
// device pointers.
//
// In:  device pointers (every tensor and every index array: ids, pos, pad, slots, starts, lens), a storage
//      dtype for the floating-point tensors of the call (F32, F16 or BF16; arithmetic is always fp32), and a
//      stream. Out: a Status; on success the work is enqueued on `stream` (nothing synchronizes).
// Each op entry validates what it can see on the host (sizes, strides, alignment, supported head dims) and
// returns an error naming the op and the bad argument before anything is launched; a launch error is returned
// with the expression, file and line (cuda_check.h). Values inside device arrays (token ids, slots, positions)
// are the caller's contract, as in ops.h, and are not read back.
// Thread-safety: every op is reentrant. linear() keeps one cuBLAS handle per (host thread, device).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/sampling.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/tensor.h"

namespace tessera::gpu {

// Storage type of activations, weights and the KV cache (kernels/tensor.h's, shared with the op interface). F32 is
// the check mode (bitwise-close to the CPU path).
using ops::DType;
using ops::dtype_name;
using ops::dtype_size;

// dst[i] = src[i] rounded to nearest even in dtype (F32: copied exactly).  src: [n] fp32; dst: [n] in dtype (weight
// upload: fp32 host tensors staged on the device, then stored in the storage type).
Status convert_from_f32(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream);

// y[m, n] = x[m, k] · w[n, k]^T (+ bias[n]).  cuBLAS on tensor cores for F16/BF16 (fp32 accumulation), plain
// fp32 (no TF32) for F32.
Status linear(const void* x, const void* w, const void* bias, void* y, int64_t m, int64_t n, int64_t k, DType dtype,
              cudaStream_t stream);

// out[i, :] = wte[ids[i], :] (+ wpe[pos[i], :] when wpe != nullptr).  ids, pos: [n] int32; out: [n, dim]
Status embedding(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, void* out, int64_t n,
                 int64_t dim, DType dtype, cudaStream_t stream);

// y = x / rms(x) * gamma per row.  x, y: [rows, dim]; gamma: [dim]; any dim up to 65536 (and beyond).
Status rms_norm(const void* x, const void* gamma, void* y, int64_t rows, int64_t dim, float eps, DType dtype,
                cudaStream_t stream);
// residual += delta (stored in dtype); y = rms_norm(residual).  residual, delta, y: [rows, dim]
Status add_rms_norm(void* residual, const void* delta, const void* gamma, void* y, int64_t rows, int64_t dim, float eps,
                    DType dtype, cudaStream_t stream);
// y = (x - mean) / sqrt(var + eps) * gamma + beta per row.
Status layer_norm(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t dim, float eps,
                  DType dtype, cudaStream_t stream);
// residual += delta; y = layer_norm(residual).
Status add_layer_norm(void* residual, const void* delta, const void* gamma, const void* beta, void* y, int64_t rows,
                      int64_t dim, float eps, DType dtype, cudaStream_t stream);

// Mixed precision: the residual stream in fp32 (as vLLM / TensorRT-LLM keep it), everything else in `dtype`.
// x, residual: fp32 [rows, dim]; delta, y: [rows, dim] and gamma, beta: [dim] in dtype. residual += delta in fp32
// (never rounded to dtype); the statistics are taken on the fp32 row; y is rounded to dtype once. With
// dtype == F32 these are exactly rms_norm / add_rms_norm / layer_norm / add_layer_norm.
Status rms_norm_mixed(const float* x, const void* gamma, void* y, int64_t rows, int64_t dim, float eps, DType dtype,
                      cudaStream_t stream);
Status add_rms_norm_mixed(float* residual, const void* delta, const void* gamma, void* y, int64_t rows, int64_t dim,
                          float eps, DType dtype, cudaStream_t stream);
Status layer_norm_mixed(const float* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t dim,
                        float eps, DType dtype, cudaStream_t stream);
Status add_layer_norm_mixed(float* residual, const void* delta, const void* gamma, const void* beta, void* y,
                            int64_t rows, int64_t dim, float eps, DType dtype, cudaStream_t stream);
// The fp32 residual stream's start: out (fp32) = wte[ids] (+ wpe[pos]) with wte, wpe in dtype, the sum in fp32.
Status embedding_f32(const int32_t* ids, const int32_t* pos, const void* wte, const void* wpe, float* out, int64_t n,
                     int64_t dim, DType dtype, cudaStream_t stream);

// x[r, c] = gelu_tanh(x[r, c] + bias[c]) in place.  x: [rows, cols]; bias: [cols] (nullptr: no bias)
Status add_bias_gelu(void* x, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream);
// out[r, c] = silu(gate_up[r, c]) * gate_up[r, ffn + c].  gate_up: [rows, 2 * ffn]; out: [rows, ffn]
Status silu_mul(const void* gate_up, void* out, int64_t rows, int64_t ffn, DType dtype, cudaStream_t stream);

// HF rotate-half RoPE in place.  x: rows of stride row_stride elements, head h at row * row_stride + h * head_dim;
// pos: [rows] int32.  head_dim even.
Status rope(void* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
            float theta, DType dtype, cudaStream_t stream);

// k, v: [n_tokens] rows of stride src_stride holding [n_kv_heads, head_dim]; slots, positions: [n_tokens] int32
// (slot < 0: skipped).  cache_k, cache_v: [n_slots, n_kv_heads, max_ctx, head_dim].
Status kv_write(const void* k, const void* v, int64_t src_stride, const int32_t* slots, const int32_t* positions,
                int64_t n_tokens, void* cache_k, void* cache_v, int64_t n_kv_heads, int64_t max_ctx, int64_t head_dim,
                DType dtype, cudaStream_t stream);

// Causal attention of a left-padded prefill group (flash-attention: tiled, online softmax, no [L, L] buffer).
// q: [B, L] rows of stride q_stride holding [n_heads, head_dim]; k, v: [B, L] rows of stride kv_stride holding
// [n_kv_heads, head_dim]; pad: [B] int32; out: [B, L, n_heads, head_dim].  Pad keys are never loaded, pad
// query rows are written as zeros.  F16/BF16 with head_dim 64 or 128 run on tensor cores (mma.sync m16n8k16);
// F32 and other head dims (<= 256) run on the fp32 FMA kernel.
Status attention_prefill(const void* q, int64_t q_stride, const void* k, const void* v, int64_t kv_stride,
                         const int32_t* pad, void* out, int64_t B, int64_t L, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, float scale, DType dtype, cudaStream_t stream);

// Which kernel attention_decode runs. Split: flash-decoding (key chunks across blocks, a combine pass), head_dim
// 64, 128 or 256. WarpPerHead: one warp per (sequence, query head) over all its keys, any other head_dim <= 256
// (e.g. 16, 80, 96); simple and latency-bound, for the shapes the split kernel does not take.
enum class DecodeKernel { Split, WarpPerHead };

// Work split of attention_decode, planned on the host from shapes alone; testable by itself. For WarpPerHead the
// plan is always n_splits 1, chunk max_ctx, heads_per_block 1, workspace_bytes 0.
struct DecodePlan {
  DecodeKernel kernel = DecodeKernel::Split;
  int n_splits = 1;         // key chunks per (sequence, head); 1: no combine pass
  int64_t chunk = 0;        // keys per split (Split: a multiple of the kernel's key tile)
  int heads_per_block = 1;  // query heads of one KV head handled by one block (shares K/V loads)
  size_t workspace_bytes = 0;
};
DecodePlan plan_attention_decode(int64_t B, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx,
                                 int n_sms);

// One query token per sequence against keys [starts[b], starts[b] + lens[b]) of slot slots[b].
// q: [B] rows of stride q_stride holding [n_heads, head_dim]; cache_k, cache_v: [n_slots, n_kv_heads, max_ctx,
// head_dim]; slots, starts, lens: [B] int32; out: [B, n_heads, head_dim].  Any head_dim in [1, 256]: 64, 128 and
// 256 run the split kernel, the others the warp-per-head kernel (DecodePlan::kernel).  An empty range (lens[b] 0)
// writes zeros.  workspace: device memory of at least plan_attention_decode(...).workspace_bytes (may be nullptr
// when 0, always the case for the warp-per-head kernel).
Status attention_decode(const void* q, int64_t q_stride, const void* cache_k, const void* cache_v, const int32_t* slots,
                        const int32_t* starts, const int32_t* lens, void* out, int64_t B, int64_t n_heads,
                        int64_t n_kv_heads, int64_t head_dim, int64_t max_ctx, float scale, void* workspace,
                        size_t workspace_bytes, DType dtype, cudaStream_t stream);

// --- sampling (sampling.cu; algorithm, cost and precision in sampling.cuh and docs/cuda-kernels.md) ------------
// One row's sampling request (device array [B]): the sequence's settings (common/sampling.h, validated on the
// device by the same SamplingParams::first_invalid) and its decode step: u = philox::sampling_uniform(seed, step, 0).
struct SampleParams {
  SamplingParams sampling;
  uint64_t step = 0;
};
inline constexpr int kSampleMaxLogprobs = kMaxLogprobs;

// One token of a row whose logit the sampler changes (device array, CSR by row; sample_tokens): the steps of
// worker/sampler.h that touch single tokens — logit_bias, the min_tokens mask, the penalties — applied with the
// CPU's fp32 roundings. A token appears at most once per row.
inline constexpr uint32_t kSampleInPrompt = 1u;  // a prompt token: the repetition penalty applies
inline constexpr uint32_t kSampleStopId = 2u;    // masked (-inf) while the row's step < min_tokens
struct SampleEdit {
  int32_t token;   // [0, V)
  int32_t count;   // >= 0: times generated (presence / frequency penalties; > 0: the repetition penalty too)
  float bias;      // logit_bias, in [-kMaxLogitBiasValue, kMaxLogitBiasValue]; 0: none
  uint32_t flags;  // kSampleInPrompt | kSampleStopId
};

enum class SampleError : int32_t {
  kNone = 0,
  kNonFiniteLogit = 1,  // error_index: the first non-finite logit, error_value: its value
  kBadPenalty = 2,      // error_index: the row's edit (token outside [0, V), count < 0, a bias out of range, a
                        // token listed twice, or offsets that decrease); error_value: its token
  kBadParams = 3,       // a parameter outside the ranges above
  kInternal = 4,        // a search found no token: a bug, never expected
  kAllMasked = 5,       // min_tokens masked every token of the vocabulary
};

// One row's result (device array [B]), written by sample_tokens.
struct SampleOut {
  int32_t token;  // -1 on error
  float logprob;  // log_softmax(raw logits)[token]
  int32_t n_top;  // min(n_logprobs, V)
  SampleError error;
  int32_t error_index;
  float error_value;
  int32_t n_passes;  // passes over the row this one took (diagnostic: tests assert the refinement path ran)
  int32_t top_ids[kSampleMaxLogprobs];     // [n_top]: raw log_softmax, descending, ties to the lowest id
  float top_logprobs[kSampleMaxLogprobs];  // [n_top]
};

// Device bytes of sample_tokens' workspace for B rows of V logits (the edit bitmaps: B · ceil(V / 32) words).
size_t sample_workspace_bytes(int64_t B, int64_t V);

// One token per row, exactly worker/sampler.h's semantics (logit_bias → min_tokens mask → repetition, presence
// and frequency penalties → greedy below 1e-5 | temperature → min-p → top-k → top-p → inverse-CDF draw of the
// Philox uniform; logprobs from the raw log_softmax).
// logits: [B, V] fp32; params, out: [B]. Edits (nullptr, nullptr: none): row b's edited tokens are
// edits[edit_offsets[b] .. edit_offsets[b + 1]) ([B + 1] offsets, CSR), distinct tokens. A row's generated
// tokens are listed (with their counts) when a presence, frequency or repetition penalty is set, its prompt's
// distinct tokens (kSampleInPrompt) when a repetition penalty is, its stop ids (kSampleStopId) when min_tokens
// is; its logit_bias entries always. workspace: >= sample_workspace_bytes(B, V) device bytes, 4-byte aligned,
// when edits are given (may be nullptr otherwise). V in [1, 2^24].
// Deterministic: the same inputs give the same outputs on every run (integer atomics only, fixed-order float
// reductions). Per-row problems (a non-finite logit, a bad edit) are reported in out[b].error, not in the
// Status: sample_error_text() turns them into messages.
Status sample_tokens(const float* logits, int64_t B, int64_t V, const SampleParams* params, const int32_t* edit_offsets,
                     const SampleEdit* edits, void* workspace, size_t workspace_bytes, SampleOut* out,
                     cudaStream_t stream);

// "" when out.error is kNone; otherwise a message naming the row and the index, e.g. "row 3: logits[42] is nan:
// the model produced a non-finite logit" (the CPU sampler's message, with the row).
std::string sample_error_text(const SampleOut& out, int64_t row);

// The number of multiprocessors of the current device (cached per device).
int device_sm_count();

}  // namespace tessera::gpu
