// kernels/cpu/cpu_backend.cpp — see cpu_backend.h: each op checks what the CPU functions cannot take (a dtype other
// than fp32, a strided tensor where kernels/ops.h wants a dense one) and calls its kernels/ops.h function.
#include "kernels/cpu/cpu_backend.h"

#include <cstring>
#include <string>

#include "common/check.h"
#include "kernels/cpu/quant.h"
#include "kernels/ops.h"

namespace tessera::ops {
namespace {

constexpr size_t kAlign = 256;

size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void need_f32(const char* op, const Tensor& t, const char* what) {
  if (!t.empty() && t.dtype != DType::F32)
    throw Error(std::string("cpu backend: ") + op + ": " + what + " is " + dtype_name(t.dtype) +
                "; the CPU ops take fp32");
}

void need_dense(const char* op, const Tensor& t, const char* what) {
  need_f32(op, t, what);
  if (!t.empty() && !t.contiguous())
    throw Error(std::string("cpu backend: ") + op + ": " + what + " must be dense (stride " + std::to_string(t.stride) +
                ", " + std::to_string(t.cols) + " columns)");
}

const float* f32_or_null(const Tensor& t) { return t.empty() ? nullptr : t.at<float>(); }

}  // namespace

void CpuBackend::scratch(std::span<const size_t> bytes, std::span<void*> out) {
  TESSERA_CHECK(bytes.size() == out.size());
  size_t total = kAlign;  // room to align the base
  for (size_t b : bytes) total += round_up(std::max<size_t>(b, 1));
  if (total > scratch_.size()) scratch_.resize(total);
  const auto base = reinterpret_cast<uintptr_t>(scratch_.data());
  size_t offset = round_up(base) - base;
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[i] = scratch_.data() + offset;
    offset += round_up(std::max<size_t>(bytes[i], 1));
  }
}

void CpuBackend::upload(void* dst, const void* host_src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, host_src, bytes);
}

void CpuBackend::download(void* host_dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(host_dst, src, bytes);
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  need_dense("linear", x, "x");
  need_dense("linear", bias, "bias");
  need_f32("linear", y, "y");
  TESSERA_CHECK(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows);
  if (w.dtype != DType::F32) {  // weights in their file's type (kernels/cpu/quant.h), any output stride
    if (!w.contiguous()) throw Error("cpu backend: linear: w of a block or 16-bit type must be dense");
    linear_typed(x.at<float>(), x.rows, w, f32_or_null(bias), y.at<float>(), y.stride, act_);
    return;
  }
  if (!w.transposed) need_dense("linear", w, "w");
  // fp32: into y, or for a strided output (the logits block of a vocabulary shard) dense, then placed row by row.
  float* out = y.contiguous() ? y.at<float>() : (staging_.resize(static_cast<size_t>(y.numel())), staging_.data());
  if (w.transposed) {  // an [in, out] weight read in place (GPT-2's Conv1D)
    ops::linear_kn(x.at<float>(), w.at<float>(), w.stride, f32_or_null(bias), out, x.rows, w.rows, x.cols);
  } else {
    ops::linear(x.at<float>(), w.at<float>(), f32_or_null(bias), out, x.rows, w.rows, x.cols);
  }
  if (!y.contiguous())
    for (int64_t r = 0; r < y.rows; ++r)
      std::memcpy(y.at<float>(r), out + r * y.cols, sizeof(float) * static_cast<size_t>(y.cols));
}

void CpuBackend::embedding(const int32_t* ids, const int32_t* pos, const Tensor& wte, const Tensor& wpe,
                           const Tensor& out) {
  need_dense("embedding", wpe, "wpe");
  need_dense("embedding", out, "out");
  TESSERA_CHECK(out.cols == wte.cols && wte.contiguous());
  const int64_t n = out.rows, dim = out.cols;
  bool all_owned = true;
  for (int64_t i = 0; i < n; ++i) all_owned = all_owned && ids[i] >= 0 && ids[i] < wte.rows;
  if (wte.dtype != DType::F32) {  // a table in its file's type: the rows looked up are dequantized
#pragma omp parallel for schedule(static) if (n > 16)
    for (int64_t i = 0; i < n; ++i) {
      float* o = out.at<float>(i);
      if (ids[i] >= 0 && ids[i] < wte.rows) {
        dequantize_rows(wte, ids[i], ids[i] + 1, o);
      } else {
        std::memset(o, 0, sizeof(float) * static_cast<size_t>(dim));
      }
      if (!wpe.empty())
        for (int64_t d = 0; d < dim; ++d) o[d] += wpe.at<float>(pos[i])[d];
    }
    return;
  }
  if (all_owned) {
    ops::embedding(ids, pos, wte.at<float>(), f32_or_null(wpe), out.at<float>(), n, dim);
    return;
  }
  // Vocabulary-parallel: the rows this rank owns, zeros for the others (the all-reduce sums one non-zero row).
  for (int64_t i = 0; i < n; ++i) {
    float* o = out.at<float>(i);
    if (ids[i] >= 0 && ids[i] < wte.rows) {
      std::memcpy(o, wte.at<float>(ids[i]), sizeof(float) * static_cast<size_t>(dim));
    } else {
      std::memset(o, 0, sizeof(float) * static_cast<size_t>(dim));
    }
    if (!wpe.empty())
      for (int64_t d = 0; d < dim; ++d) o[d] += wpe.at<float>(pos[i])[d];
  }
}

