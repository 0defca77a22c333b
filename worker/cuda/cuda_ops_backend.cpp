// worker/cuda/cuda_ops_backend.cpp — see cuda_ops_backend.h: each op checks what its kernel cannot take (a dtype
// other than the storage one, a strided tensor where the kernel wants a dense one), then enqueues the kernel.
#include "worker/cuda/cuda_ops_backend.h"

#include <cublas_v2.h>

#include <string>

#include "common/check.h"
#include "kernels/cuda/cuda_ops.h"

namespace tessera::worker {

using gpu::Status;
using ops::DType;
using ops::Tensor;

namespace {

void throw_if(const Status& s, const char* op) { throw_if_failed(s, "cuda backend", op); }

void need(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string("cuda backend: ") + op + ": " + what);
}

cudaDataType_t cuda_type(DType t) { return t == DType::F32 ? CUDA_R_32F : t == DType::F16 ? CUDA_R_16F : CUDA_R_16BF; }

const void* ptr(const Tensor& t) { return t.empty() ? nullptr : t.data; }

}  // namespace

CudaOps::CudaOps(DType dtype, cudaStream_t stream, DeviceArena& scratch)
    : dtype_(dtype), stream_(stream), scratch_(scratch) {
  throw_if(
      [&]() -> Status {
        cublasHandle_t h = nullptr;
        TESSERA_CUBLAS_TRY(cublasCreate(&h));
        cublas_ = h;
        TESSERA_CUBLAS_TRY(cublasSetStream(h, stream_));
        return Status::success();
      }(),
      "cuBLAS");
  n_sms_ = gpu::device_sm_count();
}

CudaOps::~CudaOps() {
  if (cublas_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
}

// --- memory ------------------------------------------------------------------------------------------------------
void CudaOps::scratch(std::span<const size_t> bytes, std::span<void*> out) {
  TESSERA_CHECK(bytes.size() == out.size());
  size_t total = 0;
  for (size_t b : bytes) total += DeviceArena::round_up(std::max<size_t>(b, 1));
  if (total > scratch_.capacity()) {
    sync();                                                    // the old arena may still be read by enqueued work
    throw_if(scratch_.reserve(total + total / 4), "scratch");  // headroom: fewer re-makes as groups grow
  }
  scratch_.reset();
  for (size_t i = 0; i < bytes.size(); ++i) out[i] = scratch_.take(std::max<size_t>(bytes[i], 1));
}

void CudaOps::upload(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
        return Status::success();
      }(),
      "upload");
}

void CudaOps::download(void* host_dst, const void* src, size_t bytes) {
  throw_if(
      [&]() -> Status {
        if (bytes > 0) TESSERA_CUDA_TRY(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
        TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
        return Status::success();
      }(),
      "download");
}

void CudaOps::sync() {
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
        return Status::success();
      }(),
      "sync");
}

size_t CudaOps::decode_workspace_bytes(int64_t B, const ops::AttentionShape& s, int64_t max_ctx) const {
  return gpu::plan_attention_decode(B, s.n_heads, s.n_kv_heads, s.head_dim, max_ctx, n_sms_).workspace_bytes;
}

// --- ops -----------------------------------------------------------------------------------------------------------
void CudaOps::linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  need(x.dtype == dtype_ && w.dtype == dtype_ && x.contiguous() && w.contiguous(), "linear",
       "x and w must be dense and in the storage dtype");
  TESSERA_CHECK(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows);
  if (y.dtype == dtype_ && y.contiguous()) {
    need(bias.empty() || bias.dtype == dtype_, "linear", "bias in the storage dtype");
    throw_if(gpu::linear(x.data, w.data, ptr(bias), y.data, x.rows, w.rows, x.cols, dtype_, stream_), "linear");
    return;
  }
  // The logits: fp32 out of cuBLAS (never rounded to the storage dtype) into a block of stride y.stride.
  need(y.dtype == DType::F32 && bias.empty(), "linear", "an fp32 or strided output takes no bias");
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t t = cuda_type(dtype_);
  throw_if(
      [&]() -> Status {
        // Column-major: yᵀ[n, m] (leading dimension stride) = w[n, k] · xᵀ.
        TESSERA_CUBLAS_TRY(cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N,
                                        static_cast<int>(w.rows), static_cast<int>(x.rows), static_cast<int>(x.cols),
                                        &alpha, w.data, t, static_cast<int>(w.cols), x.data, t,
                                        static_cast<int>(x.cols), &beta, y.data, CUDA_R_32F, static_cast<int>(y.stride),
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return Status::success();
      }(),
      "linear (fp32 out)");
}

void CudaOps::embedding(const int32_t* ids, const int32_t* pos, const Tensor& wte, const Tensor& wpe,
                        const Tensor& out) {
  need(out.dtype == DType::F32 && out.contiguous(), "embedding", "the output is the fp32 residual stream");
  throw_if(gpu::embedding_f32(ids, pos, wte.data, ptr(wpe), static_cast<float*>(out.data), out.rows, out.cols, dtype_,
                              stream_),
           "embedding");
}

