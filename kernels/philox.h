// kernels/philox.h — Philox4x32-10, the counter-based RNG behind seeded sampling on the CPU and the GPU.
//
// In: a 64-bit key (the request's seed) and a 128-bit counter; out: 4 independent 32-bit words. There is no
// state: the same (key, counter) gives the same words on any thread, in any batch, on host or device. That is
// what makes a seeded request sample the same tokens whatever else is in its batch, and what lets a CUDA
// sampling kernel reproduce worker/sampler.cpp draw for draw (it includes this header unchanged).
//
// Algorithm: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11), the
// Philox4x32 variant with 10 rounds, checked against the Random123 library's known-answer vectors in
// tests/worker/test_sampler.cpp.
//
// tessera's counter layout for sampling: (lo32(step), draw, hi32(step), 0) — that is (step, draw, 0, 0) for
// every step below 2^32. Key: (lo32(seed), hi32(seed)).
// Thread-safety: every function is pure.
#pragma once

#include <cstdint>

#ifndef TESSERA_HOST_DEVICE
#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif
#endif

namespace tessera::philox {

// 4 words: the counter going in, the random bits coming out.
struct Counter {
  uint32_t w[4];
};
struct Key {
  uint32_t w[2];
};

// Round multipliers and Weyl key increments of Philox4x32 (the paper's constants, as in Random123).
inline constexpr uint32_t kM0 = 0xD2511F53u;
inline constexpr uint32_t kM1 = 0xCD9E8D57u;
inline constexpr uint32_t kW0 = 0x9E3779B9u;  // golden ratio
inline constexpr uint32_t kW1 = 0xBB67AE85u;  // sqrt(3) - 1
inline constexpr int kRounds = 10;

TESSERA_HOST_DEVICE inline void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  *lo = a * b;
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
#endif
}

// One Philox round: two 32x32→64 multiplies, a Feistel-like swap, the key mixed in by xor.
TESSERA_HOST_DEVICE inline Counter philox_round(Counter c, Key k) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo32(kM0, c.w[0], &hi0, &lo0);
  mulhilo32(kM1, c.w[2], &hi1, &lo1);
  return Counter{{hi1 ^ c.w[1] ^ k.w[0], lo1, hi0 ^ c.w[3] ^ k.w[1], lo0}};
}

// Philox4x32-10: 10 rounds, the key bumped by the Weyl constants between rounds.
TESSERA_HOST_DEVICE inline Counter philox4x32_10(Counter c, Key k) {
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      k.w[0] += kW0;
      k.w[1] += kW1;
    }
    c = philox_round(c, k);
  }
  return c;
}

TESSERA_HOST_DEVICE inline Key key_from_seed(uint64_t seed) {
  return Key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
}

// The counter of draw `draw` at decode step `step` (see the layout in the banner).
TESSERA_HOST_DEVICE inline Counter sampling_counter(uint64_t step, uint32_t draw) {
  return Counter{{static_cast<uint32_t>(step), draw, static_cast<uint32_t>(step >> 32), 0u}};
}

// A float uniform in [0, 1) from the top 24 bits of a word: every value is exactly representable and 1.0 is
// never returned (the largest is 1 - 2^-24).
TESSERA_HOST_DEVICE inline float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// The uniform that sampling uses for (seed, step, draw): word 0 of the Philox block.
TESSERA_HOST_DEVICE inline float sampling_uniform(uint64_t seed, uint64_t step, uint32_t draw) {
  return uniform_from_bits(philox4x32_10(sampling_counter(step, draw), key_from_seed(seed)).w[0]);
}

}  // namespace tessera::philox
