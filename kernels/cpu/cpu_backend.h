// kernels/cpu/cpu_backend.h — the CPU implementation of the op interface (kernels/backend.h): the fp32 ops of
// kernels/ops.h on host memory, threaded by OpenMP, GEMMs through OpenBLAS where installed.
//
// Activations are fp32 (act_dtype() F32). Weights of linear() and the embedding table may be of any DType: they
// are read in place by the typed kernels of kernels/cpu/quant.h. Any other tensor of another dtype is an error
// naming the op. upload() and
// download() are memcpy, sync() does nothing (every op has finished when it returns). Scratch is one host
// buffer, grown on demand. Not thread-safe: one forward pass drives it.
#pragma once

#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/quant.h"

namespace tessera::ops {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  DType act_dtype() const override { return DType::F32; }
  // The KV cache may be fp32 or 16-bit (fp16, bf16: half the memory and the bytes decode reads).
  bool kv_dtype_supported(DType t) const override { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
  // How linear() multiplies block-type weights: fp32 activations (the default) or int8 (kernels/cpu/quant.h).
  void set_activations(Activations a) { act_ = a; }
  Activations activations() const { return act_; }

  void scratch(std::span<const size_t> bytes, std::span<void*> out) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void sync() override {}

  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) override;
  void embedding(const int32_t* ids, const int32_t* pos, const Tensor& wte, const Tensor& wpe,
                 const Tensor& out) override;
  void norm(NormKind kind, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
            float eps) override;
  void add_norm(NormKind kind, const Tensor& residual, const Tensor& delta, const Tensor& gamma, const Tensor& beta,
                const Tensor& y, float eps) override;
  void add_bias_gelu(const Tensor& x, const Tensor& bias) override;
  void silu_mul(const Tensor& gate_up, const Tensor& out) override;
  void rope(const Tensor& x, const int32_t* pos, int64_t head_dim, float theta) override;
  void kv_write(const Tensor& k, const Tensor& v, const int32_t* blocks, const int32_t* rows,
                const KvLayer& cache) override;
  void attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* pad, int64_t B, int64_t L,
                         const AttentionShape& shape, const Tensor& out) override;
  // Every prefill reads its keys from the cache: a cached prefix and the group's own keys take one path, so a
  // result does not depend on what was cached (also with a 16-bit cache).
  bool paged_prefill() const override { return true; }
  void attention_prefill_paged(const Tensor& q, const KvLayer& cache, const int32_t* tables, int64_t table_stride,
                               const int32_t* pad, const int32_t* cached, int64_t B, int64_t L,
                               const AttentionShape& shape, const Tensor& out) override;
  void attention_decode(const Tensor& q, const KvLayer& cache, const int32_t* tables, int64_t table_stride,
                        const int32_t* starts, const int32_t* lens, const AttentionShape& shape, void* workspace,
                        size_t workspace_bytes, const Tensor& out) override;
  void copy_rows(const Tensor& src, int64_t first, int64_t step, const Tensor& dst) override;

 private:
  Activations act_ = Activations::kF32;
  std::vector<char> scratch_;
  std::vector<float> staging_;  // linear() into a strided fp32 output
};

}  // namespace tessera::ops
