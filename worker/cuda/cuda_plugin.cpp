// worker/cuda/cuda_plugin.cpp — libtessera_cuda.so's one export (see cuda_plugin.h).
#include "worker/cuda/cuda_plugin.h"

#include "worker/cuda/cuda_backend.h"

#ifdef TESSERA_WITH_NCCL
#include <mpi.h>

#include "parallel/nccl_communicator.h"
#endif

namespace tessera::worker {
namespace {

#ifdef TESSERA_WITH_NCCL
std::unique_ptr<parallel::Communicator> make_nccl(const void* mpi_comm, int device, void* stream) {
  return parallel::make_nccl_communicator(*static_cast<const MPI_Comm*>(mpi_comm), device,
                                          static_cast<cudaStream_t>(stream));
}
#endif

CudaPlugin make_table() {
  CudaPlugin p;
  p.devices_visible = &cuda_devices_visible;
  p.load = &load_cuda_model;
#ifdef TESSERA_WITH_NCCL
  p.make_nccl = &make_nccl;
#endif
  return p;
}

}  // namespace
}  // namespace tessera::worker

extern "C" const tessera::worker::CudaPlugin* tessera_cuda_plugin() {
  static const tessera::worker::CudaPlugin table = tessera::worker::make_table();
  return &table;
}
