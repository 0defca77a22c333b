// worker/cuda/cuda_runner.cpp — see cuda_runner.h: construction, and prefill / decode as the shared forward pass
// (worker/model/forward.h) on the CUDA op backend, then host logits or device sampling. The other stages are in
// weight_upload.cpp, kv_pool.cpp, decode_graphs.cpp and device_sampling.cpp.
#include "worker/cuda/cuda_runner.h"

#include <cstdio>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;

CudaRunner::CudaRunner(model::ModelWeights weights, DType dtype, parallel::Communicator* tp, cudaStream_t stream)
    : config_(weights.config), shard_(weights.shard), dtype_(dtype), esize_(gpu::dtype_size(dtype)), tp_(tp) {
  if (tp_ == nullptr) {
    own_tp_ = parallel::make_single_communicator();
    tp_ = own_tp_.get();
  }
  TESSERA_CHECK(tp_->size() == shard_.tp_size && tp_->rank() == shard_.tp_rank);
  n_kv_heads_ = shard_.kv_heads.size();
  if (stream == nullptr) {
    runner_check(
        [&]() -> Status {
          TESSERA_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
          return Status::success();
        }(),
        "stream");
    own_stream_ = true;
  } else {
    stream_ = stream;
  }
  ops_ = std::make_unique<CudaOps>(dtype_, stream_, scratch_);
  forward_ = std::make_unique<ForwardPass>(config_, shard_, upload(weights), *ops_, *tp_);
}

CudaRunner::~CudaRunner() {
  // Errors here can only be reported: a destructor has no caller to return them to.
  const cudaError_t err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess)
    std::fprintf(stderr, "%s\n", gpu::cuda_error_text(err, "cudaStreamSynchronize", __FILE__, __LINE__).c_str());
  drop_decode_graphs();
  forward_.reset();
  ops_.reset();  // its cuBLAS handle is bound to the stream
  if (own_stream_) cudaStreamDestroy(stream_);
}

void CudaRunner::check_configured() const { TESSERA_CHECK_MSG(n_slots_ > 0, "CudaRunner::configure() was not called"); }

// The decode step up to the logits: its inputs uploaded, then the forward pass eagerly or as the CUDA graph of its
// batch size (TP 1).
const ForwardStep& CudaRunner::decode_step(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                           const std::vector<int32_t>& positions) {
  if (tables.width != 1)
    throw Error("cuda runner: decode reads one KV block per sequence (block tables of " + std::to_string(tables.width) +
                " entries given)");
  const ForwardStep& step = forward_->prepare_decode(tokens, tables, positions, kv_layers_);
  auto run = [&] { forward_->run_decode(kv_layers_); };
  if (cuda_graphs_ && tp_->size() == 1) {
    runner_check(replay_decode_graph(step.B, run), "decode graph");
  } else {
    run();
  }
  return step;
}

std::vector<float> CudaRunner::prefill(const PrefillGroup& group) {
  check_configured();
  forward_->prefill(group, kv_layers_);
  return forward_->logits_to_host();
}

std::vector<float> CudaRunner::decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                      const std::vector<int32_t>& positions) {
  check_configured();
  decode_step(tokens, tables, positions);
  return forward_->logits_to_host();
}

std::vector<sampler::SampleResult> CudaRunner::prefill_and_sample(const PrefillGroup& group,
                                                                  std::span<const SampleRequest> rows) {
  if (!device_sampling_) return ModelRunner::prefill_and_sample(group, rows);
  check_configured();
  std::vector<sampler::SampleResult> results;
  sample(forward_->prefill(group, kv_layers_), SampleJob{rows, &results});
  return results;
}

std::vector<sampler::SampleResult> CudaRunner::decode_and_sample(const std::vector<int32_t>& tokens,
                                                                 const BlockTables& tables,
                                                                 const std::vector<int32_t>& positions,
                                                                 std::span<const SampleRequest> rows) {
  if (!device_sampling_) return ModelRunner::decode_and_sample(tokens, tables, positions, rows);
  check_configured();
  const ForwardStep& step = decode_step(tokens, tables, positions);
  std::vector<sampler::SampleResult> results;
  sample(step, SampleJob{rows, &results});
  return results;
}

std::unique_ptr<ModelRunner> make_cuda_runner(model::ModelWeights weights, DType dtype, parallel::Communicator* tp) {
  return std::make_unique<CudaRunner>(std::move(weights), dtype, tp);
}

}  // namespace tessera::worker