void CpuBackend::norm(NormKind kind, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                      float eps) {
  need_dense("norm", x, "x");
  need_dense("norm", y, "y");
  need_dense("norm", gamma, "gamma");
  need_dense("norm", beta, "beta");
  if (kind == NormKind::kRms) {
    ops::rms_norm(x.at<float>(), gamma.at<float>(), y.at<float>(), x.rows, x.cols, eps);
  } else {
    ops::layer_norm(x.at<float>(), gamma.at<float>(), beta.at<float>(), y.at<float>(), x.rows, x.cols, eps);
  }
}

void CpuBackend::add_norm(NormKind kind, const Tensor& residual, const Tensor& delta, const Tensor& gamma,
                          const Tensor& beta, const Tensor& y, float eps) {
  need_dense("add_norm", residual, "residual");
  need_dense("add_norm", delta, "delta");
  need_dense("add_norm", y, "y");
  need_dense("add_norm", gamma, "gamma");
  need_dense("add_norm", beta, "beta");
  if (kind == NormKind::kRms) {
    ops::add_rms_norm(residual.at<float>(), delta.at<float>(), gamma.at<float>(), y.at<float>(), residual.rows,
                      residual.cols, eps);
  } else {
    ops::add_layer_norm(residual.at<float>(), delta.at<float>(), gamma.at<float>(), beta.at<float>(), y.at<float>(),
                        residual.rows, residual.cols, eps);
  }
}

void CpuBackend::add_bias_gelu(const Tensor& x, const Tensor& bias) {
  need_dense("add_bias_gelu", x, "x");
  need_dense("add_bias_gelu", bias, "bias");
  ops::add_bias_gelu(x.at<float>(), bias.at<float>(), x.rows, x.cols);
}

void CpuBackend::silu_mul(const Tensor& gate_up, const Tensor& out) {
  need_dense("silu_mul", gate_up, "gate_up");
  need_dense("silu_mul", out, "out");
  TESSERA_CHECK(gate_up.cols == 2 * out.cols && gate_up.rows == out.rows);
  ops::silu_mul(gate_up.at<float>(), out.at<float>(), out.rows, out.cols);
}

void CpuBackend::rope(const Tensor& x, const int32_t* pos, int64_t head_dim, float theta) {
  need_f32("rope", x, "x");
  ops::rope(x.at<float>(), pos, x.rows, x.cols / head_dim, head_dim, x.stride, theta);
}

void CpuBackend::kv_write(const Tensor& k, const Tensor& v, const int32_t* blocks, const int32_t* rows,
                          const KvLayer& cache) {
  need_f32("kv_write", k, "k");
  need_f32("kv_write", v, "v");
  TESSERA_CHECK(k.stride == v.stride && kv_dtype_supported(cache.dtype));
  ops::kv_write(k.at<float>(), v.at<float>(), k.stride, blocks, rows, k.rows, cache.k, cache.v, cache.dtype,
                cache.n_kv_heads, cache.block_size, cache.head_dim);
}

void CpuBackend::attention_prefill(const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* pad, int64_t B,
                                   int64_t L, const AttentionShape& s, const Tensor& out) {
  need_f32("attention_prefill", q, "q");
  need_dense("attention_prefill", out, "out");
  TESSERA_CHECK(k.stride == v.stride && q.rows == B * L);
  ops::attention_prefill(q.at<float>(), q.stride, k.at<float>(), v.at<float>(), k.stride, pad, out.at<float>(), B, L,
                         s.n_heads, s.n_kv_heads, s.head_dim, s.scale);
}

void CpuBackend::attention_prefill_paged(const Tensor& q, const KvLayer& cache, const int32_t* tables,
                                         int64_t table_stride, const int32_t* pad, const int32_t* cached, int64_t B,
                                         int64_t L, const AttentionShape& s, const Tensor& out) {
  need_f32("attention_prefill_paged", q, "q");
  need_dense("attention_prefill_paged", out, "out");
  TESSERA_CHECK(q.rows == B * L && kv_dtype_supported(cache.dtype) && cache.n_kv_heads == s.n_kv_heads);
  ops::attention_prefill_paged(q.at<float>(), q.stride, cache.k, cache.v, cache.dtype, tables, table_stride, pad,
                               cached, out.at<float>(), B, L, s.n_heads, s.n_kv_heads, s.head_dim, cache.block_size,
                               s.scale);
}

void CpuBackend::attention_decode(const Tensor& q, const KvLayer& cache, const int32_t* tables, int64_t table_stride,
                                  const int32_t* starts, const int32_t* lens, const AttentionShape& s,
                                  void* /*workspace*/, size_t /*workspace_bytes*/, const Tensor& out) {
  need_f32("attention_decode", q, "q");
  need_dense("attention_decode", out, "out");
  TESSERA_CHECK(kv_dtype_supported(cache.dtype) && cache.n_kv_heads == s.n_kv_heads);
  ops::attention_decode(q.at<float>(), q.stride, cache.k, cache.v, cache.dtype, tables, table_stride, starts, lens,
                        out.at<float>(), q.rows, s.n_heads, s.n_kv_heads, s.head_dim, cache.block_size, s.scale);
}

void CpuBackend::copy_rows(const Tensor& src, int64_t first, int64_t step, const Tensor& dst) {
  TESSERA_CHECK(src.dtype == dst.dtype && src.cols == dst.cols);
  const size_t row_bytes = static_cast<size_t>(src.cols) * dtype_size(src.dtype);
  for (int64_t i = 0; i < dst.rows; ++i) std::memcpy(dst.byte_at(i, 0), src.byte_at(first + i * step, 0), row_bytes);
}

}  // namespace tessera::ops