void CudaOps::norm(ops::NormKind kind, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                   float eps) {
  need(x.dtype == DType::F32 && y.dtype == dtype_, "norm", "x is the fp32 residual, y in the storage dtype");
  const auto* xf = static_cast<const float*>(x.data);
  throw_if(kind == ops::NormKind::kRms
               ? gpu::rms_norm_mixed(xf, gamma.data, y.data, x.rows, x.cols, eps, dtype_, stream_)
               : gpu::layer_norm_mixed(xf, gamma.data, beta.data, y.data, x.rows, x.cols, eps, dtype_, stream_),
           "norm");
}

void CudaOps::add_norm(ops::NormKind kind, const Tensor& residual, const Tensor& delta, const Tensor& gamma,
                       const Tensor& beta, const Tensor& y, float eps) {
  need(residual.dtype == DType::F32 && delta.dtype == dtype_ && y.dtype == dtype_, "add_norm",
       "the residual is fp32, delta and y in the storage dtype");
  auto* r = static_cast<float*>(residual.data);
  throw_if(kind == ops::NormKind::kRms ? gpu::add_rms_norm_mixed(r, delta.data, gamma.data, y.data, residual.rows,
                                                                 residual.cols, eps, dtype_, stream_)
                                       : gpu::add_layer_norm_mixed(r, delta.data, gamma.data, beta.data, y.data,
                                                                   residual.rows, residual.cols, eps, dtype_, stream_),
           "add_norm");
}

void CudaOps::add_bias_gelu(const Tensor& x, const Tensor& bias) {
  throw_if(gpu::add_bias_gelu(x.data, ptr(bias), x.rows, x.cols, dtype_, stream_), "add_bias_gelu");
}

void CudaOps::silu_mul(const Tensor& gate_up, const Tensor& out) {
  throw_if(gpu::silu_mul(gate_up.data, out.data, out.rows, out.cols, dtype_, stream_), "silu_mul");
}

void CudaOps::rope(const Tensor& x, const int32_t* pos, int64_t head_dim, float theta) {
  throw_if(gpu::rope(x.data, pos, x.rows, x.cols / head_dim, head_dim, x.stride, theta, dtype_, stream_), "rope");
}

void CudaOps::kv_write(const Tensor& k, const Tensor& v, const int32_t* blocks, const int32_t* rows,
                       const ops::KvLayer& cache) {
  TESSERA_CHECK(k.stride == v.stride && cache.dtype == dtype_);
  // The kernel's slot layout is the paged one with a block per slot: block = slot, row = position.
  throw_if(gpu::kv_write(k.data, v.data, k.stride, blocks, rows, k.rows, cache.k, cache.v, cache.n_kv_heads,
                         cache.block_size, cache.head_dim, dtype_, stream_),
           "kv_write");
}

void CudaOps::attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* pad, int64_t B,
                                int64_t L, const ops::AttentionShape& s, const Tensor& out) {
  TESSERA_CHECK(k.stride == v.stride && q.rows == B * L && out.contiguous());
  throw_if(gpu::attention_prefill(q.data, q.stride, k.data, v.data, k.stride, pad, out.data, B, L, s.n_heads,
                                  s.n_kv_heads, s.head_dim, s.scale, dtype_, stream_),
           "attention_prefill");
}

void CudaOps::attention_decode(const Tensor& q, const ops::KvLayer& cache, const int32_t* tables, int64_t table_stride,
                               const int32_t* starts, const int32_t* lens, const ops::AttentionShape& s,
                               void* workspace, size_t workspace_bytes, const Tensor& out) {
  TESSERA_CHECK(cache.dtype == dtype_ && out.contiguous());
  // The decode kernels read one block per sequence (the slot layout: block_size = the context, one table entry),
  // so a table of one entry per row is the kernels' slots array. Paged decode kernels need a GPU session.
  if (table_stride != 1)
    throw Error("cuda backend: attention_decode reads one KV block per sequence (block tables of " +
                std::to_string(table_stride) + " entries given)");
  throw_if(gpu::attention_decode(q.data, q.stride, cache.k, cache.v, tables, starts, lens, out.data, q.rows, s.n_heads,
                                 s.n_kv_heads, s.head_dim, cache.block_size, s.scale, workspace, workspace_bytes,
                                 dtype_, stream_),
           "attention_decode");
}

void CudaOps::copy_rows(const Tensor& src, int64_t first, int64_t step, const Tensor& dst) {
  TESSERA_CHECK(src.dtype == dst.dtype && src.cols == dst.cols);
  const size_t e = ops::dtype_size(src.dtype), row_bytes = static_cast<size_t>(src.cols) * e;
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst.stride) * e, src.byte_at(first, 0),
                                           static_cast<size_t>(step * src.stride) * e, row_bytes,
                                           static_cast<size_t>(dst.rows), cudaMemcpyDeviceToDevice, stream_));
        return Status::success();
      }(),
      "copy_rows");
}

}  // namespace tessera::worker
