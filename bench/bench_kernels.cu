// bench/bench_kernels.cu — microbenchmarks of the CUDA ops against the ceilings measured in the same run.
//
// Ceilings: device-to-device copy (GB/s, bytes read + written) and a bf16 GEMM through cuBLAS (TFLOP/s).
// Then: norms at hidden 12288 / 16384 / 65536 (GB/s vs copy), the fp32-residual (mixed) fused add + RMSNorm against
// the plain one (4096 … 65536), decode attention (GB/s of K+V read), causal prefill
// attention (TFLOP/s, causal FLOPs = 2 · 2 · L²/2 · D · H), and one decode step of a GPT-3-shaped layer (hidden
// 12288, 96 heads, FFN 49152) at batch 1, 4, 16 against the HBM floor (weights + KV bytes / copy bandwidth);
// the GPU sampler at vocabulary 151936, batch 1, 16, 64 (µs per call).
// Timing: CUDA events around each call, warm-up first, the median of many runs; inputs are random (never zeros)
// and each working set is far larger than L2 (50 MB), or rotated between several copies where it is not.
// Output: a markdown table on stdout.  Usage: bench_kernels [--quick]
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/norm.cuh"

namespace tg = tessera::gpu;
using tg::DType;

namespace {

bool g_quick = false;

// Fills n values with N(0, scale) on the device (hash-based, deterministic): bf16 weights or fp32 logits.
template <typename T>
__global__ void fill_normal_kernel(T* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32) * 40503u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    uint32_t h2 = h * 747796405u + 2891336453u;
    h2 ^= h2 >> 16;
    const float u1 = (h + 1.f) / 4294967297.f, u2 = h2 / 4294967296.f;
    p[i] = static_cast<T>(scale * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
  }
}

void* alloc_random(size_t n_elems, uint32_t seed, float scale = 1.f) {
  void* p = nullptr;
  TESSERA_CUDA_CHECK(cudaMalloc(&p, n_elems * 2));
  fill_normal_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n_elems, seed, scale);
  TESSERA_CUDA_CHECK(cudaGetLastError());
  return p;
}

// Median milliseconds of fn over `iters` timed runs after `warmup` untimed ones.
double median_ms(const std::function<void(int)>& fn, int warmup = 3, int iters = 20) {
  cudaEvent_t a, b;
  TESSERA_CUDA_CHECK(cudaEventCreate(&a));
  TESSERA_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) fn(i);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    TESSERA_CUDA_CHECK(cudaEventRecord(a));
    fn(warmup + i);
    TESSERA_CUDA_CHECK(cudaEventRecord(b));
    TESSERA_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    TESSERA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  TESSERA_CUDA_CHECK(cudaEventDestroy(a));
  TESSERA_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(const std::string& what, const std::string& shape, double ms, const std::string& rate, const std::string& vs) {
  std::printf("| %s | %s | %.4f | %s | %s |\n", what.c_str(), shape.c_str(), ms, rate.c_str(), vs.c_str());
  std::fflush(stdout);
}

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

