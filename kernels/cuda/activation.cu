// kernels/cuda/activation.cu — elementwise activations: kernels, launchers, op entries.
#include "kernels/cuda/activation.cuh"

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

// Grid-stride over the n_vec = rows * cols / W vectors of x.  kGelu: x = gelu(x + bias); else x = x + bias.
template <typename T, int W, bool kGelu>
__global__ void bias_act_kernel(T* __restrict__ x, const T* __restrict__ bias, int64_t rows, int64_t cols) {
  const int64_t vec_per_row = cols / W;
  const int64_t n_vec = rows * vec_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_vec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = (i % vec_per_row) * W;
    float v[W];
    load_vec<T, W>(x + i * W, v);
    if (bias != nullptr) {
      float b[W];
      load_vec<T, W>(bias + col, b);
#pragma unroll
      for (int w = 0; w < W; ++w) v[w] += b[w];
    }
    if constexpr (kGelu) {
#pragma unroll
      for (int w = 0; w < W; ++w) v[w] = gelu_tanh(v[w]);
    }
    store_vec<T, W>(x + i * W, v);
  }
}

template <typename T, int W>
__global__ void silu_mul_kernel(const T* __restrict__ gate_up, T* __restrict__ out, int64_t rows, int64_t ffn) {
  const int64_t vec_per_row = ffn / W;
  const int64_t n_vec = rows * vec_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_vec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / vec_per_row, col = (i % vec_per_row) * W;
    float g[W], u[W];
    load_vec<T, W>(gate_up + row * 2 * ffn + col, g);
    load_vec<T, W>(gate_up + row * 2 * ffn + ffn + col, u);
#pragma unroll
    for (int w = 0; w < W; ++w) g[w] = silu(g[w]) * u[w];
    store_vec<T, W>(out + row * ffn + col, g);
  }
}

int grid_for(int64_t n_items, int threads) {
  const int64_t max_blocks = static_cast<int64_t>(device_sm_count()) * 16;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_blocks, (n_items + threads - 1) / threads)));
}

template <bool kGelu>
Status launch_bias_act(void* x, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  if (rows == 0) return Status::success();
  constexpr int kThreads = 256;
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    constexpr int W = kVec16<T>;
    T* xt = static_cast<T*>(x);
    const T* bt = static_cast<const T*>(bias);
    if (cols % W == 0 && aligned16(x) && (bias == nullptr || aligned16(bias))) {
      bias_act_kernel<T, W, kGelu><<<grid_for(rows * cols / W, kThreads), kThreads, 0, stream>>>(xt, bt, rows, cols);
    } else {
      bias_act_kernel<T, 1, kGelu><<<grid_for(rows * cols, kThreads), kThreads, 0, stream>>>(xt, bt, rows, cols);
    }
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

}  // namespace

Status launch_add_bias_gelu(void* x, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  return launch_bias_act<true>(x, bias, rows, cols, dtype, stream);
}

Status launch_add_bias(void* y, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  return launch_bias_act<false>(y, bias, rows, cols, dtype, stream);
}

Status launch_silu_mul(const void* gate_up, void* out, int64_t rows, int64_t ffn, DType dtype, cudaStream_t stream) {
  if (rows == 0) return Status::success();
  constexpr int kThreads = 256;
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    constexpr int W = kVec16<T>;
    const T* gt = static_cast<const T*>(gate_up);
    T* ot = static_cast<T*>(out);
    if (ffn % W == 0 && aligned16(gate_up) && aligned16(out)) {
      silu_mul_kernel<T, W><<<grid_for(rows * ffn / W, kThreads), kThreads, 0, stream>>>(gt, ot, rows, ffn);
    } else {
      silu_mul_kernel<T, 1><<<grid_for(rows * ffn, kThreads), kThreads, 0, stream>>>(gt, ot, rows, ffn);
    }
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status add_bias_gelu(void* x, const void* bias, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  TESSERA_ARG_REQUIRE("add_bias_gelu", "rows", rows >= 0, "must be >= 0, got " + std::to_string(rows));
  TESSERA_ARG_REQUIRE("add_bias_gelu", "cols", cols > 0, "must be > 0, got " + std::to_string(cols));
  TESSERA_ARG_REQUIRE("add_bias_gelu", "x", rows == 0 || x != nullptr, "null");
  return launch_add_bias_gelu(x, bias, rows, cols, dtype, stream);
}

Status silu_mul(const void* gate_up, void* out, int64_t rows, int64_t ffn, DType dtype, cudaStream_t stream) {
  TESSERA_ARG_REQUIRE("silu_mul", "rows", rows >= 0, "must be >= 0, got " + std::to_string(rows));
  TESSERA_ARG_REQUIRE("silu_mul", "ffn", ffn > 0, "must be > 0, got " + std::to_string(ffn));
  TESSERA_ARG_REQUIRE("silu_mul", "gate_up", rows == 0 || gate_up != nullptr, "null");
  TESSERA_ARG_REQUIRE("silu_mul", "out", rows == 0 || out != nullptr, "null");
  return launch_silu_mul(gate_up, out, rows, ffn, dtype, stream);
}

}  // namespace tessera::gpu
