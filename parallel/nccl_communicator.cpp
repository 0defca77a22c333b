// parallel/nccl_communicator.cpp — see nccl_communicator.h.
#include "parallel/nccl_communicator.h"

#include <nccl.h>

#include <chrono>
#include <string>

namespace tessera::parallel {
namespace {

#define TESSERA_NCCL_CHECK(expr)                                                                                   \
  do {                                                                                                             \
    ncclResult_t tessera_nr_ = (expr);                                                                             \
    if (tessera_nr_ != ncclSuccess)                                                                                \
      throw CommError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #expr + " failed on rank " + \
                      std::to_string(rank_) + ": " + ncclGetErrorString(tessera_nr_) +                             \
                      (tessera_nr_ == ncclSystemError || tessera_nr_ == ncclRemoteError                            \
                           ? std::string(" (") + ncclGetLastError(comm_) + ")"                                     \
                           : std::string()));                                                                      \
  } while (0)

#define TESSERA_NCCL_CUDA_CHECK(expr)                                                                              \
  do {                                                                                                             \
    cudaError_t tessera_ce_ = (expr);                                                                              \
    if (tessera_ce_ != cudaSuccess)                                                                                \
      throw CommError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #expr + " failed on rank " + \
                      std::to_string(rank_) + ": " + cudaGetErrorName(tessera_ce_) + " (" +                        \
                      cudaGetErrorString(tessera_ce_) + ")");                                                      \
  } while (0)

ncclDataType_t nccl_type(ElemType t) {
  switch (t) {
    case ElemType::kF32:
      return ncclFloat32;
    case ElemType::kF16:
      return ncclFloat16;
    case ElemType::kBF16:
      return ncclBfloat16;
    case ElemType::kI32:
      return ncclInt32;
  }
  return ncclFloat32;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm mpi, int device, cudaStream_t stream) : stream_(stream) {
    int rank = 0, size = 0;
    if (MPI_Comm_rank(mpi, &rank) != MPI_SUCCESS || MPI_Comm_size(mpi, &size) != MPI_SUCCESS)
      throw CommError("nccl communicator: MPI_Comm_rank / MPI_Comm_size failed");
    rank_ = rank;
    size_ = size;
    TESSERA_NCCL_CUDA_CHECK(cudaSetDevice(device));
    ncclUniqueId id{};
    if (rank_ == 0) TESSERA_NCCL_CHECK(ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi) != MPI_SUCCESS)
      throw CommError("nccl communicator: MPI_Bcast of the NCCL unique id failed on rank " + std::to_string(rank_));
    TESSERA_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    TESSERA_NCCL_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(int32_t)));
  }
  ~NcclCommunicator() override {
    if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(void* buf, int64_t count, ElemType type) override {
    Timer t(seconds_);
    TESSERA_NCCL_CHECK(ncclAllReduce(buf, buf, static_cast<size_t>(count), nccl_type(type), ncclSum, comm_, stream_));
  }
  void all_gather(const void* send, void* recv, int64_t count, ElemType type) override {
    Timer t(seconds_);
    TESSERA_NCCL_CHECK(ncclAllGather(send, recv, static_cast<size_t>(count), nccl_type(type), comm_, stream_));
  }
  void gather(const void* send, void* recv, int64_t count, ElemType type, int root) override {
    Timer t(seconds_);
    const size_t bytes = static_cast<size_t>(count) * elem_size(type);
    if (rank_ == root) {
      // Its own block by a device copy; the others by point-to-point receives, grouped into one launch.
      TESSERA_NCCL_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(recv) + static_cast<size_t>(root) * bytes, send, bytes,
                                              cudaMemcpyDeviceToDevice, stream_));
      TESSERA_NCCL_CHECK(ncclGroupStart());
      for (int r = 0; r < size_; ++r) {
        if (r == root) continue;
        TESSERA_NCCL_CHECK(ncclRecv(static_cast<char*>(recv) + static_cast<size_t>(r) * bytes,
                                    static_cast<size_t>(count), nccl_type(type), r, comm_, stream_));
      }
      TESSERA_NCCL_CHECK(ncclGroupEnd());
    } else {
      TESSERA_NCCL_CHECK(ncclSend(send, static_cast<size_t>(count), nccl_type(type), root, comm_, stream_));
    }
  }
  void broadcast(void* buf, int64_t count, ElemType type, int root) override {
    Timer t(seconds_);
    TESSERA_NCCL_CHECK(ncclBroadcast(buf, buf, static_cast<size_t>(count), nccl_type(type), root, comm_, stream_));
  }
  void barrier() override {
    Timer t(seconds_);
    TESSERA_NCCL_CHECK(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, stream_));
    TESSERA_NCCL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  struct Timer {
    explicit Timer(double& acc) : acc_(acc), t0_(std::chrono::steady_clock::now()) {}
    ~Timer() { acc_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
    double& acc_;
    std::chrono::steady_clock::time_point t0_;
  };

  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
  void* barrier_buf_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int cuda_device, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(comm, cuda_device, stream);
}

}  // namespace tessera::parallel
