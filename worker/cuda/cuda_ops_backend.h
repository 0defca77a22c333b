// worker/cuda/cuda_ops_backend.h — the CUDA implementation of the op interface (kernels/backend.h): the kernels of
// kernels/cuda/cuda_ops.h on one stream, in one storage dtype (F32: the check mode; BF16 / F16 with fp32
// accumulation), device memory.
//
// The context: the stream (every op enqueues on it; nothing synchronizes but download() and sync()), a cuBLAS
// handle on that stream for the fp32-output GEMM of the logits, the device's SM count (the decode attention's work
// split) and the scratch arena it carves each call's buffers from (owned by the runner, whose CUDA graphs key on its
// base address). The residual stream is fp32: norm / add_norm are the *_mixed kernels, embedding is embedding_f32.
// Under vocabulary parallelism the runner's weight upload appends one zero row to the embedding table, so an id equal
// to wte.rows reads zeros (the op interface's "outside the table"); other ids outside the table are a caller bug.
// Errors: a failed launch or a shape a kernel does not take throws tessera::Error("cuda backend: <op>: ..."),
// with the expression, file and line. Not thread-safe: one forward pass drives it.
#pragma once

#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "worker/cuda/device_arena.h"

namespace tessera::worker {

class CudaOps final : public ops::Backend {
 public:
  CudaOps(ops::DType dtype, cudaStream_t stream, DeviceArena& scratch);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  const char* name() const override { return "cuda"; }
  ops::DType act_dtype() const override { return dtype_; }
  cudaStream_t stream() const { return stream_; }

  void scratch(std::span<const size_t> bytes, std::span<void*> out) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void sync() override;
  size_t decode_workspace_bytes(int64_t B, const ops::AttentionShape& shape, int64_t max_ctx) const override;

  void linear(const ops::Tensor& x, const ops::Tensor& w, const ops::Tensor& bias, const ops::Tensor& y) override;
  void embedding(const int32_t* ids, const int32_t* pos, const ops::Tensor& wte, const ops::Tensor& wpe,
                 const ops::Tensor& out) override;
  void norm(ops::NormKind kind, const ops::Tensor& x, const ops::Tensor& gamma, const ops::Tensor& beta,
            const ops::Tensor& y, float eps) override;
  void add_norm(ops::NormKind kind, const ops::Tensor& residual, const ops::Tensor& delta, const ops::Tensor& gamma,
                const ops::Tensor& beta, const ops::Tensor& y, float eps) override;
  void add_bias_gelu(const ops::Tensor& x, const ops::Tensor& bias) override;
  void silu_mul(const ops::Tensor& gate_up, const ops::Tensor& out) override;
  void rope(const ops::Tensor& x, const int32_t* pos, int64_t head_dim, float theta) override;
  void kv_write(const ops::Tensor& k, const ops::Tensor& v, const int32_t* blocks, const int32_t* rows,
                const ops::KvLayer& cache) override;
  void attention_prefill(const ops::Tensor& q, const ops::Tensor& k, const ops::Tensor& v, const int32_t* pad,
                         int64_t B, int64_t L, const ops::AttentionShape& shape, const ops::Tensor& out) override;
  void attention_decode(const ops::Tensor& q, const ops::KvLayer& cache, const int32_t* tables, int64_t table_stride,
                        const int32_t* starts, const int32_t* lens, const ops::AttentionShape& shape, void* workspace,
                        size_t workspace_bytes, const ops::Tensor& out) override;
  void copy_rows(const ops::Tensor& src, int64_t first, int64_t step, const ops::Tensor& dst) override;

 private:
  ops::DType dtype_;
  cudaStream_t stream_;
  DeviceArena& scratch_;
  void* cublas_ = nullptr;  // cublasHandle_t
  int n_sms_ = 1;
};

}  // namespace tessera::worker
