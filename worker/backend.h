// worker/backend.h — which engine runs the model: the CPU Transformer or the CUDA runner (`--backend`,
// `backend.kind`), and loading a model onto it.
//
// In: a model path, BackendOptions (kind auto | cpu | cuda, the GPU storage dtype, the KV memory fraction), this
// process's tensor-parallel rank and size, the host communicator between the TP ranks (MPI; nullptr at TP = 1),
// a factory for the device communicator (NCCL) and this worker's index among the workers on its node.
// Out: a LoadedModel: a ModelRunner the Engine drives, plus what it owns (weights, stream, communicator).
// Rules:
// - auto picks cuda when this build has the CUDA backend, its library loads here and a device is visible, else cpu;
//   cuda without one is an error that says which (not built with CUDA / library not loadable / no device visible,
//   with the loader's or the runtime's reason).
// - The CPU backend computes in fp32 whatever backend.dtype says; dtype is the GPU storage type (fp32 is the
//   check mode, close to the CPU engine; bf16 / fp16 with fp32 accumulation for speed).
// - A CUDA worker uses device (local_index mod devices visible): one GPU per worker process, in node order.
// - At TP > 1 the CUDA runner's collectives go through the device communicator (NCCL); the CPU runner's
//   through the host one (MPI).
// Errors: tessera::Error naming the option and the bad value ("backend.kind must be auto, cpu or cuda, got
// 'gpu'"), a model file problem (from the loaders), or a CUDA failure with the call, file and line.
// Thread-safety: load_model is not reentrant over one device; the LoadedModel is driven by one engine loop.
#pragma once

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "common/check.h"
#include "parallel/communicator.h"
#include "worker/encoder_runner.h"
#include "worker/model_runner.h"

namespace tessera::worker {

struct BackendOptions {
  std::string kind = "auto";             // auto | cpu | cuda
  std::string dtype = "bf16";            // bf16 | fp16 | fp32 (GPU storage type)
  double kv_memory_fraction = 0.9;       // (0, 1]: the share of free device memory the KV pool may take
  std::string cpu_kv_dtype = "fp32";     // fp32 | bf16 | fp16: the CPU backend's KV cache
  std::string cpu_activations = "fp32";  // fp32 | int8: the CPU products with quantized weights (kernels/cpu/quant.h)
  bool cuda_graphs = false;              // decode steps as CUDA graphs (CudaRunner::set_cuda_graphs)
  void validate() const;  // throws tessera::Error naming the key: "backend.kind must be auto, cpu or cuda, ..."
};

bool cuda_compiled();  // this build made the CUDA backend library (libtessera_cuda.so)
// CUDA devices visible to this process; 0 when there are none, the build has no CUDA or its library cannot be
// loaded here (no CUDA runtime on this machine: `why` says which, with the loader's message). The first call opens
// the library (worker/cuda/cuda_plugin.h); a process that never asks for CUDA never loads a CUDA library.
int cuda_device_count(std::string* why = nullptr);
// "cpu" or "cuda" for options.kind; throws when cuda is asked for and cannot run here.
std::string resolve_backend(const BackendOptions& options);

// A decoder (GPT-2, Llama) gives a ModelRunner; an encoder (BERT family, worker/encoder_runner.h) an EncoderRunner:
// is_encoder() says which, and only the matching accessor may be called (the other one is a programmer error).
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  virtual bool is_encoder() const { return false; }
  virtual ModelRunner& runner() = 0;
  virtual EncoderRunner& encoder() {  // an encoder's only
    TESSERA_CHECK_MSG(false, "encoder() called on a decoder model");
    std::abort();
  }
  virtual std::string backend() const = 0;            // "cpu" | "cuda"
  virtual std::string describe() const = 0;           // for the logs: device, dtype, weight bytes
  virtual double weight_bytes() const = 0;            // this rank's weights as stored by the backend
  virtual parallel::Communicator* collectives() = 0;  // the TP communicator the runner uses (null at TP 1)
};

// Makes the device communicator of a CUDA worker at TP > 1: (device, stream as cudaStream_t) → NCCL over the
// workers' MPI communicator. Empty: the build has no NCCL (then CUDA at TP > 1 is an error).
using DeviceCommFactory = std::function<std::unique_ptr<parallel::Communicator>(int device, void* stream)>;
// The NCCL factory of the CUDA backend library over a worker group's MPI communicator (mpi_comm points at its
// MPI_Comm, which must outlive the factory's use); empty when the build has no CUDA or no NCCL, or the library
// cannot be loaded.
DeviceCommFactory nccl_comm_factory(const void* mpi_comm);

struct LoadRequest {
  std::string path;
  BackendOptions options;
  int tp_rank = 0, tp_size = 1;
  parallel::Communicator* host_comm = nullptr;  // MPI between the TP ranks (nullptr at TP 1)
  DeviceCommFactory device_comm;
  int local_index = 0;  // this worker's index among the workers on its node
};

std::unique_ptr<LoadedModel> load_model(const LoadRequest& request);

}  // namespace tessera::worker
