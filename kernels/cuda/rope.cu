// kernels/cuda/rope.cu — one block per row; thread d of the half-dimension computes its angle once and rotates
// that pair in every head.
#include "kernels/cuda/rope.cuh"

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace tessera::gpu {
namespace {

template <typename T>
__global__ void rope_kernel(T* __restrict__ x, const int32_t* __restrict__ pos, int64_t n_heads, int64_t head_dim,
                            int64_t row_stride, float theta) {
  const int64_t row = blockIdx.x;
  const int64_t half = head_dim / 2;
  const float p = static_cast<float>(pos[row]);
  T* xr = x + row * row_stride;
  for (int64_t d = threadIdx.x; d < half; d += blockDim.x) {
    // powf on the device may be 2 ulp off; the double pow rounded once to float is the correctly rounded powf
    // the CPU reference (glibc) gives, so the fp32 angles agree bit for bit.
    const float e = static_cast<float>(2 * d) / static_cast<float>(head_dim);
    const float inv_freq = 1.0f / static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e)));
    float s, c;
    sincosf(p * inv_freq, &s, &c);
    for (int64_t h = 0; h < n_heads; ++h) {
      T* v = xr + h * head_dim;
      const float a = to_float(v[d]), b = to_float(v[d + half]);
      v[d] = from_float<T>(a * c - b * s);
      v[d + half] = from_float<T>(b * c + a * s);
    }
  }
}

}  // namespace

Status launch_rope(void* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
                   float theta, DType dtype, cudaStream_t stream) {
  if (rows == 0) return Status::success();
  const int threads = static_cast<int>(std::min<int64_t>(256, (head_dim / 2 + 31) / 32 * 32));
  TESSERA_DISPATCH_DTYPE(dtype, T, {
    rope_kernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(static_cast<T*>(x), pos, n_heads, head_dim,
                                                                        row_stride, theta);
    TESSERA_CUDA_TRY_LAUNCH();
  });
  return Status::success();
}

Status rope(void* x, const int32_t* pos, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t row_stride,
            float theta, DType dtype, cudaStream_t stream) {
  const char* op = "rope";
  TESSERA_ARG_REQUIRE(op, "rows", rows >= 0 && rows <= INT32_MAX, "must be in [0, 2^31), got " + std::to_string(rows));
  TESSERA_ARG_REQUIRE(op, "n_heads", n_heads > 0, "must be > 0, got " + std::to_string(n_heads));
  TESSERA_ARG_REQUIRE(op, "head_dim", head_dim > 0 && head_dim % 2 == 0,
                      "must be positive and even, got " + std::to_string(head_dim));
  TESSERA_ARG_REQUIRE(
      op, "row_stride", row_stride >= n_heads * head_dim,
      "must be >= n_heads * head_dim = " + std::to_string(n_heads * head_dim) + ", got " + std::to_string(row_stride));
  TESSERA_ARG_REQUIRE(op, "theta", theta > 0.f, "must be > 0");
  if (rows == 0) return Status::success();
  TESSERA_ARG_REQUIRE(op, "x", x != nullptr, "null");
  TESSERA_ARG_REQUIRE(op, "pos", pos != nullptr, "null");
  return launch_rope(x, pos, rows, n_heads, head_dim, row_stride, theta, dtype, stream);
}

}  // namespace tessera::gpu
