// worker/cuda/cuda_runner.h — the CUDA backend of ModelRunner: the forward pass of worker/model/forward.h on one GPU,
// through the CUDA op backend (cuda_ops_backend.h).
//
// In: one TP rank's ModelWeights (fp32, host), a storage dtype (F32: the check mode, close to the CPU engine;
// BF16 / F16: fp32 accumulation, for speed), a Communicator over *device* buffers (NCCL) when TP > 1.
// Out: prefill() / decode() return host fp32 logits [B, vocab] on TP rank 0, from the same forward pass as the CPU
// Transformer. prefill_and_sample() / decode_and_sample() sample on the device instead (kernels/cuda sample_tokens
// over the gathered logits, TP rank 0 only): only one SampleOut per row crosses PCIe, never the [B, vocab] logits.
// What is the GPU's lives here, one file per stage: the weight upload into one device arena (weight_upload.cpp),
// the KV pool sized from free memory and agreed over the TP ranks (kv_pool.cpp), the decode steps as CUDA graphs
// (decode_graphs.cpp), device sampling (device_sampling.cpp); the op backend and its scratch arena
// (cuda_ops_backend.cpp, device_arena.cpp). No managed memory. All work runs on one stream (its own, or the
// caller's so that an NCCL communicator can share it); each call synchronizes once, on the logits (or the sampled
// rows') copy.
// Errors: every CUDA / cuBLAS call is checked where it happens; a failure throws tessera::Error with the
// expression, file and line. Not thread-safe: one engine loop drives a runner.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "worker/cuda/cuda_ops_backend.h"
#include "worker/cuda/device_arena.h"
#include "worker/model/forward.h"
#include "worker/model_runner.h"

namespace tessera::worker {

// A failed Status of a runner stage as tessera::Error("cuda runner: <what>: ...").
inline void runner_check(const gpu::Status& s, const char* what) { throw_if_failed(s, "cuda runner", what); }

// Bytes of K + V cache one slot of max_ctx tokens needs on this rank.
size_t kv_bytes_per_slot(const model::ModelConfig& c, int64_t n_kv_heads_local, int64_t max_ctx, gpu::DType dtype);
// The most slots whose cache fits in fraction · free_bytes (at least 0).
int64_t kv_slots_fitting(size_t free_bytes, double fraction, size_t bytes_per_slot);

class CudaRunner final : public ModelRunner {
 public:
  // tp == nullptr: a single rank. With tp->size() > 1, tp must work on device buffers (an NCCL communicator
  // enqueueing on `stream`). stream == nullptr: the runner creates (and destroys) its own.
  CudaRunner(model::ModelWeights weights, gpu::DType dtype, parallel::Communicator* tp = nullptr,
             cudaStream_t stream = nullptr);
  ~CudaRunner() override;
  CudaRunner(const CudaRunner&) = delete;
  CudaRunner& operator=(const CudaRunner&) = delete;

  const model::ModelConfig& config() const override { return config_; }
  // The slot layout: one block of max_ctx tokens per sequence (the decode kernels read one block per sequence
  // until they read block tables), as many as kv_memory_fraction holds, at most request.max_seqs.
  KvGeometry configure(const KvRequest& request) override;
  KvGeometry kv_geometry() const override { return {n_slots_, n_slots_, max_ctx_}; }
  std::vector<float> prefill(const PrefillGroup& group) override;
  std::vector<float> decode(const std::vector<int32_t>& tokens, const BlockTables& tables,
                            const std::vector<int32_t>& positions) override;
  // Sampling next to the logits (gpu::sample_tokens): only the tokens and logprobs are copied to the host. On by
  // default; off, these copy the logits to the host and run worker/sampler.h (ModelRunner's default).
  bool samples_on_device() const override { return device_sampling_; }
  void set_device_sampling(bool on) { device_sampling_ = on; }
  // Decode steps through CUDA graphs (one per batch size, captured on the second step of that size, replayed
  // after; TP = 1 only: at TP > 1 the steps run eagerly). Off unless set (backend.cuda_graphs).
  void set_cuda_graphs(bool on);
  bool cuda_graphs() const { return cuda_graphs_; }
  uint64_t cuda_graph_replays() const { return graph_replays_; }
  std::vector<sampler::SampleResult> prefill_and_sample(const PrefillGroup& group,
                                                        std::span<const SampleRequest> rows) override;
  std::vector<sampler::SampleResult> decode_and_sample(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                                       const std::vector<int32_t>& positions,
                                                       std::span<const SampleRequest> rows) override;