const char* norm_path_name(tg::NormPath p) {
  switch (p) {
    case tg::NormPath::kCachedNV1:
    case tg::NormPath::kCachedNV2:
    case tg::NormPath::kCachedNV4:
      return "registers";
    case tg::NormPath::kSharedRow:
      return "shared row";
    case tg::NormPath::kLoopVec:
    case tg::NormPath::kLoopScalar:
      return "loop";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) g_quick |= std::strcmp(argv[i], "--quick") == 0;
  cudaDeviceProp prop{};
  TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("| kernel | shape | median ms | achieved | vs ceiling |\n|---|---|---|---|---|\n");

  // --- ceilings ---------------------------------------------------------------------------------------------
  const size_t copy_bytes = size_t{1} << 30;
  void* src = alloc_random(copy_bytes / 2, 1);
  void* dst = nullptr;
  TESSERA_CUDA_CHECK(cudaMalloc(&dst, copy_bytes));
  const double copy_ms =
      median_ms([&](int) { TESSERA_CUDA_CHECK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice)); });
  const double copy_gbs = 2.0 * copy_bytes / copy_ms / 1e6;
  row("d2d copy (ceiling)", "1 GiB", copy_ms, fmt("%.0f GB/s", copy_gbs), "read+write");
  TESSERA_CUDA_CHECK(cudaFree(src));
  TESSERA_CUDA_CHECK(cudaFree(dst));

  const int64_t gm = 8192;
  void* ga = alloc_random(gm * gm, 2);
  void* gb = alloc_random(gm * gm, 3);
  void* gc = nullptr;
  TESSERA_CUDA_CHECK(cudaMalloc(&gc, gm * gm * 2));
  const double gemm_ms =
      median_ms([&](int) { TESSERA_STATUS_CHECK(tg::linear(ga, gb, nullptr, gc, gm, gm, gm, DType::BF16, nullptr)); });
  const double gemm_tflops = 2.0 * gm * gm * gm / gemm_ms / 1e9;
  row("cuBLAS bf16 GEMM (ceiling)", "8192^3", gemm_ms, fmt("%.0f TFLOP/s", gemm_tflops), "");
  TESSERA_CUDA_CHECK(cudaFree(ga));
  TESSERA_CUDA_CHECK(cudaFree(gb));
  TESSERA_CUDA_CHECK(cudaFree(gc));

  // --- norms --------------------------------------------------------------------------------------------------
  for (int64_t dim : {12288, 16384, 65536}) {
    const int64_t rows = (int64_t{64} << 20) / dim;  // 64 Mi elements = 128 MB per bf16 tensor
    void* x = alloc_random(rows * dim, 4, 1.f);
    void* d = alloc_random(rows * dim, 5, 1.f);
    void* y = alloc_random(rows * dim, 6);
    void* g = alloc_random(dim, 7);
    void* be = alloc_random(dim, 8);
    const double bytes = 2.0 * rows * dim;
    const std::string shape = std::to_string(rows) + " x " + std::to_string(dim);
    double ms =
        median_ms([&](int) { TESSERA_STATUS_CHECK(tg::rms_norm(x, g, y, rows, dim, 1e-5f, DType::BF16, nullptr)); });
    row("rms_norm bf16", shape, ms, fmt("%.0f GB/s", 2 * bytes / ms / 1e6),
        fmt("%.0f%% of copy", 100 * 2 * bytes / ms / 1e6 / copy_gbs));
    ms = median_ms(
        [&](int) { TESSERA_STATUS_CHECK(tg::add_rms_norm(x, d, g, y, rows, dim, 1e-5f, DType::BF16, nullptr)); });
    row("add_rms_norm bf16", shape, ms, fmt("%.0f GB/s", 4 * bytes / ms / 1e6),
        fmt("%.0f%% of copy", 100 * 4 * bytes / ms / 1e6 / copy_gbs));
    ms = median_ms(
        [&](int) { TESSERA_STATUS_CHECK(tg::add_layer_norm(x, d, g, be, y, rows, dim, 1e-5f, DType::BF16, nullptr)); });
    row("add_layer_norm bf16", shape, ms, fmt("%.0f GB/s", 4 * bytes / ms / 1e6),
        fmt("%.0f%% of copy", 100 * 4 * bytes / ms / 1e6 / copy_gbs));
    for (void* p : {x, d, y, g, be}) TESSERA_CUDA_CHECK(cudaFree(p));
  }

  // --- fp32 residual stream: add_rms_norm_mixed against add_rms_norm ------------------------------------------
  // The mixed op reads and writes the residual as fp32 (delta, gamma, y bf16): 12 bytes an element against the
  // plain op's 8, so at the same bandwidth it takes 1.5x as long. Median of 50 after 5 warm-ups. The smaller shapes
  // partly fit in L2: compare the two rows of a shape with each other, not with the copy. (docs/benchmarks.md,
  // "fp32 residual stream", has a run of these; they were the report CudaNorm.MixedTimingReport before.)
  {
    struct Shape {
      int64_t rows, dim;
    };
    for (const Shape sh : {Shape{4096, 4096}, Shape{1024, 12288}, Shape{512, 16384}, Shape{128, 65536}}) {
      const int64_t n = sh.rows * sh.dim;
      void* r16 = alloc_random(n, 41);  // [rows, dim] bf16 residual (plain)
      float* r32 = nullptr;             // [rows, dim] fp32 residual (mixed)
      TESSERA_CUDA_CHECK(cudaMalloc(&r32, n * sizeof(float)));
      fill_normal_kernel<<<1024, 256>>>(r32, n, 41, 1.f);
      TESSERA_CUDA_CHECK(cudaGetLastError());
      void* d = alloc_random(n, 42, 0.5f);  // [rows, dim] delta
      void* g = alloc_random(sh.dim, 43);   // [dim] gamma
      void* y = alloc_random(n, 44);        // [rows, dim] output
      const std::string shape = std::to_string(sh.rows) + " x " + std::to_string(sh.dim);
      const double plain_ms = median_ms(
          [&](int) {
            TESSERA_STATUS_CHECK(tg::add_rms_norm(r16, d, g, y, sh.rows, sh.dim, 1e-5f, DType::BF16, nullptr));
          },
          5, 50);
      const double mixed_ms = median_ms(
          [&](int) {
            TESSERA_STATUS_CHECK(tg::add_rms_norm_mixed(r32, d, g, y, sh.rows, sh.dim, 1e-5f, DType::BF16, nullptr));
          },
          5, 50);
      row("add_rms_norm bf16 (bf16 residual)", shape + ", " + norm_path_name(tg::norm_path(sh.dim, DType::BF16, true)),
          plain_ms, fmt("%.0f GB/s", 8.0 * n / plain_ms / 1e6), "8 B/element");
      row("add_rms_norm_mixed bf16 (fp32 residual)",
          shape + ", " + norm_path_name(tg::norm_path(sh.dim, DType::BF16, true, true)), mixed_ms,
          fmt("%.0f GB/s", 12.0 * n / mixed_ms / 1e6), fmt("%.2fx plain (12 B/element)", mixed_ms / plain_ms));
      for (void* p : {r16, static_cast<void*>(r32), d, g, y}) TESSERA_CUDA_CHECK(cudaFree(p));
    }
  }

  // --- decode attention ---------------------------------------------------------------------------------------
  struct DecodeShape {
    int64_t B, H, Hkv, D, ctx;
  };
  std::vector<DecodeShape> dshapes = {{16, 32, 8, 128, 4096},
                                      {16, 96, 96, 128, 2048},
                                      {1, 32, 8, 128, 32768},
                                      {1, 32, 8, 128, 131072},
                                      {4, 64, 8, 128, 131072}};
  if (g_quick) dshapes.resize(2);
  for (const auto& s : dshapes) {
    const size_t cache_n = s.B * s.Hkv * s.ctx * s.D;
    void* ck = alloc_random(cache_n, 9);
    void* cv = alloc_random(cache_n, 10);
    void* q = alloc_random(s.B * s.H * s.D, 11);
    void* out = alloc_random(s.B * s.H * s.D, 12);
    std::vector<int32_t> hs(s.B), hstart(s.B, 0), hlen(s.B, static_cast<int32_t>(s.ctx));
    for (int64_t b = 0; b < s.B; ++b) hs[b] = static_cast<int32_t>(b);
    int32_t *slots, *starts, *lens;
    TESSERA_CUDA_CHECK(cudaMalloc(&slots, 4 * s.B));
    TESSERA_CUDA_CHECK(cudaMalloc(&starts, 4 * s.B));
    TESSERA_CUDA_CHECK(cudaMalloc(&lens, 4 * s.B));
    TESSERA_CUDA_CHECK(cudaMemcpy(slots, hs.data(), 4 * s.B, cudaMemcpyHostToDevice));
    TESSERA_CUDA_CHECK(cudaMemcpy(starts, hstart.data(), 4 * s.B, cudaMemcpyHostToDevice));
    TESSERA_CUDA_CHECK(cudaMemcpy(lens, hlen.data(), 4 * s.B, cudaMemcpyHostToDevice));
    const auto plan = tg::plan_attention_decode(s.B, s.H, s.Hkv, s.D, s.ctx, prop.multiProcessorCount);
    void* ws = nullptr;
    if (plan.workspace_bytes) TESSERA_CUDA_CHECK(cudaMalloc(&ws, plan.workspace_bytes));
    const double ms = median_ms([&](int) {
      TESSERA_STATUS_CHECK(tg::attention_decode(q, s.H * s.D, ck, cv, slots, starts, lens, out, s.B, s.H, s.Hkv, s.D,
                                                s.ctx, 0.088f, ws, plan.workspace_bytes, DType::BF16, nullptr));
    });
    const double gbs = 2.0 * cache_n * 2 / ms / 1e6;
    row("attention_decode bf16",
        "B" + std::to_string(s.B) + " H" + std::to_string(s.H) + "/" + std::to_string(s.Hkv) + " ctx " +
            std::to_string(s.ctx) + " splits " + std::to_string(plan.n_splits),
        ms, fmt("%.0f GB/s", gbs), fmt("%.0f%% of copy", 100 * gbs / copy_gbs));
    for (void* p :
         {ck, cv, q, out, ws, static_cast<void*>(slots), static_cast<void*>(starts), static_cast<void*>(lens)})
      if (p) TESSERA_CUDA_CHECK(cudaFree(p));
  }

  // --- prefill attention --------------------------------------------------------------------------------------
  std::vector<int64_t> lens = {4096, 16384, 32768};
  if (g_quick) lens = {4096};
  for (int64_t L : lens) {
    const int64_t H = 32, D = 128;
    void* q = alloc_random(L * H * D, 13);
    void* k = alloc_random(L * H * D, 14);
    void* v = alloc_random(L * H * D, 15);
    void* o = alloc_random(L * H * D, 16);
    int32_t* pad;
    TESSERA_CUDA_CHECK(cudaMalloc(&pad, 4));
    TESSERA_CUDA_CHECK(cudaMemset(pad, 0, 4));
    const double ms = median_ms(
        [&](int) {
          TESSERA_STATUS_CHECK(
              tg::attention_prefill(q, H * D, k, v, H * D, pad, o, 1, L, H, H, D, 0.088f, DType::BF16, nullptr));
        },
        2, L >= 16384 ? 5 : 10);
    const double tflops = 4.0 * L * L / 2 * D * H / ms / 1e9;
    row("attention_prefill bf16 causal", "B1 L" + std::to_string(L) + " H32 D128", ms, fmt("%.1f TFLOP/s", tflops),
        fmt("%.0f%% of GEMM", 100 * tflops / gemm_tflops));
    for (void* p : {q, k, v, o, static_cast<void*>(pad)}) TESSERA_CUDA_CHECK(cudaFree(p));
  }

  // --- GPT-3-shaped layer, one decode step ---------------------------------------------------------------------
  {
    const int64_t hid = 12288, H = 96, D = 128, ffn = 49152, ctx = 2048;
    void* w_qkv = alloc_random(3 * hid * hid, 20, 0.01f);
    void* b_qkv = alloc_random(3 * hid, 21, 0.01f);
    void* w_o = alloc_random(hid * hid, 22, 0.01f);
    void* b_o = alloc_random(hid, 23, 0.01f);
    void* w_up = alloc_random(ffn * hid, 24, 0.01f);
    void* b_up = alloc_random(ffn, 25, 0.01f);
    void* w_down = alloc_random(hid * ffn, 26, 0.01f);
    void* b_down = alloc_random(hid, 27, 0.01f);
    void* g1 = alloc_random(hid, 28);
    void* be1 = alloc_random(hid, 29);
    void* g2 = alloc_random(hid, 30);
    void* be2 = alloc_random(hid, 31);
    const double weight_bytes = 2.0 * (3 * hid * hid + hid * hid + 2 * ffn * hid);
    for (int64_t B : {1, 4, 16}) {
      const size_t cache_n = B * H * (ctx + 1) * D;
      void* ck = alloc_random(cache_n, 32);
      void* cv = alloc_random(cache_n, 33);
      void* resid = alloc_random(B * hid, 34);
      void* delta = alloc_random(B * hid, 35);
      void* h1 = alloc_random(B * hid, 36);
      void* qkv = alloc_random(B * 3 * hid, 37);
      void* attn = alloc_random(B * hid, 38);
      void* up = alloc_random(B * ffn, 39);
      std::vector<int32_t> hs(B), hstart(B, 0), hlen(B, static_cast<int32_t>(ctx + 1)),
          hpos(B, static_cast<int32_t>(ctx));
      for (int64_t b = 0; b < B; ++b) hs[b] = static_cast<int32_t>(b);
      int32_t *slots, *starts, *dlens, *pos;
      for (auto [ptr, hv] : {std::pair{&slots, &hs}, {&starts, &hstart}, {&dlens, &hlen}, {&pos, &hpos}}) {
        TESSERA_CUDA_CHECK(cudaMalloc(ptr, 4 * B));
        TESSERA_CUDA_CHECK(cudaMemcpy(*ptr, hv->data(), 4 * B, cudaMemcpyHostToDevice));
      }
      const auto plan = tg::plan_attention_decode(B, H, H, D, ctx + 1, prop.multiProcessorCount);
      void* ws = nullptr;
      if (plan.workspace_bytes) TESSERA_CUDA_CHECK(cudaMalloc(&ws, plan.workspace_bytes));
      const auto bf = DType::BF16;
      auto step = [&](int) {
        TESSERA_STATUS_CHECK(tg::add_layer_norm(resid, delta, g1, be1, h1, B, hid, 1e-5f, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::linear(h1, w_qkv, b_qkv, qkv, B, 3 * hid, hid, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::kv_write(static_cast<char*>(qkv) + hid * 2, static_cast<char*>(qkv) + 2 * hid * 2,
                                          3 * hid, slots, pos, B, ck, cv, H, ctx + 1, D, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::attention_decode(qkv, 3 * hid, ck, cv, slots, starts, dlens, attn, B, H, H, D, ctx + 1,
                                                  0.088f, ws, plan.workspace_bytes, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::linear(attn, w_o, b_o, delta, B, hid, hid, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::add_layer_norm(resid, delta, g2, be2, h1, B, hid, 1e-5f, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::linear(h1, w_up, nullptr, up, B, ffn, hid, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::add_bias_gelu(up, b_up, B, ffn, bf, nullptr));
        TESSERA_STATUS_CHECK(tg::linear(up, w_down, b_down, delta, B, hid, ffn, bf, nullptr));
      };
      const double ms = median_ms(step, 3, 20);
      const double kv_bytes = 2.0 * 2 * B * H * (ctx + 1) * D;
      const double floor_ms = (weight_bytes + kv_bytes) / (copy_gbs * 1e6);
      row("GPT-3 layer decode step",
          "B" + std::to_string(B) + " ctx " + std::to_string(ctx) + " (weights " + fmt("%.2f GB", weight_bytes / 1e9) +
              ", KV " + fmt("%.2f GB", kv_bytes / 1e9) + ")",
          ms, fmt("floor %.3f ms", floor_ms), fmt("%.0f%% of HBM floor", 100 * floor_ms / ms));
      for (void* p : {ck, cv, resid, delta, h1, qkv, attn, up, ws, static_cast<void*>(slots),
                      static_cast<void*>(starts), static_cast<void*>(dlens), static_cast<void*>(pos)})
        if (p) TESSERA_CUDA_CHECK(cudaFree(p));
    }
    for (void* p : {w_qkv, b_qkv, w_o, b_o, w_up, b_up, w_down, b_down, g1, be1, g2, be2})
      TESSERA_CUDA_CHECK(cudaFree(p));
  }
  // --- sampling -------------------------------------------------------------------------------------------------
  // gpu::sample_tokens over fp32 logits N(0, 2.5²) at Qwen2's vocabulary: greedy, and T 0.8 with top-p 0.95 (a
  // typical chat setting; every row draws), one block per row. µs per call; the logits are L2-resident up to
  // B ≈ 80, as they are when the lm_head GEMM has just written them.
  {
    const int64_t V = 151936;
    struct SampleSetting {
      const char* name;
      float t, top_p;
    };
    const SampleSetting settings[] = {{"greedy", 0.f, 1.f}, {"T 0.8 top-p 0.95", 0.8f, 0.95f}, {"T 1", 1.f, 1.f}};
    for (int64_t B : {1, 16, 64}) {
      float* logits = nullptr;
      TESSERA_CUDA_CHECK(cudaMalloc(&logits, B * V * sizeof(float)));
      fill_normal_kernel<<<1024, 256>>>(logits, B * V, 40, 2.5f);
      TESSERA_CUDA_CHECK(cudaGetLastError());
      tg::SampleParams* params = nullptr;
      tg::SampleOut* out = nullptr;
      TESSERA_CUDA_CHECK(cudaMalloc(&params, B * sizeof(tg::SampleParams)));
      TESSERA_CUDA_CHECK(cudaMalloc(&out, B * sizeof(tg::SampleOut)));
      for (const auto& st : settings) {
        std::vector<tg::SampleParams> hp(B);
        for (int64_t b = 0; b < B; ++b) {
          hp[b].sampling.temperature = st.t;
          hp[b].sampling.top_p = st.top_p;
          hp[b].sampling.seed = static_cast<uint64_t>(b);
        }
        TESSERA_CUDA_CHECK(cudaMemcpy(params, hp.data(), B * sizeof(tg::SampleParams), cudaMemcpyHostToDevice));
        const double ms = median_ms([&](int) {
          TESSERA_STATUS_CHECK(tg::sample_tokens(logits, B, V, params, nullptr, nullptr, nullptr, 0, out, nullptr));
        });
        row(std::string("sample_tokens ") + st.name, "B" + std::to_string(B) + " V" + std::to_string(V), ms,
            fmt("%.1f us/row", 1000.0 * ms / B), fmt("%.0f GB/s of logits", B * V * 4.0 / ms / 1e6));
      }
      for (void* p : {static_cast<void*>(logits), static_cast<void*>(params), static_cast<void*>(out)})
        TESSERA_CUDA_CHECK(cudaFree(p));
    }
  }
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("\ncopy_gbs=%.1f gemm_tflops=%.1f\n", copy_gbs, gemm_tflops);
  return 0;
}
