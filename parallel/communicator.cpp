// parallel/communicator.cpp — element sizes and the single-rank communicator.
#include "parallel/communicator.h"

#include <cstring>

namespace tessera::parallel {

size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::kF32:
    case ElemType::kI32:
      return 4;
    case ElemType::kF16:
    case ElemType::kBF16:
      return 2;
  }
  return 0;
}

namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(void*, int64_t, ElemType) override {}
  void all_gather(const void* send, void* recv, int64_t count, ElemType type) override {
    if (send != recv) std::memcpy(recv, send, static_cast<size_t>(count) * elem_size(type));
  }
  void gather(const void* send, void* recv, int64_t count, ElemType type, int) override {
    if (send != recv) std::memcpy(recv, send, static_cast<size_t>(count) * elem_size(type));
  }
  void broadcast(void*, int64_t, ElemType, int) override {}
  void barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() { return std::make_unique<SingleCommunicator>(); }

}  // namespace tessera::parallel
