// kernels/backend.h — the op interface every backend implements: the forward pass (worker/model/forward.h) is
// written once over it, as ggml's graph of ops is over ggml's backends.
//
// Implementations: ops::CpuBackend (kernels/cpu/cpu_backend.h: the fp32 ops of kernels/ops.h, OpenMP threads,
// host memory) and the CUDA backend (worker/cuda/cuda_ops_backend.h: kernels/cuda/cuda_ops.h on one stream,
// device memory, fp32 / fp16 / bf16 storage). The context a backend carries — the CPU's thread pool, CUDA's stream
// and cuBLAS handle, where its scratch memory lives — stays behind this interface.
//
// Semantics (each op's exact contract is its CPU function in kernels/ops.h, which every backend is tested against):
// - Tensors are 2-D views (kernels/tensor.h). The residual stream is fp32 on every backend; activations and the KV
//   cache are in act_dtype() (a backend may also take other KV types: kv_dtype_supported()); the weights in the dtype
//   their Tensor says. Arithmetic is fp32.
// - Index arrays (ids, positions, blocks, block tables, pad, starts, lens) are int32 in backend memory (put there with
// upload()).
// - Work is ordered: every op sees the results of the ops before it. A backend may run asynchronously (CUDA
//   enqueues on its stream); download() and sync() wait for everything enqueued before them.
// - Errors (a failed launch, a shape the backend does not take) throw tessera::Error naming the backend and the op.
// Not thread-safe: one forward pass drives a backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/check.h"

#include "kernels/tensor.h"

namespace tessera::ops {

enum class NormKind { kRms, kLayer };  // Llama's RMSNorm (gamma only) / GPT-2's LayerNorm (gamma, beta)

// One layer's paged KV cache: [n_blocks, n_kv_heads, block_size, head_dim] for K and for V, in `dtype`. A sequence's
// position p is row p % block_size of block table[p / block_size] of its block table (kernels/ops.h). A backend
// whose decode reads one block per sequence (block_size = the context, table_stride 1) has the slot layout.
struct KvLayer {
  void *k = nullptr, *v = nullptr;
  DType dtype = DType::F32;
  int64_t n_blocks = 0, n_kv_heads = 0, block_size = 0, head_dim = 0;
};

struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;  // this rank's heads; GQA: n_heads % n_kv_heads == 0
  float scale = 1.0f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual DType act_dtype() const = 0;
  // The KV cache's element types this backend takes (act_dtype() at least).
  virtual bool kv_dtype_supported(DType t) const { return t == act_dtype(); }

  // --- memory ---------------------------------------------------------------------------------------------------
  // The buffers of one forward call, all at once: out[i] gets bytes[i] bytes (256-byte aligned). They stay valid
  // until the next scratch() call, which may move them (a larger call re-allocates); the same byte counts give the
  // same addresses again as long as nothing larger came in between (what a replayed CUDA graph relies on).
  virtual void scratch(std::span<const size_t> bytes, std::span<void*> out) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;    // the host source must outlive sync()
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;  // waits for the work before it
  virtual void sync() = 0;
  // Bytes of workspace attention_decode needs for this shape (0: none).
  virtual size_t decode_workspace_bytes(int64_t /*B*/, const AttentionShape& /*shape*/, int64_t /*max_ctx*/) const {
    return 0;
  }

  // --- ops (kernels/ops.h has each one's CPU definition) ---------------------------------------------------------
  // y = x · wᵀ (+ bias).  x [m, k] in act_dtype, w [n, k], bias [1, n] or empty; y [m, n] in act_dtype, or fp32
  // (the logits: never rounded to the storage type; y may then have a stride > n, and bias must be empty).
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) = 0;
  // out (fp32 [n, dim]) = wte[ids] (+ wpe[pos] when wpe is not empty). An id outside [0, wte.rows) gives a zero row
  // (vocabulary parallelism: a token another rank owns); ids, pos: [n].
  virtual void embedding(const int32_t* ids, const int32_t* pos, const Tensor& wte, const Tensor& wpe,
                         const Tensor& out) = 0;
  // y = norm(x) per row; x fp32 (the residual stream), y in act_dtype; beta empty for kRms.
  virtual void norm(NormKind kind, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                    float eps) = 0;
  // residual += delta (in fp32); y = norm(residual).  The fused residual add of every layer boundary.
  virtual void add_norm(NormKind kind, const Tensor& residual, const Tensor& delta, const Tensor& gamma,
                        const Tensor& beta, const Tensor& y, float eps) = 0;
  virtual void add_bias_gelu(const Tensor& x, const Tensor& bias) = 0;  // x = gelu_tanh(x + bias), in place
  virtual void silu_mul(const Tensor& gate_up, const Tensor& out) = 0;  // out = silu(gate) * up
  // HF rotate-half RoPE in place on x's heads (x.cols = n_heads · head_dim, x.stride the fused row's).
  virtual void rope(const Tensor& x, const int32_t* pos, int64_t head_dim, float theta) = 0;
  // Rows of k, v go to block blocks[t] of the cache, at its row rows[t] (block < 0: skipped, a pad column).
  virtual void kv_write(const Tensor& k, const Tensor& v, const int32_t* blocks, const int32_t* rows,
                        const KvLayer& cache) = 0;
  // Causal attention of a pre-padded group of B rows of L columns (q, k, v: [B·L] rows; pad: [B]);
  // out [B·L, n_heads · head_dim] dense; pad keys never read, pad query rows written as zeros.
  virtual void attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* pad, int64_t B,
                                 int64_t L, const AttentionShape& shape, const Tensor& out) = 0;
  // The same group with its keys read from the cache (kv_write first), for rows that start after a cached prefix:
  // row b's column c >= pad[b] is position cached[b] + c − pad[b] and sees positions [0, it] through the row's
  // block table (tables + b · table_stride). Backends that return false from paged_prefill() need not implement
  // it (the forward pass then runs attention_prefill and refuses cached prefixes).
  virtual bool paged_prefill() const { return false; }
  virtual void attention_prefill_paged(const Tensor& q, const KvLayer& cache, const int32_t* tables,
                                       int64_t table_stride, const int32_t* pad, const int32_t* cached, int64_t B,
                                       int64_t L, const AttentionShape& shape, const Tensor& out) {
    (void)q, (void)cache, (void)tables, (void)table_stride, (void)pad, (void)cached, (void)B, (void)L, (void)shape;
    (void)out;
    throw Error(std::string(name()) +
                " backend: attention_prefill_paged is not implemented (paged_prefill() is false)");
  }
  // One query row per sequence against its positions [starts[b], starts[b] + lens[b]), through its block table
  // (tables + b · table_stride). workspace: decode_workspace_bytes() bytes of backend memory (nullptr when 0).
  virtual void attention_decode(const Tensor& q, const KvLayer& cache, const int32_t* tables, int64_t table_stride,
                                const int32_t* starts, const int32_t* lens, const AttentionShape& shape,
                                void* workspace, size_t workspace_bytes, const Tensor& out) = 0;
  // dst row i = src row (first + i · step), i < dst.rows.
  virtual void copy_rows(const Tensor& src, int64_t first, int64_t step, const Tensor& dst) = 0;
};

}  // namespace tessera::ops
