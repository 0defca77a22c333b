// tests/gpu/gpu_test_util.h — shared by the GPU engine tests: the device check that makes every test skip
// cleanly where there is no GPU, the oracle reader (tests/python/make_oracles.py's reference.json + raw fp32
// logits), and greedy / teacher-forced drivers over any ModelRunner.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/e2e/reference.h"
#include "worker/model_runner.h"

namespace tessera::gpu_test {

// "" when a CUDA device is usable, else why not.
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  if (n == 0) return "cudaGetDeviceCount() = 0";
  return "";
}

#define TESSERA_REQUIRE_DEVICE()                                      \
  do {                                                                \
    const std::string why_ = ::tessera::gpu_test::no_device_reason(); \
    if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_;    \
  } while (0)

using e2e::RefCase;

inline std::vector<RefCase> read_reference(const std::string& dir) { return e2e::read_reference(dir).cases; }

inline int32_t argmax(const float* x, int64_t n) { return static_cast<int32_t>(std::max_element(x, x + n) - x); }

// Greedy generation of n tokens for one prompt in slot 0.
inline std::vector<int32_t> greedy(worker::ModelRunner& r, const std::vector<int32_t>& prompt, int n) {
  const int64_t V = r.config().vocab;
  auto logits = r.prefill(worker::PrefillGroup::make({prompt}, {0}));
  std::vector<int32_t> out{argmax(logits.data(), V)};
  int32_t pos = static_cast<int32_t>(prompt.size());
  while (static_cast<int>(out.size()) < n) {
    logits = r.decode_slots({out.back()}, {0}, {pos++});
    out.push_back(argmax(logits.data(), V));
  }
  return out;
}

// Logits of n_steps teacher-forced steps along `path` (step 0: after the prompt), slot 0: [n_steps][vocab].
inline std::vector<std::vector<float>> teacher_forced(worker::ModelRunner& r, const std::vector<int32_t>& prompt,
                                                      const std::vector<int32_t>& path, int64_t n_steps) {
  std::vector<std::vector<float>> out;
  out.push_back(r.prefill(worker::PrefillGroup::make({prompt}, {0})));
  int32_t pos = static_cast<int32_t>(prompt.size());
  for (int64_t t = 0; t + 1 < n_steps; ++t) out.push_back(r.decode_slots({path[static_cast<size_t>(t)]}, {0}, {pos++}));
  return out;
}

inline double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;  // NaN never passes
  }
  return m;
}

inline double max_abs(const float* a, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

inline std::string oracle_dir() {
  const char* v = std::getenv("TESSERA_ORACLES");
  return v != nullptr ? v : "";
}

}  // namespace tessera::gpu_test