  gpu::DType dtype() const { return dtype_; }
  cudaStream_t stream() const { return stream_; }
  size_t weight_bytes() const { return weights_.used(); }
  size_t kv_bytes() const { return kv_bytes_; }
  // The largest n_slots whose KV cache (max_ctx tokens each) fits in `fraction` of the device's free memory
  // now, counting the cache configure() would free first. For sizing the pool from a config fraction.
  int64_t max_slots_fitting(double fraction, int64_t max_ctx) const;
  // configure() allocates min(n_slots, the slots fitting in this fraction of the free memory) slots, agreed
  // across TP ranks (the smallest count). (0, 1]; 0.9 unless set (backend.kv_memory_fraction).
  void set_kv_memory_fraction(double fraction);

 private:
  struct SampleJob {  // prefill / decode sample on the device instead of returning logits
    std::span<const SampleRequest> rows;
    std::vector<sampler::SampleResult>* results;
  };

  ModelTensors upload(const model::ModelWeights& w);  // into weights_ (weight_upload.cpp)
  void check_configured() const;
  const ForwardStep& decode_step(const std::vector<int32_t>& tokens, const BlockTables& tables,
                                 const std::vector<int32_t>& positions);
  // The decode step from the embedding to the logits (`forward`, enqueued on stream_) through the CUDA graph of
  // batch size B (decode_graphs.cpp).
  gpu::Status replay_decode_graph(int64_t B, const std::function<void()>& forward);
  void drop_decode_graphs();
  // After the forward pass: the step's logits (gathered to rank 0) → gpu::sample_tokens → job.results
  // (device_sampling.cpp).
  void sample(const ForwardStep& step, const SampleJob& job);
  gpu::Status sample_rows(const ForwardStep& step, const SampleJob& job);
  int64_t agree_on_slots(int64_t n);  // the smallest n over the TP ranks (collective)

  model::ModelConfig config_;
  parallel::Shard shard_;
  gpu::DType dtype_;
  size_t esize_;
  std::unique_ptr<parallel::Communicator> own_tp_;
  parallel::Communicator* tp_;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  int64_t n_kv_heads_ = 0;  // this rank's

  DeviceArena weights_;
  DeviceArena scratch_;  // the forward pass's buffers (declared before ops_, which carves them)
  DeviceArena kv_;
  std::vector<ops::KvLayer> kv_layers_;  // views of kv_, one per layer (configure())
  std::unique_ptr<CudaOps> ops_;
  std::unique_ptr<ForwardPass> forward_;
  DeviceArena sampling_;  // the sampler's inputs, outputs and workspace (re-made only when a larger call arrives)
  bool device_sampling_ = true;
  // CUDA graphs of the decode step, one per batch size (TP = 1).
  struct GraphKey {
    const void* scratch = nullptr;
    size_t scratch_bytes = 0;
    const void* kv = nullptr;
    int64_t n_slots = 0, max_ctx = 0;
    bool operator==(const GraphKey& o) const {
      return scratch == o.scratch && scratch_bytes == o.scratch_bytes && kv == o.kv && n_slots == o.n_slots &&
             max_ctx == o.max_ctx;
    }
  };
  struct DecodeGraph {  // per batch size: the key it last ran with; exec once captured (its second call)
    GraphKey key;
    cudaGraphExec_t exec = nullptr;
  };
  bool cuda_graphs_ = false;
  std::unordered_map<int64_t, DecodeGraph> decode_graphs_;
  uint64_t graph_replays_ = 0;
  int64_t n_slots_ = 0, max_ctx_ = 0;
  size_t kv_bytes_ = 0;
  double kv_memory_fraction_ = 0.9;
};

// The ModelRunner the engine drives, for `--backend cuda`.
std::unique_ptr<ModelRunner> make_cuda_runner(model::ModelWeights weights, gpu::DType dtype,
                                              parallel::Communicator* tp = nullptr);

}  // namespace tessera::worker
