// parallel/mpi_communicator.cpp — MPI collectives with checked return codes and timing.
#include "parallel/mpi_communicator.h"

#include <chrono>
#include <string>

namespace tessera::parallel {
namespace {

MPI_Datatype mpi_type(ElemType t) {
  switch (t) {
    case ElemType::kF32:
      return MPI_FLOAT;
    case ElemType::kI32:
      return MPI_INT32_T;
    case ElemType::kF16:
    case ElemType::kBF16:
      return MPI_UINT16_T;  // moved, never summed: the CPU backend reduces fp32 only
  }
  return MPI_BYTE;
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(void* buf, int64_t count, ElemType type) override {
    if (type != ElemType::kF32 && type != ElemType::kI32)
      throw CommError("all_reduce_sum: the MPI communicator sums fp32 and int32 only");
    timed("all_reduce",
          [&] { return MPI_Allreduce(MPI_IN_PLACE, buf, as_int(count), mpi_type(type), MPI_SUM, comm_); });
  }
  void all_gather(const void* send, void* recv, int64_t count, ElemType type) override {
    timed("all_gather", [&] {
      return MPI_Allgather(send, as_int(count), mpi_type(type), recv, as_int(count), mpi_type(type), comm_);
    });
  }
  void gather(const void* send, void* recv, int64_t count, ElemType type, int root) override {
    timed("gather", [&] {
      return MPI_Gather(send, as_int(count), mpi_type(type), recv, as_int(count), mpi_type(type), root, comm_);
    });
  }
  void broadcast(void* buf, int64_t count, ElemType type, int root) override {
    timed("broadcast", [&] { return MPI_Bcast(buf, as_int(count), mpi_type(type), root, comm_); });
  }
  void barrier() override {
    timed("barrier", [&] { return MPI_Barrier(comm_); });
  }

 private:
  static int as_int(int64_t n) {
    if (n < 0 || n > INT32_MAX)
      throw CommError("collective of " + std::to_string(n) + " elements exceeds MPI's int count");
    return static_cast<int>(n);
  }
  template <typename F>
  void timed(const char* op, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = f();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, msg, &len);
      throw CommError(std::string(op) + " failed on tensor-parallel rank " + std::to_string(rank_) + ": " +
                      std::string(msg, static_cast<size_t>(len)));
    }
  }
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) { return std::make_unique<MpiCommunicator>(comm); }

}  // namespace tessera::parallel
