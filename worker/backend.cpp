// worker/backend.cpp — see backend.h. The CUDA half is a library opened at run time (worker/cuda/cuda_plugin.h:
// libtessera_cuda.so, built when the build has CUDA, TESSERA_WITH_CUDA), so nothing here links CUDA.
#include "worker/backend.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "common/check.h"
#include "kernels/cpu/isa.h"
#include "worker/cuda/cuda_plugin.h"
#include "worker/model/weights.h"

namespace tessera::worker {
namespace {

class CpuModel final : public LoadedModel {
 public:
  CpuModel(const LoadRequest& r)
      : model_(model::load_weights(r.path, r.tp_rank, r.tp_size), r.host_comm), runner_(model_), comm_(r.host_comm) {
    const std::string& kv = r.options.cpu_kv_dtype;
    model_.set_kv_dtype(kv == "bf16" ? ops::DType::BF16 : kv == "fp16" ? ops::DType::F16 : ops::DType::F32);
    model_.set_activations(r.options.cpu_activations == "int8" ? ops::Activations::kInt8 : ops::Activations::kF32);
  }
  ModelRunner& runner() override { return runner_; }
  std::string backend() const override { return "cpu"; }
  std::string describe() const override {
    const auto& w = model_.weights();
    char buf[192];
    std::snprintf(buf, sizeof buf,
                  "cpu backend (%s), %s activations, %.0f MB of weights in their file's types (%.0f MB "
                  "mapped in place), %s KV cache",
                  ops::isa_name(ops::active_isa()), ops::activations_name(model_.activations()),
                  static_cast<double>(w.n_bytes()) / 1e6, static_cast<double>(w.n_mapped_bytes()) / 1e6,
                  ops::dtype_name(model_.kv_dtype()));
    return buf;
  }
  double weight_bytes() const override { return static_cast<double>(model_.weights().n_bytes()); }
  parallel::Communicator* collectives() override { return comm_; }

 private:
  Transformer model_;
  CpuRunner runner_;
  parallel::Communicator* comm_;
};

// Where libtessera_cuda.so is looked for: $TESSERA_CUDA_LIBRARY when set (only there), else next to the running
// binary, else in the build tree that made this binary (tests run from its subfolders).
std::vector<std::string> cuda_library_candidates() {
  if (const char* env = std::getenv("TESSERA_CUDA_LIBRARY"); env != nullptr && *env != '\0') return {env};
  std::vector<std::string> out;
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    std::string dir(exe, static_cast<size_t>(n));
    dir.resize(dir.rfind('/') + 1);
    out.push_back(dir + "libtessera_cuda.so");
  }
#ifdef TESSERA_CUDA_LIBRARY_BUILT
  if (out.empty() || out.front() != TESSERA_CUDA_LIBRARY_BUILT) out.push_back(TESSERA_CUDA_LIBRARY_BUILT);
#endif
  return out;
}

struct PluginState {
  const CudaPlugin* table = nullptr;
  std::string why;  // why there is no table
};

// Opens the CUDA backend once per process (the handle is never closed: the models it makes live in it).
const PluginState& cuda_plugin() {
  static PluginState state;
  static std::once_flag once;
  std::call_once(once, [] {
    if (!cuda_compiled()) {
      state.why = "this tessera was built without the CUDA backend (no nvcc at build time, or -DTESSERA_CUDA=OFF)";
      return;
    }
    std::string tried;
    for (const std::string& path : cuda_library_candidates()) {
      if (::access(path.c_str(), F_OK) != 0) {
        tried += (tried.empty() ? "" : "; ") + path + ": no such file";
        continue;
      }
      void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h == nullptr) {
        const char* err = ::dlerror();
        tried += (tried.empty() ? "" : "; ") + path + ": " + (err != nullptr ? err : "dlopen failed");
        continue;
      }
      using Entry = const CudaPlugin* (*)();
      auto entry = reinterpret_cast<Entry>(::dlsym(h, "tessera_cuda_plugin"));
      const CudaPlugin* t = entry != nullptr ? entry() : nullptr;
      if (t == nullptr || t->abi_version != kCudaPluginAbi) {
        tried += (tried.empty() ? "" : "; ") + path +
                 ": not this build's CUDA backend (no tessera_cuda_plugin() of ABI " + std::to_string(kCudaPluginAbi) +
                 ")";
        ::dlclose(h);
        continue;
      }
      state.table = t;
      return;
    }
    state.why = "the CUDA backend library could not be loaded (" + tried + ")";
  });
  return state;
}

}  // namespace

void BackendOptions::validate() const {
  if (kind != "auto" && kind != "cpu" && kind != "cuda")
    throw Error("backend.kind must be auto, cpu or cuda, got '" + kind + "'");
  if (dtype != "bf16" && dtype != "fp16" && dtype != "fp32")
    throw Error("backend.dtype must be bf16, fp16 or fp32, got '" + dtype + "'");
  if (!(kv_memory_fraction > 0.0 && kv_memory_fraction <= 1.0))
    throw Error("backend.kv_memory_fraction must be in (0, 1], got " + std::to_string(kv_memory_fraction));
  if (cpu_kv_dtype != "fp32" && cpu_kv_dtype != "bf16" && cpu_kv_dtype != "fp16")
    throw Error("backend.cpu_kv_dtype must be fp32, bf16 or fp16, got '" + cpu_kv_dtype + "'");
  if (cpu_activations != "fp32" && cpu_activations != "int8")
    throw Error("backend.cpu_activations must be fp32 or int8, got '" + cpu_activations + "'");
}

bool cuda_compiled() {
#ifdef TESSERA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count(std::string* why) {
  const PluginState& p = cuda_plugin();
  if (p.table == nullptr) {
    if (why) *why = p.why;
    return 0;
  }
  return p.table->devices_visible(why);
}

DeviceCommFactory nccl_comm_factory(const void* mpi_comm) {
  if (!cuda_compiled()) return {};  // a CPU build never opens the library
  const PluginState& p = cuda_plugin();
  if (p.table == nullptr || p.table->make_nccl == nullptr) return {};
  return [make = p.table->make_nccl, mpi_comm](int device, void* stream) { return make(mpi_comm, device, stream); };
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
  return cuda_plugin().table->load(r);  // resolve_backend() said cuda: the library is loaded and sees a device
}

}  // namespace tessera::worker
