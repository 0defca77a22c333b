// fuzz/check_tensor_reads.h — the checks fuzz_gguf and fuzz_safetensors share: both readers answer the same
// TensorSource reads (formats/tensor_source.h), so a tensor they opened must read the same way.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "fuzz/fuzz_support.h"

namespace tessera::fuzz {

// True when f() throws tessera::Error (any other exception escapes: a crash for libFuzzer).
template <typename F>
bool throws_error(F&& f) {
  try {
    f();
    return false;
  } catch (const Error&) {
    return true;
  }
}

// Out-of-range reads throw; when the tensor has at most `max_elements`, read_all() has numel elements and a
// block picked by `knob` equals the same rows and columns of read_all().
template <typename File>
void check_tensor_reads(const char* target, const File& f, const std::string& name, uint32_t knob,
                        int64_t max_elements) {
  const auto& info = f.info(name);
  const int64_t numel = info.numel(), rows = info.rows(), cols = info.cols();
  FUZZ_ASSERT(target, rows * cols == numel, name);
  float dummy = 0;
  FUZZ_ASSERT(target, throws_error([&] { f.read(name, -1, 0, 0, 0, &dummy); }), name);
  if (rows < INT64_MAX) FUZZ_ASSERT(target, throws_error([&] { f.read(name, 0, rows + 1, 0, cols, &dummy); }), name);
  if (cols < INT64_MAX) FUZZ_ASSERT(target, throws_error([&] { f.read(name, 0, rows, cols, cols + 1, &dummy); }), name);
  if (numel > 0) FUZZ_ASSERT(target, throws_error([&] { f.read(name, 0, 1, 0, 1, nullptr); }), name);
  if (numel > max_elements) return;

  const std::vector<float> all = f.read_all(name);
  FUZZ_ASSERT(target, static_cast<int64_t>(all.size()) == numel, name);
  if (numel == 0) return;
  // A block picked by the knob: [r0, r1) x [c0, c1), non-empty.
  const int64_t r0 = (knob & 0xff) % rows, r1 = r0 + 1 + ((knob >> 8) & 0xff) % (rows - r0);
  const int64_t c0 = ((knob >> 16) & 0xff) % cols, c1 = c0 + 1 + (knob >> 24) % (cols - c0);
  std::vector<float> block(static_cast<size_t>((r1 - r0) * (c1 - c0)));
  f.read(name, r0, r1, c0, c1, block.data());
  for (int64_t r = r0; r < r1; ++r) {
    const float* want = all.data() + r * cols + c0;
    const float* got = block.data() + (r - r0) * (c1 - c0);
    FUZZ_ASSERT(target, std::memcmp(want, got, sizeof(float) * static_cast<size_t>(c1 - c0)) == 0,
                "block read of '" + name + "' differs from read_all()");
  }
}

}  // namespace tessera::fuzz
