// worker/cuda/cuda_plugin.h — the boundary between `tessera` and its CUDA backend, which is a shared library
// (libtessera_cuda.so, next to the binary) that worker/backend.cpp opens at run time, as llama.cpp's
// GGML_BACKEND_DL opens its backends. So the binary itself links no CUDA library: a CUDA build starts and serves on
// the CPU on a machine without the CUDA runtime, and a coordinator rank never loads it.
//
// The library exports one C symbol, tessera_cuda_plugin(), returning this table. Both sides are built from the same
// tree by the same compiler, so C++ types cross it (the table's abi_version guards against a library from another
// build). The library carries its own copy of what it needs (the forward pass, the model loaders, the kernels),
// hidden, and shares only the types of worker/backend.h with the binary. No CUDA or MPI header here.
#pragma once

#include <memory>
#include <string>

#include "worker/backend.h"

namespace tessera::worker {

// Bumped whenever this table or a type it passes (LoadRequest, LoadedModel, ModelRunner, Communicator) changes.
inline constexpr int kCudaPluginAbi = 1;

struct CudaPlugin {
  int abi_version = kCudaPluginAbi;
  // cudaGetDeviceCount, or 0 with the runtime's reason in `why`.
  int (*devices_visible)(std::string* why) = nullptr;
  // A model loaded onto a CudaRunner (cuda_backend.h's load_cuda_model).
  std::unique_ptr<LoadedModel> (*load)(const LoadRequest& request) = nullptr;
  // The NCCL communicator of a worker's tensor group: mpi_comm points at its MPI_Comm, stream is a cudaStream_t.
  // nullptr when the library was built without NCCL.
  std::unique_ptr<parallel::Communicator> (*make_nccl)(const void* mpi_comm, int device, void* stream) = nullptr;
};

}  // namespace tessera::worker

extern "C" {
// The library's one export. Named for dlsym.
__attribute__((visibility("default"))) const tessera::worker::CudaPlugin* tessera_cuda_plugin();
}
