// worker/backend.cpp — see backend.h. The CUDA half lives in worker/cuda/cuda_backend.cpp (load_cuda_model),
// linked in when the build has CUDA (TESSERA_WITH_CUDA).
#include "worker/backend.h"

#include <cstdio>

#include "common/check.h"
#include "worker/model/weights.h"

#ifdef TESSERA_WITH_CUDA
#include "worker/cuda/cuda_backend.h"
#endif

namespace tessera::worker {
namespace {

class CpuModel final : public LoadedModel {
 public:
  CpuModel(const LoadRequest& r)
      : model_(model::load_weights(r.path, r.tp_rank, r.tp_size), r.host_comm), runner_(model_), comm_(r.host_comm) {}
  ModelRunner& runner() override { return runner_; }
  std::string backend() const override { return "cpu"; }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "cpu backend, fp32, %.0f MB of weights", weight_bytes() / 1e6);
    return buf;
  }
  double weight_bytes() const override { return static_cast<double>(model_.weights().n_bytes()); }
  parallel::Communicator* collectives() override { return comm_; }

 private:
  Transformer model_;
  CpuRunner runner_;
  parallel::Communicator* comm_;
};

}  // namespace

void BackendOptions::validate() const {
  if (kind != "auto" && kind != "cpu" && kind != "cuda")
    throw Error("backend.kind must be auto, cpu or cuda, got '" + kind + "'");
  if (dtype != "bf16" && dtype != "fp16" && dtype != "fp32")
    throw Error("backend.dtype must be bf16, fp16 or fp32, got '" + dtype + "'");
  if (!(kv_memory_fraction > 0.0 && kv_memory_fraction <= 1.0))
    throw Error("backend.kv_memory_fraction must be in (0, 1], got " + std::to_string(kv_memory_fraction));
}

bool cuda_compiled() {
#ifdef TESSERA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count(std::string* why) {
#ifdef TESSERA_WITH_CUDA
  return cuda_devices_visible(why);
#else
  if (why) *why = "this tessera was built without the CUDA backend (no nvcc at build time, or -DTESSERA_CUDA=OFF)";
  return 0;
#endif
}

std::string resolve_backend(const BackendOptions& options) {
  options.validate();
  if (options.kind == "cpu") return "cpu";
  std::string why;
  const int n = cuda_device_count(&why);
  if (n > 0) return "cuda";
  if (options.kind == "cuda") throw Error("backend.kind cuda: " + why);
  return "cpu";
}

std::unique_ptr<LoadedModel> load_model(const LoadRequest& r) {
  TESSERA_CHECK(r.tp_size >= 1 && r.tp_rank >= 0 && r.tp_rank < r.tp_size);
  TESSERA_CHECK_MSG(r.tp_size == 1 || r.host_comm != nullptr, "TP > 1 needs the host communicator");
  if (resolve_backend(r.options) == "cpu") return std::make_unique<CpuModel>(r);
#ifdef TESSERA_WITH_CUDA
  return load_cuda_model(r);
#else
  throw Error("backend.kind cuda: not built with CUDA");  // resolve_backend() said cuda: unreachable
#endif
}

}  // namespace tessera::worker
