// worker/cuda/cuda_backend.cpp — see cuda_backend.h.
#include "worker/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdio>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "worker/cuda/cuda_runner.h"
#include "worker/model/weights.h"

namespace tessera::worker {
namespace {

void check(cudaError_t err, const char* expr, int line) {
  if (err != cudaSuccess) throw Error("cuda backend: " + gpu::cuda_error_text(err, expr, __FILE__, line));
}
#define TESSERA_BACKEND_CUDA(expr) check((expr), #expr, __LINE__)

gpu::DType parse_dtype(const std::string& s) {
  if (s == "fp32") return gpu::DType::F32;
  if (s == "fp16") return gpu::DType::F16;
  if (s == "bf16") return gpu::DType::BF16;
  throw Error("backend.dtype must be bf16, fp16 or fp32, got '" + s + "'");
}

// The runner's stream, created before the communicator (NCCL enqueues on it) and destroyed after both.
class Stream {
 public:
  Stream() { TESSERA_BACKEND_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

int select_device(int local_index) {
  std::string why;
  const int n = cuda_devices_visible(&why);
  if (n == 0) throw Error("backend.kind cuda: " + why);
  const int device = local_index % n;
  TESSERA_BACKEND_CUDA(cudaSetDevice(device));
  return device;
}

class CudaModel final : public LoadedModel {
 public:
  explicit CudaModel(const LoadRequest& r)
      : device_(select_device(r.local_index)), dtype_(parse_dtype(r.options.dtype)) {
    cudaDeviceProp prop{};
    TESSERA_BACKEND_CUDA(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;
    if (r.tp_size > 1) {
      if (!r.device_comm)
        throw Error("backend.kind cuda at TP " + std::to_string(r.tp_size) +
                    " needs NCCL, which this build did not find: use backend.kind cpu or rebuild with NCCL");
      comm_ = r.device_comm(device_, stream_.get());
    }
    runner_ = std::make_unique<CudaRunner>(model::load_weights(r.path, r.tp_rank, r.tp_size), dtype_, comm_.get(),
                                           stream_.get());
    runner_->set_kv_memory_fraction(r.options.kv_memory_fraction);
    runner_->set_cuda_graphs(r.options.cuda_graphs);
  }
  ModelRunner& runner() override { return *runner_; }
  std::string backend() const override { return "cuda"; }
  std::string describe() const override {
    char buf[256];
    std::snprintf(buf, sizeof buf, "cuda backend, device %d (%s), %s storage, %.0f MB of weights%s", device_,
                  device_name_.c_str(), gpu::dtype_name(dtype_), weight_bytes() / 1e6,
                  runner_->cuda_graphs() ? ", decode as CUDA graphs" : "");
    return buf;
  }
  double weight_bytes() const override { return static_cast<double>(runner_->weight_bytes()); }
  parallel::Communicator* collectives() override { return comm_.get(); }

 private:
  int device_;
  gpu::DType dtype_;
  std::string device_name_;
  Stream stream_;  // declared before comm_ and runner_: destroyed after them
  std::unique_ptr<parallel::Communicator> comm_;
  std::unique_ptr<CudaRunner> runner_;
};

}  // namespace

int cuda_devices_visible(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = std::string("no CUDA device is usable: ") + cudaGetErrorString(err);
    (void)cudaGetLastError();  // not sticky: clear it so that a later launch check does not report it
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device is visible";
  return n;
}

std::unique_ptr<LoadedModel> load_cuda_model(const LoadRequest& request) {
  return std::make_unique<CudaModel>(request);
}

}  // namespace tessera::worker
