// tests/gpu/test_nccl_communicator.cpp — the NCCL communicator at size 1 (MPI_COMM_SELF): every collective on
// device buffers, values exactly representable (nccl-tests' rule), counted wrong elements must be 0. Sizes > 1
// need several GPUs (mpirun -n N on a multi-GPU machine). Label gpu; skips with "no CUDA device: ..." without one.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

#include "parallel/nccl_communicator.h"

namespace tessera {
namespace {

std::string no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return n == 0 ? "cudaGetDeviceCount() = 0" : "";
}

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

TEST(NcclCommunicator, SizeOneCollectives) {
  const std::string why = no_device_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreate(&stream));
  auto comm = parallel::make_nccl_communicator(MPI_COMM_SELF, 0, stream);
  ASSERT_EQ(comm->size(), 1);
  ASSERT_EQ(comm->rank(), 0);
  const int64_t n = 1 << 20;
  std::vector<float> host(n);
  for (int64_t i = 0; i < n; ++i) host[i] = static_cast<float>((i % 1021) - 510);  // exact in fp32
  float *a = nullptr, *b = nullptr;
  CUDA_OK(cudaMalloc(&a, n * sizeof(float)));
  CUDA_OK(cudaMalloc(&b, n * sizeof(float)));
  CUDA_OK(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  comm->all_reduce_sum(a, n, parallel::ElemType::kF32);
  comm->broadcast(a, n, parallel::ElemType::kF32, 0);
  comm->gather(a, b, n, parallel::ElemType::kF32, 0);
  comm->all_gather(b, a, n, parallel::ElemType::kF32);
  comm->barrier();
  std::vector<float> back(n);
  CUDA_OK(cudaMemcpy(back.data(), a, n * sizeof(float), cudaMemcpyDeviceToHost));
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += back[i] != host[i];
  EXPECT_EQ(wrong, 0);
  cudaFree(a);
  cudaFree(b);
  comm.reset();
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  MPI_Finalize();
  return rc;
}
