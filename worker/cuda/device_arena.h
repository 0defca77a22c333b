// worker/cuda/device_arena.h — one cudaMalloc carved into 256-byte-aligned pieces: the CUDA runner's weights,
// scratch, KV pool and sampler buffers each live in one. Move-only; frees on destruction. Not thread-safe.
// Also the engine's one Status-to-exception conversion.
#pragma once

#include <cstddef>
#include <string>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"

namespace tessera::worker {

// A failed Status of the CUDA engine as tessera::Error: "<who>: <what>: <message>" (who: "cuda runner",
// "cuda backend").
inline void throw_if_failed(const gpu::Status& s, const char* who, const char* what) {
  if (!s.ok()) throw Error(std::string(who) + ": " + what + ": " + s.message);
}

class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena();
  gpu::Status reserve(size_t bytes);  // frees what it held (the caller synchronizes first)
  void* take(size_t bytes);           // bump allocation; aborts (a sizing bug) when it runs out
  void reset() { used_ = 0; }
  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  char* base() const { return base_; }
  static size_t round_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
};

}  // namespace tessera::worker
