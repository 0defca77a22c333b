// parallel/communicator.h — the collectives the tensor-parallel workers use, whatever carries them:
// MPI on the CPU backend, NCCL on GPUs (parallel/nccl_communicator.h), nothing at TP = 1.
//
// Buffers are host memory for MPI and device memory for NCCL. Every call is collective: each rank of the
// group calls it with the same sizes, in the same order. A failed collective throws CommError naming the
// operation and the rank; the engine loop turns it into a fail-fast exit. Not thread-safe: one caller.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace tessera::parallel {

enum class ElemType { kF32, kF16, kBF16, kI32 };

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: buf[i] = sum over ranks of buf[i].
  virtual void all_reduce_sum(void* buf, int64_t count, ElemType type) = 0;
  // recv holds size() blocks of `count` elements, rank r's `send` at block r (every rank receives all).
  virtual void all_gather(const void* send, void* recv, int64_t count, ElemType type) = 0;
  // Rank `root` gets size() blocks of `count` elements; the other ranks' recv is unused (may be null).
  virtual void gather(const void* send, void* recv, int64_t count, ElemType type, int root) = 0;
  virtual void broadcast(void* buf, int64_t count, ElemType type, int root) = 0;
  virtual void barrier() = 0;
  // Seconds spent inside collectives since construction (the all-reduce time metric).
  double seconds_in_collectives() const { return seconds_; }

 protected:
  double seconds_ = 0.0;
};

size_t elem_size(ElemType t);

// A group of one: every collective is a copy or nothing. The TP = 1 path, with no MPI at all.
std::unique_ptr<Communicator> make_single_communicator();

}  // namespace tessera::parallel
