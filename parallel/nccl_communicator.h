// parallel/nccl_communicator.h — Communicator over NCCL: the tensor-parallel path between GPU workers.
//
// In: an MPI communicator (the workers' `tensor` communicator; DESIGN.md "Process model") over which rank 0's
// ncclUniqueId is broadcast, the CUDA device of this rank (set current here), and the stream the collectives
// are enqueued on — the CudaRunner's stream, so that they are ordered with the forward pass without any host
// synchronization. Buffers are device memory. all_reduce_sum, all_gather, gather and broadcast are
// asynchronous on that stream; barrier() synchronizes it. gather is built from grouped ncclSend/ncclRecv
// (NCCL has no gather). Every NCCL / CUDA call is checked where it happens: a failure throws CommError with the
// expression, file, line, NCCL's message and the rank. seconds_in_collectives() counts host time spent
// enqueueing (the collectives themselves run on the device). Not thread-safe: one caller.
#pragma once

#include <cuda_runtime.h>
#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace tessera::parallel {

// Collective over `comm`: every rank calls it. Does not take ownership of `comm` or `stream`.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int cuda_device, cudaStream_t stream);

}  // namespace tessera::parallel
