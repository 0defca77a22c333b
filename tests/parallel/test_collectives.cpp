// tests/parallel/test_collectives.cpp — the MPI communicator under mpirun, nccl-tests style: inputs whose sums
// are exactly representable in fp32 (small integers scaled by powers of two), then a count of wrong elements.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <vector>

#include "parallel/mpi_communicator.h"

namespace tessera::parallel {
namespace {

// Rank r's element i: (i % 251 + r) · 2^-(i % 7). Integers below 2^24 times powers of two add exactly.
float value(int64_t i, int r) { return static_cast<float>((i % 251) + r) * std::ldexp(1.0f, -static_cast<int>(i % 7)); }

TEST(MpiCommunicator, AllReduceSumIsExactOnEveryRank) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  const int n_ranks = comm->size();
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{1} << 20}) {
    std::vector<float> buf(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) buf[i] = value(i, comm->rank());
    comm->all_reduce_sum(buf.data(), n, ElemType::kF32);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      float want = 0.0f;
      for (int r = 0; r < n_ranks; ++r) want += value(i, r);
      wrong += buf[i] != want;
    }
    EXPECT_EQ(wrong, 0) << n << " elements on rank " << comm->rank();
  }
}

TEST(MpiCommunicator, GatherAllGatherBroadcast) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  const int R = comm->size(), me = comm->rank();
  const int64_t n = 1000;
  std::vector<float> mine(n), all(static_cast<size_t>(n * R), -1.0f);
  for (int64_t i = 0; i < n; ++i) mine[i] = value(i, me);
  comm->all_gather(mine.data(), all.data(), n, ElemType::kF32);
  int64_t wrong = 0;
  for (int r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) wrong += all[r * n + i] != value(i, r);
  EXPECT_EQ(wrong, 0);
  std::vector<float> at_root(me == 0 ? n * R : 0);
  comm->gather(mine.data(), me == 0 ? at_root.data() : nullptr, n, ElemType::kF32, 0);
  if (me == 0) {
    wrong = 0;
    for (int r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i) wrong += at_root[r * n + i] != value(i, r);
    EXPECT_EQ(wrong, 0);
  }
  std::vector<int32_t> ids(17, me);
  comm->broadcast(ids.data(), 17, ElemType::kI32, R - 1);
  for (int32_t x : ids) EXPECT_EQ(x, R - 1);
  EXPECT_GT(comm->seconds_in_collectives(), 0.0);
}

}  // namespace
}  // namespace tessera::parallel
