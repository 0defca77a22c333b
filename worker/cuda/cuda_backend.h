// worker/cuda/cuda_backend.h — the CUDA half of worker/backend.h: device discovery and a model loaded onto a
// CudaRunner (weights read on the host for this TP rank, uploaded once, the runner's own stream, NCCL at TP > 1).
// Used only through worker/backend.cpp; see that header for the rules.
#pragma once

#include <memory>
#include <string>

#include "worker/backend.h"

namespace tessera::worker {

// cudaGetDeviceCount, or 0 with the runtime's reason in `why` ("no CUDA-capable device is detected", a driver
// missing or too old).
int cuda_devices_visible(std::string* why);

std::unique_ptr<LoadedModel> load_cuda_model(const LoadRequest& request);

}  // namespace tessera::worker
