// worker/cuda/cuda_runner.cpp — see cuda_runner.h. The layer loop mirrors worker/model/transformer.cpp line for
// line; where it differs (bias placement under TP, the final norm fused into the last residual add, logits in
// fp32 straight from cuBLAS) the comment says why the result is the same.
#include "worker/cuda/cuda_runner.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;
using model::Arch;

namespace {

void throw_if(const Status& s, const char* what) {
  if (!s.ok()) throw Error(std::string("cuda runner: ") + what + ": " + s.message);
}

parallel::ElemType elem_type(DType t) {
  switch (t) {
    case DType::F32:
      return parallel::ElemType::kF32;
    case DType::F16:
      return parallel::ElemType::kF16;
    case DType::BF16:
      return parallel::ElemType::kBF16;
  }
  return parallel::ElemType::kF32;
}

cudaDataType_t cuda_type(DType t) { return t == DType::F32 ? CUDA_R_32F : t == DType::F16 ? CUDA_R_16F : CUDA_R_16BF; }

char* at(const void* base, int64_t elems, size_t esize) {
  return static_cast<char*>(const_cast<void*>(base)) + static_cast<size_t>(elems) * esize;
}

constexpr int64_t kStagingFloats = int64_t{16} << 20;  // fp32 staging of the weight upload: 64 MiB

}  // namespace

// --- DeviceArena -----------------------------------------------------------------------------------------------
DeviceArena::~DeviceArena() {
  if (base_ != nullptr) {
    const cudaError_t err = cudaFree(base_);
    if (err != cudaSuccess)
      std::fprintf(stderr, "%s\n", gpu::cuda_error_text(err, "cudaFree(base_)", __FILE__, __LINE__).c_str());
  }
}

Status DeviceArena::reserve(size_t bytes) {
  if (base_ != nullptr) {
    TESSERA_CUDA_TRY(cudaFree(base_));
    base_ = nullptr;
    capacity_ = used_ = 0;
  }
  if (bytes == 0) return Status::success();
  void* p = nullptr;
  TESSERA_CUDA_TRY(cudaMalloc(&p, bytes));
  base_ = static_cast<char*>(p);
  capacity_ = bytes;
  used_ = 0;
  return Status::success();
}

void* DeviceArena::take(size_t bytes) {
  bytes = round_up(bytes);
  TESSERA_CHECK_MSG(used_ + bytes <= capacity_, "device arena sized too small: " + std::to_string(used_ + bytes) +
                                                    " > " + std::to_string(capacity_) + " bytes");
  void* p = base_ + used_;
  used_ += bytes;
  return p;
}

// --- sizing ----------------------------------------------------------------------------------------------------
size_t kv_bytes_per_slot(const model::ModelConfig& c, int64_t n_kv_heads_local, int64_t max_ctx, DType dtype) {
  return 2 * static_cast<size_t>(c.n_layers) * static_cast<size_t>(n_kv_heads_local * max_ctx * c.head_dim) *
         gpu::dtype_size(dtype);
}

int64_t kv_slots_fitting(size_t free_bytes, double fraction, size_t bytes_per_slot) {
  if (bytes_per_slot == 0 || fraction <= 0.0) return 0;
  const double budget = static_cast<double>(free_bytes) * std::min(fraction, 1.0);
  // 256 bytes of alignment per layer tensor at most: keep one slot's worth of slack.
  return std::max<int64_t>(0, static_cast<int64_t>(budget / static_cast<double>(bytes_per_slot)) - 1);
}

// --- construction ----------------------------------------------------------------------------------------------
struct CudaRunner::Scratch {
  float* x = nullptr;  // the residual stream, fp32 whatever the storage dtype (as vLLM / TensorRT-LLM keep it)
  void *h = nullptr, *qkv = nullptr, *attn = nullptr, *proj = nullptr, *ffn = nullptr, *ffn_act = nullptr,
       *rows = nullptr;  // storage dtype
  float *logits_local = nullptr, *logits_all = nullptr;
  int32_t* ints = nullptr;  // the call's index arrays, one host-to-device copy
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int64_t block = 0;  // logits columns per rank (the largest vocabulary shard)
};

CudaRunner::CudaRunner(model::ModelWeights weights, DType dtype, parallel::Communicator* tp, cudaStream_t stream)
    : config_(weights.config), shard_(weights.shard), dtype_(dtype), esize_(gpu::dtype_size(dtype)), tp_(tp) {
  if (tp_ == nullptr) {
    own_tp_ = parallel::make_single_communicator();
    tp_ = own_tp_.get();
  }
  TESSERA_CHECK(tp_->size() == shard_.tp_size && tp_->rank() == shard_.tp_rank);
  n_heads_ = shard_.q_heads.size();
  n_kv_heads_ = shard_.kv_heads.size();
  n_ffn_ = shard_.ffn.size();
  vocab_local_ = shard_.vocab.size();
  qkv_cols_ = (n_heads_ + 2 * n_kv_heads_) * config_.head_dim;
  if (stream == nullptr) {
    throw_if(
        [&]() -> Status {
          TESSERA_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
          return Status::success();
        }(),
        "stream");
    own_stream_ = true;
  } else {
    stream_ = stream;
  }
  throw_if(
      [&]() -> Status {
        cublasHandle_t h = nullptr;
        TESSERA_CUBLAS_TRY(cublasCreate(&h));
        cublas_ = h;
        TESSERA_CUBLAS_TRY(cublasSetStream(h, stream_));
        return Status::success();
      }(),
      "cuBLAS");
  n_sms_ = gpu::device_sm_count();
  throw_if(upload(weights), "weight upload");
}

CudaRunner::~CudaRunner() {
  // Errors here can only be reported: a destructor has no caller to return them to.
  const cudaError_t err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess)
    std::fprintf(stderr, "%s\n", gpu::cuda_error_text(err, "cudaStreamSynchronize", __FILE__, __LINE__).c_str());
  drop_decode_graphs();
  if (cublas_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  if (own_stream_) cudaStreamDestroy(stream_);
}

// --- CUDA graphs of the decode step ------------------------------------------------------------------------------
void CudaRunner::set_cuda_graphs(bool on) {
  cuda_graphs_ = on;
  if (!on) drop_decode_graphs();
}

void CudaRunner::drop_decode_graphs() {
  for (auto& [b, g] : decode_graphs_) {
    if (g.exec == nullptr) continue;
    const cudaError_t err = cudaGraphExecDestroy(g.exec);
    if (err != cudaSuccess)
      std::fprintf(stderr, "%s\n", gpu::cuda_error_text(err, "cudaGraphExecDestroy", __FILE__, __LINE__).c_str());
  }
  decode_graphs_.clear();
}

// A graph holds the addresses it was captured with: the scratch and KV arenas' bases (re-made by a larger group
// or configure()), the cache geometry (k_cache() / v_cache() offsets) and the batch size (the carving of the
// scratch arena and the attention plan). A graph whose key no longer matches is captured again.
// The first call of a key runs eagerly: it initializes what the kernels and cuBLAS set up on first use (handles,
// work space) outside any capture. The capture is in relaxed mode, so that a first-use allocation inside cuBLAS
// cannot invalidate it; nothing in `forward` synchronizes or reads back (the caller uploads the step's inputs
// before and reads the logits after).
Status CudaRunner::replay_decode_graph(int64_t B, const std::function<Status()>& forward) {
  const GraphKey key{scratch_.base(), scratch_.capacity(), kv_.base(), n_slots_, max_ctx_};
  DecodeGraph& g = decode_graphs_[B];
  if (!(g.key == key)) {  // first call with these addresses (or stale ones): drop the old graph, run eagerly
    if (g.exec != nullptr) TESSERA_CUDA_TRY(cudaGraphExecDestroy(g.exec));
    g = DecodeGraph{key, nullptr};
    return forward();
  }
  if (g.exec == nullptr) {  // second call: capture
    cudaGraph_t graph = nullptr;
    TESSERA_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    const Status captured = forward();
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!captured.ok() || end != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      (void)cudaGetLastError();  // the capture's error is reported here, not left for the next launch check
      if (!captured.ok()) return captured;
      TESSERA_CUDA_TRY(end);
    }
    const cudaError_t inst = cudaGraphInstantiate(&g.exec, graph, 0);
    TESSERA_CUDA_TRY(cudaGraphDestroy(graph));
    TESSERA_CUDA_TRY(inst);
  }
  TESSERA_CUDA_TRY(cudaGraphLaunch(g.exec, stream_));
  ++graph_replays_;
  return Status::success();
}

Status CudaRunner::upload(const model::ModelWeights& w) {
  const bool split_vocab = tp_->size() > 1;
  // Under TP the embedding gets one zero row past the shard: tokens owned elsewhere look it up (then the
  // all-reduce sums exactly one non-zero row per token, as the CPU's masked lookup does).
  const size_t wte_extra = split_vocab ? static_cast<size_t>(config_.hidden) : 0;
  size_t total = 0, largest = 0;
  auto count = [&](const std::vector<float>& v, size_t extra = 0) {
    if (!v.empty()) total += DeviceArena::round_up((v.size() + extra) * esize_);
    largest = std::max(largest, v.size());
  };
  count(w.wte, wte_extra);
  count(w.wpe);
  count(w.final_norm_w);
  count(w.final_norm_b);
  count(w.lm_head);
  for (const auto& L : w.layers) {
    for (const auto* v : {&L.attn_norm_w, &L.attn_norm_b, &L.wqkv, &L.bqkv, &L.wo, &L.bo, &L.ffn_norm_w, &L.ffn_norm_b,
                          &L.w_up, &L.b_up, &L.w_down, &L.b_down})
      count(*v);
  }
  TESSERA_STATUS_TRY(weights_.reserve(total));

  float* staging = nullptr;
  if (dtype_ != DType::F32) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(largest), kStagingFloats));
    TESSERA_CUDA_TRY(cudaMalloc(&staging, std::max<size_t>(n, 1) * sizeof(float)));
  }
  Status st;
  auto put = [&](const std::vector<float>& v, size_t extra = 0) -> const void* {
    if (v.empty() || !st.ok()) return nullptr;
    void* dst = weights_.take((v.size() + extra) * esize_);
    st = [&]() -> Status {
      if (dtype_ == DType::F32) {
        TESSERA_CUDA_TRY(cudaMemcpyAsync(dst, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
      } else {
        // Chunks through the staging buffer; stream order keeps a chunk's copy behind the previous conversion.
        for (size_t i = 0; i < v.size(); i += static_cast<size_t>(kStagingFloats)) {
          const size_t n = std::min(v.size() - i, static_cast<size_t>(kStagingFloats));
          TESSERA_CUDA_TRY(cudaMemcpyAsync(staging, v.data() + i, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
          TESSERA_STATUS_TRY(gpu::convert_from_f32(staging, at(dst, static_cast<int64_t>(i), esize_),
                                                   static_cast<int64_t>(n), dtype_, stream_));
        }
      }
      if (extra > 0)
        TESSERA_CUDA_TRY(cudaMemsetAsync(at(dst, static_cast<int64_t>(v.size()), esize_), 0, extra * esize_, stream_));
      return Status::success();
    }();
    return dst;
  };
  wte_ = put(w.wte, wte_extra);
  wpe_ = put(w.wpe);
  final_norm_w_ = put(w.final_norm_w);
  final_norm_b_ = put(w.final_norm_b);
  out_matrix_ = w.lm_head.empty() ? wte_ : put(w.lm_head);
  layers_.clear();
  for (const auto& L : w.layers) {
    LayerPtrs p;
    p.attn_norm_w = put(L.attn_norm_w);
    p.attn_norm_b = put(L.attn_norm_b);
    p.wqkv = put(L.wqkv);
    p.bqkv = put(L.bqkv);
    p.wo = put(L.wo);
    p.bo = put(L.bo);
    p.ffn_norm_w = put(L.ffn_norm_w);
    p.ffn_norm_b = put(L.ffn_norm_b);
    p.w_up = put(L.w_up);
    p.b_up = put(L.b_up);
    p.w_down = put(L.w_down);
    p.b_down = put(L.b_down);
    layers_.push_back(p);
  }
  // The staging buffer and the pageable sources must outlive the copies.
  const cudaError_t sync = cudaStreamSynchronize(stream_);
  if (staging != nullptr) TESSERA_CUDA_TRY(cudaFree(staging));
  TESSERA_CUDA_TRY(sync);
  return st;
}

void CudaRunner::set_kv_memory_fraction(double fraction) {
  if (!(fraction > 0.0 && fraction <= 1.0))
    throw Error("backend.kv_memory_fraction must be in (0, 1], got " + std::to_string(fraction));
  kv_memory_fraction_ = fraction;
}

int64_t CudaRunner::agree_on_slots(int64_t n) {
  if (tp_ == nullptr || tp_->size() < 2) return n;
  // The device communicator works on device buffers: gather every rank's count through one small allocation.
  const int size = tp_->size();
  std::vector<int32_t> all(static_cast<size_t>(size));
  const auto mine = static_cast<int32_t>(std::min<int64_t>(n, INT32_MAX));
  int32_t* d = nullptr;
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMalloc(&d, sizeof(int32_t) * static_cast<size_t>(size + 1)));
        TESSERA_CUDA_TRY(cudaMemcpyAsync(d, &mine, sizeof mine, cudaMemcpyHostToDevice, stream_));
        return Status::success();
      }(),
      "KV slot agreement");
  tp_->all_gather(d, d + 1, 1, parallel::ElemType::kI32);
  const size_t all_bytes = sizeof(int32_t) * all.size();
  const cudaError_t copy = cudaMemcpyAsync(all.data(), d + 1, all_bytes, cudaMemcpyDeviceToHost, stream_);
  const cudaError_t sync = cudaStreamSynchronize(stream_);
  const cudaError_t freed = cudaFree(d);
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(copy);
        TESSERA_CUDA_TRY(sync);
        TESSERA_CUDA_TRY(freed);
        return Status::success();
      }(),
      "KV slot agreement");
  return *std::min_element(all.begin(), all.end());
}

void CudaRunner::configure(int64_t n_slots, int64_t max_ctx) {
  TESSERA_CHECK(n_slots > 0 && max_ctx > 0);
  // The pool: at most kv_memory_fraction of the memory free now (the old pool counted as free), the same
  // number of slots on every TP rank (the smallest any rank can hold).
  const size_t per_slot = kv_bytes_per_slot(config_, n_kv_heads_, max_ctx, dtype_);
  const int64_t fits = max_slots_fitting(kv_memory_fraction_, max_ctx);
  const int64_t agreed = agree_on_slots(std::min(n_slots, fits));
  if (agreed < 1) {
    char msg[320];
    std::snprintf(msg, sizeof msg,
                  "KV cache: one slot of %lld tokens needs %.1f MB on this rank, more than backend.kv_memory_fraction "
                  "%.2f of the free device memory allows (%lld slots fit here): lower scheduler.max_ctx or raise "
                  "backend.kv_memory_fraction",
                  static_cast<long long>(max_ctx), static_cast<double>(per_slot) / 1e6, kv_memory_fraction_,
                  static_cast<long long>(fits));
    throw Error(msg);
  }
  n_slots = agreed;
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
        n_slots_ = max_ctx_ = 0;
        kv_bytes_ = 0;
        const size_t per_layer = DeviceArena::round_up(static_cast<size_t>(n_slots * n_kv_heads_ * max_ctx) *
                                                       static_cast<size_t>(config_.head_dim) * esize_);
        const size_t bytes = 2 * static_cast<size_t>(config_.n_layers) * per_layer;
        TESSERA_STATUS_TRY(kv_.reserve(bytes));  // frees the old pool first
        TESSERA_CUDA_TRY(cudaMemsetAsync(kv_.take(bytes), 0, bytes, stream_));
        n_slots_ = n_slots;
        max_ctx_ = max_ctx;
        kv_bytes_ = bytes;
        return Status::success();
      }(),
      "configure (KV cache)");
}

int64_t CudaRunner::max_slots_fitting(double fraction, int64_t max_ctx) const {
  size_t free_b = 0, total_b = 0;
  throw_if(
      [&]() -> Status {
        TESSERA_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
        return Status::success();
      }(),
      "free memory");
  return kv_slots_fitting(free_b + kv_bytes_, fraction, kv_bytes_per_slot(config_, n_kv_heads_, max_ctx, dtype_));
}

void* CudaRunner::k_cache(int64_t l) const {  // [n_slots, n_kv_heads, max_ctx, head_dim] of layer l
  const size_t per_layer = kv_bytes_ / (2 * static_cast<size_t>(config_.n_layers));
  return kv_.base() + 2 * static_cast<size_t>(l) * per_layer;
}

void* CudaRunner::v_cache(int64_t l) const {
  const size_t per_layer = kv_bytes_ / (2 * static_cast<size_t>(config_.n_layers));
  return kv_.base() + (2 * static_cast<size_t>(l) + 1) * per_layer;
}

// --- scratch ---------------------------------------------------------------------------------------------------
Status CudaRunner::ensure_scratch(int64_t n, int64_t n_out, size_t workspace_bytes, Scratch& s) {
  const auto& c = config_;
  const bool llama = c.arch == Arch::kLlama;
  const int64_t q_cols = n_heads_ * c.head_dim;
  s.block = tp_->size() > 1 ? (c.vocab + tp_->size() - 1) / tp_->size() : c.vocab;
  const size_t e = esize_;
  using R = DeviceArena;
  const size_t sizes[] = {static_cast<size_t>(n * c.hidden) * sizeof(float),                   // x (fp32)
                          static_cast<size_t>(n * c.hidden) * e,                               // h
                          static_cast<size_t>(n * qkv_cols_) * e,                              // qkv
                          static_cast<size_t>(n * q_cols) * e,                                 // attn
                          static_cast<size_t>(n * c.hidden) * e,                               // proj
                          static_cast<size_t>(n * (llama ? 2 : 1) * n_ffn_) * e,               // ffn (gate|up)
                          static_cast<size_t>(n * n_ffn_) * e,                                 // ffn_act
                          static_cast<size_t>(n_out * c.hidden) * e,                           // rows
                          static_cast<size_t>(n_out * s.block) * sizeof(float),                // logits_local
                          static_cast<size_t>(tp_->size() * n_out * s.block) * sizeof(float),  // logits_all
                          static_cast<size_t>(3 * n + 4 * n_out) * sizeof(int32_t),            // ints
                          workspace_bytes};
  size_t total = 0;
  for (size_t b : sizes) total += R::round_up(std::max<size_t>(b, 1));
  if (total > scratch_.capacity()) {
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    TESSERA_STATUS_TRY(scratch_.reserve(total + total / 4));  // some headroom: fewer re-makes as groups grow
  }
  scratch_.reset();
  void* p[std::size(sizes)];
  for (size_t i = 0; i < std::size(sizes); ++i) p[i] = scratch_.take(std::max<size_t>(sizes[i], 1));
  s.x = static_cast<float*>(p[0]);
  s.h = p[1];
  s.qkv = p[2];
  s.attn = p[3];
  s.proj = p[4];
  s.ffn = p[5];
  s.ffn_act = p[6];
  s.rows = p[7];
  s.logits_local = static_cast<float*>(p[8]);
  s.logits_all = static_cast<float*>(p[9]);
  s.ints = static_cast<int32_t*>(p[10]);
  s.workspace = workspace_bytes > 0 ? p[11] : nullptr;
  s.workspace_bytes = workspace_bytes;
  return Status::success();
}

std::vector<int32_t> CudaRunner::local_ids(const int32_t* tokens, int64_t n) const {
  std::vector<int32_t> ids(tokens, tokens + n);
  if (tp_->size() == 1) return ids;
  const auto [v0, v1] = shard_.vocab;
  for (auto& t : ids) t = (t >= v0 && t < v1) ? static_cast<int32_t>(t - v0) : static_cast<int32_t>(vocab_local_);
  return ids;
}

Status CudaRunner::all_reduce(void* buf, int64_t count, bool f32) {
  // throws CommError on failure
  if (tp_->size() > 1) tp_->all_reduce_sum(buf, count, f32 ? parallel::ElemType::kF32 : elem_type(dtype_));
  return Status::success();
}

// x (fp32) = wte[ids] (+ wpe[pos]), the sum in fp32 as on the CPU. ids are already local (the zero row for
// tokens another rank owns); under TP only rank 0 adds the positions, so that the (fp32) all-reduce adds them once.
Status CudaRunner::embed(const Scratch& s, int64_t n) {
  const int32_t* ids = s.ints;
  const int32_t* pos = s.ints + n;
  const void* wpe = tp_->rank() == 0 ? wpe_ : nullptr;
  TESSERA_STATUS_TRY(gpu::embedding_f32(ids, pos, wte_, wpe, s.x, n, config_.hidden, dtype_, stream_));
  return all_reduce(s.x, n * config_.hidden, /*f32=*/true);
}

template <typename Attend>
Status CudaRunner::run_layers(const Scratch& s, int64_t n, Attend&& attend) {
  const auto& c = config_;
  const bool llama = c.arch == Arch::kLlama;
  const int64_t q_cols = n_heads_ * c.head_dim, kv_cols = n_kv_heads_ * c.head_dim;
  const int32_t* pos = s.ints + n;
  const int32_t* kv_slots = s.ints + 2 * n;
  const bool rank0 = tp_->rank() == 0;
  // The residual stream x is fp32; proj, the weights and h are in the storage dtype (with F32 storage the
  // *_mixed ops are the plain ones, bit for bit).
  auto norm = [&](const void* g, const void* b) {  // h = norm(x)
    return llama ? gpu::rms_norm_mixed(s.x, g, s.h, n, c.hidden, c.norm_eps, dtype_, stream_)
                 : gpu::layer_norm_mixed(s.x, g, b, s.h, n, c.hidden, c.norm_eps, dtype_, stream_);
  };
  auto add_norm = [&](const void* g, const void* b) {  // x += proj (fp32); h = norm(x)
    return llama ? gpu::add_rms_norm_mixed(s.x, s.proj, g, s.h, n, c.hidden, c.norm_eps, dtype_, stream_)
                 : gpu::add_layer_norm_mixed(s.x, s.proj, g, b, s.h, n, c.hidden, c.norm_eps, dtype_, stream_);
  };
  TESSERA_STATUS_TRY(norm(layers_[0].attn_norm_w, layers_[0].attn_norm_b));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto& L = layers_[static_cast<size_t>(l)];
    // [n, hidden] → qkv [n, (n_heads + 2 n_kv_heads) · head_dim]
    TESSERA_STATUS_TRY(gpu::linear(s.h, L.wqkv, L.bqkv, s.qkv, n, qkv_cols_, c.hidden, dtype_, stream_));
    if (llama) {
      TESSERA_STATUS_TRY(gpu::rope(s.qkv, pos, n, n_heads_, c.head_dim, qkv_cols_, c.rope_theta, dtype_, stream_));
      TESSERA_STATUS_TRY(gpu::rope(at(s.qkv, q_cols, esize_), pos, n, n_kv_heads_, c.head_dim, qkv_cols_, c.rope_theta,
                                   dtype_, stream_));
    }
    TESSERA_STATUS_TRY(gpu::kv_write(at(s.qkv, q_cols, esize_), at(s.qkv, q_cols + kv_cols, esize_), qkv_cols_,
                                     kv_slots, pos, n, k_cache(l), v_cache(l), n_kv_heads_, max_ctx_, c.head_dim,
                                     dtype_, stream_));
    TESSERA_STATUS_TRY(attend(l));  // attn [n, n_heads_ · head_dim]
    // A partial sum over this rank's heads. The CPU adds the replicated bias after the all-reduce; here rank 0
    // adds it before (the same sum; at TP = 1 the same operations in the same order).
    TESSERA_STATUS_TRY(gpu::linear(s.attn, L.wo, rank0 ? L.bo : nullptr, s.proj, n, c.hidden, q_cols, dtype_, stream_));
    TESSERA_STATUS_TRY(all_reduce(s.proj, n * c.hidden));
    TESSERA_STATUS_TRY(add_norm(L.ffn_norm_w, L.ffn_norm_b));
    if (llama) {
      TESSERA_STATUS_TRY(gpu::linear(s.h, L.w_up, nullptr, s.ffn, n, 2 * n_ffn_, c.hidden, dtype_, stream_));
      TESSERA_STATUS_TRY(gpu::silu_mul(s.ffn, s.ffn_act, n, n_ffn_, dtype_, stream_));
    } else {
      TESSERA_STATUS_TRY(gpu::linear(s.h, L.w_up, nullptr, s.ffn_act, n, n_ffn_, c.hidden, dtype_, stream_));
      TESSERA_STATUS_TRY(gpu::add_bias_gelu(s.ffn_act, L.b_up, n, n_ffn_, dtype_, stream_));
    }
    TESSERA_STATUS_TRY(
        gpu::linear(s.ffn_act, L.w_down, rank0 ? L.b_down : nullptr, s.proj, n, c.hidden, n_ffn_, dtype_, stream_));
    TESSERA_STATUS_TRY(all_reduce(s.proj, n * c.hidden));
    if (l + 1 < c.n_layers) {
      const auto& next = layers_[static_cast<size_t>(l + 1)];
      TESSERA_STATUS_TRY(add_norm(next.attn_norm_w, next.attn_norm_b));
    } else {
      // The CPU adds the last residual, then normalizes the rows it needs with the final norm: the same values
      // as the fused add + final norm over every row, which leaves the normalized rows in h.
      TESSERA_STATUS_TRY(add_norm(final_norm_w_, final_norm_b_));
    }
  }
  return Status::success();
}

// rows_normed: [B, hidden] final-normed rows → this rank's logits_local [B, block] (fp32 out of cuBLAS, never
// rounded to the storage dtype; columns past the shard are zero under TP).
Status CudaRunner::lm_head(const Scratch& s, const void* rows_normed, int64_t B) {
  const auto& c = config_;
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t t = cuda_type(dtype_);
  if (tp_->size() > 1) TESSERA_CUDA_TRY(cudaMemsetAsync(s.logits_local, 0, B * s.block * sizeof(float), stream_));
  // Column-major: logitsᵀ[vocab_local, B] (leading dimension block) = out_matrix[vocab_local, hidden] · rowsᵀ.
  TESSERA_CUBLAS_TRY(cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N,
                                  static_cast<int>(vocab_local_), static_cast<int>(B), static_cast<int>(c.hidden),
                                  &alpha, out_matrix_, t, static_cast<int>(c.hidden), rows_normed, t,
                                  static_cast<int>(c.hidden), &beta, s.logits_local, CUDA_R_32F,
                                  static_cast<int>(s.block), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return Status::success();
}

// After lm_head(): s.logits_local ([B, block] on each rank) → host logits [B, vocab]. Under TP each rank's block
// is gathered to rank 0.
Status CudaRunner::logits(const Scratch& s, int64_t B, std::vector<float>& out) {
  const auto& c = config_;
  const int size = tp_->size();
  const bool root = tp_->rank() == 0;
  if (size == 1) {
    out.resize(static_cast<size_t>(B * c.vocab));
    TESSERA_CUDA_TRY(
        cudaMemcpyAsync(out.data(), s.logits_local, out.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::success();
  }
  tp_->gather(s.logits_local, root ? s.logits_all : nullptr, B * s.block, parallel::ElemType::kF32, 0);
  if (!root) {
    out.clear();
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::success();
  }
  std::vector<float> all(static_cast<size_t>(size * B * s.block));
  TESSERA_CUDA_TRY(
      cudaMemcpyAsync(all.data(), s.logits_all, all.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
  out.assign(static_cast<size_t>(B * c.vocab), 0.0f);
  for (int r = 0; r < size; ++r) {
    const int64_t v0 = std::min<int64_t>(r * s.block, c.vocab), v1 = std::min<int64_t>((r + 1) * s.block, c.vocab);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(out.data() + b * c.vocab + v0, all.data() + (r * B + b) * s.block, sizeof(float) * (v1 - v0));
  }
  return Status::success();
}

// --- prefill / decode ------------------------------------------------------------------------------------------
Status CudaRunner::run_prefill(const PrefillGroup& g, std::vector<float>& out, const SampleJob* job) {
  const auto& c = config_;
  const int64_t B = g.n_rows(), L = g.n_cols, n = B * L;
  TESSERA_CHECK_MSG(n_slots_ > 0, "CudaRunner::configure() was not called");
  TESSERA_CHECK(static_cast<int64_t>(g.tokens.size()) == n && static_cast<int64_t>(g.slots.size()) == B);
  TESSERA_CHECK(L <= max_ctx_ && L <= c.max_ctx);
  Scratch s;
  TESSERA_STATUS_TRY(ensure_scratch(n, B, 0, s));
  // ints: ids [n], positions [n], kv slots [n] (-1 on pad columns), pad [B]
  std::vector<int32_t> ints = local_ids(g.tokens.data(), n);
  ints.resize(static_cast<size_t>(3 * n + B));
  for (int64_t b = 0; b < B; ++b) {
    const int32_t pad = g.pad[static_cast<size_t>(b)];
    TESSERA_CHECK(g.slots[static_cast<size_t>(b)] >= 0 && g.slots[static_cast<size_t>(b)] < n_slots_);
    for (int64_t col = 0; col < L; ++col) {
      const bool is_pad = col < pad;
      ints[static_cast<size_t>(n + b * L + col)] = is_pad ? 0 : static_cast<int32_t>(col - pad);
      ints[static_cast<size_t>(2 * n + b * L + col)] = is_pad ? -1 : g.slots[static_cast<size_t>(b)];
    }
    ints[static_cast<size_t>(3 * n + b)] = pad;
  }
  TESSERA_CUDA_TRY(
      cudaMemcpyAsync(s.ints, ints.data(), ints.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  TESSERA_STATUS_TRY(embed(s, n));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int64_t q_cols = n_heads_ * c.head_dim, kv_cols = n_kv_heads_ * c.head_dim;
  const int32_t* pad_dev = s.ints + 3 * n;
  TESSERA_STATUS_TRY(run_layers(s, n, [&](int64_t) {
    return gpu::attention_prefill(s.qkv, qkv_cols_, at(s.qkv, q_cols, esize_), at(s.qkv, q_cols + kv_cols, esize_),
                                  qkv_cols_, pad_dev, s.attn, B, L, n_heads_, n_kv_heads_, c.head_dim, scale, dtype_,
                                  stream_);
  }));
  // Each row's last column: rows b·L + L − 1 of h, a strided copy.
  const size_t row_bytes = static_cast<size_t>(c.hidden) * esize_;
  TESSERA_CUDA_TRY(cudaMemcpy2DAsync(s.rows, row_bytes, at(s.h, (L - 1) * c.hidden, esize_), L * row_bytes, row_bytes,
                                     static_cast<size_t>(B), cudaMemcpyDeviceToDevice, stream_));
  TESSERA_STATUS_TRY(lm_head(s, s.rows, B));
  return job != nullptr ? sample(s, B, *job) : logits(s, B, out);
}

Status CudaRunner::run_decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                              const std::vector<int32_t>& positions, std::vector<float>& out, const SampleJob* job) {
  const auto& c = config_;
  const int64_t B = static_cast<int64_t>(tokens.size());
  TESSERA_CHECK_MSG(n_slots_ > 0, "CudaRunner::configure() was not called");
  TESSERA_CHECK(static_cast<int64_t>(slots.size()) == B && static_cast<int64_t>(positions.size()) == B);
  // Any head_dim <= 256: the plan picks the split kernel (64/128/256) or the warp-per-head one (workspace 0).
  const size_t ws = gpu::plan_attention_decode(B, n_heads_, n_kv_heads_, c.head_dim, max_ctx_, n_sms_).workspace_bytes;
  Scratch s;
  TESSERA_STATUS_TRY(ensure_scratch(B, B, ws, s));
  // ints: ids [B], positions [B], slots [B], starts [B] (zeros), lens [B]
  std::vector<int32_t> ints = local_ids(tokens.data(), B);
  ints.insert(ints.end(), positions.begin(), positions.end());
  ints.insert(ints.end(), slots.begin(), slots.end());
  ints.resize(static_cast<size_t>(4 * B), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t p = positions[static_cast<size_t>(b)];
    TESSERA_CHECK(p >= 0 && p < max_ctx_ && p < c.max_ctx);
    TESSERA_CHECK(slots[static_cast<size_t>(b)] >= 0 && slots[static_cast<size_t>(b)] < n_slots_);
    ints.push_back(p + 1);
  }
  TESSERA_CUDA_TRY(
      cudaMemcpyAsync(s.ints, ints.data(), ints.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int32_t *slots_dev = s.ints + 2 * B, *starts_dev = s.ints + 3 * B, *lens_dev = s.ints + 4 * B;
  // Everything from the embedding to the logits reads its inputs from s.ints (uploaded above) and writes to
  // fixed scratch addresses: one CUDA graph per batch size can replay it.
  auto forward = [&]() -> Status {
    TESSERA_STATUS_TRY(embed(s, B));
    TESSERA_STATUS_TRY(run_layers(s, B, [&](int64_t l) {
      return gpu::attention_decode(s.qkv, qkv_cols_, k_cache(l), v_cache(l), slots_dev, starts_dev, lens_dev, s.attn, B,
                                   n_heads_, n_kv_heads_, c.head_dim, max_ctx_, scale, s.workspace, s.workspace_bytes,
                                   dtype_, stream_);
    }));
    return lm_head(s, s.h, B);  // decode rows are h's rows 0 … B−1
  };
  if (cuda_graphs_ && tp_->size() == 1) {
    TESSERA_STATUS_TRY(replay_decode_graph(B, forward));
  } else {
    TESSERA_STATUS_TRY(forward());
  }
  return job != nullptr ? sample(s, B, *job) : logits(s, B, out);
}

std::vector<float> CudaRunner::prefill(const PrefillGroup& group) {
  std::vector<float> out;
  throw_if(run_prefill(group, out), "prefill");
  return out;
}

std::vector<float> CudaRunner::decode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& slots,
                                      const std::vector<int32_t>& positions) {
  std::vector<float> out;
  throw_if(run_decode(tokens, slots, positions, out), "decode");
  return out;
}

// --- sampling on the device ----------------------------------------------------------------------------------
// rows_normed → logits on the device (under TP: gathered to rank 0 and laid out as [B, vocab] there) →
// gpu::sample_tokens → one SampleOut per row back to the host. The [B, vocab] logits never leave the device.
Status CudaRunner::sample(const Scratch& s, int64_t B, const SampleJob& job) {
  const int64_t V = config_.vocab;
  const int size = tp_->size();
  const bool root = tp_->rank() == 0;
  TESSERA_CHECK(static_cast<int64_t>(job.rows.size()) == B);
  if (size > 1) tp_->gather(s.logits_local, root ? s.logits_all : nullptr, B * s.block, parallel::ElemType::kF32, 0);
  job.results->clear();
  if (!root) {
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::success();
  }
  // The inputs, staged on the host in the device layout: params [B], then offsets [B + 1], tokens, counts (the
  // generated tokens of the rows whose penalties are non-zero, CSR).
  std::vector<gpu::SampleParams> params(static_cast<size_t>(B));
  std::vector<int32_t> offsets{0}, tokens, counts;
  for (int64_t b = 0; b < B; ++b) {
    const SampleRequest& r = job.rows[static_cast<size_t>(b)];
    const SamplingParams& p = *r.params;
    params[static_cast<size_t>(b)] = gpu::SampleParams{p, r.step};
    if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
      for (const auto& [t, n] : *r.counts) {
        if (n > 0) tokens.push_back(t), counts.push_back(n);
      }
    }
    offsets.push_back(static_cast<int32_t>(tokens.size()));
  }
  const bool penalties = !tokens.empty();
  const size_t params_bytes = params.size() * sizeof(gpu::SampleParams);
  std::vector<int32_t> ints = offsets;
  ints.insert(ints.end(), tokens.begin(), tokens.end());
  ints.insert(ints.end(), counts.begin(), counts.end());
  const size_t ws_bytes = penalties ? gpu::sample_workspace_bytes(B, V) : 0;
  const size_t sizes[] = {size > 1 ? static_cast<size_t>(B * V) * sizeof(float) : 0,  // logits [B, V] (TP > 1)
                          params_bytes + ints.size() * sizeof(int32_t),               // params | ints
                          static_cast<size_t>(B) * sizeof(gpu::SampleOut),            // out
                          ws_bytes};                                                  // penalty bitmaps
  size_t total = 0;
  for (size_t b : sizes) total += DeviceArena::round_up(std::max<size_t>(b, 1));
  if (total > sampling_.capacity()) {
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    TESSERA_STATUS_TRY(sampling_.reserve(total + total / 4));
  }
  sampling_.reset();
  void* p[std::size(sizes)];
  for (size_t i = 0; i < std::size(sizes); ++i) p[i] = sampling_.take(std::max<size_t>(sizes[i], 1));
  const float* logits_dev = s.logits_local;  // TP = 1: [B, block = vocab]
  if (size > 1) {
    float* all = static_cast<float*>(p[0]);
    for (int r = 0; r < size; ++r) {
      const int64_t v0 = std::min<int64_t>(r * s.block, V), v1 = std::min<int64_t>((r + 1) * s.block, V);
      if (v1 <= v0) continue;
      TESSERA_CUDA_TRY(cudaMemcpy2DAsync(
          all + v0, static_cast<size_t>(V) * sizeof(float), s.logits_all + static_cast<int64_t>(r) * B * s.block,
          static_cast<size_t>(s.block) * sizeof(float), static_cast<size_t>(v1 - v0) * sizeof(float),
          static_cast<size_t>(B), cudaMemcpyDeviceToDevice, stream_));
    }
    logits_dev = all;
  }
  std::vector<unsigned char> staged(params_bytes + ints.size() * sizeof(int32_t));
  std::memcpy(staged.data(), params.data(), params_bytes);
  std::memcpy(staged.data() + params_bytes, ints.data(), ints.size() * sizeof(int32_t));
  TESSERA_CUDA_TRY(cudaMemcpyAsync(p[1], staged.data(), staged.size(), cudaMemcpyHostToDevice, stream_));
  const auto* params_dev = static_cast<const gpu::SampleParams*>(p[1]);
  const auto* ints_dev = reinterpret_cast<const int32_t*>(static_cast<const char*>(p[1]) + params_bytes);
  const int32_t* offsets_dev = ints_dev;
  const int32_t* tokens_dev = ints_dev + offsets.size();
  const int32_t* counts_dev = tokens_dev + tokens.size();
  auto* out_dev = static_cast<gpu::SampleOut*>(p[2]);
  TESSERA_STATUS_TRY(gpu::sample_tokens(logits_dev, B, V, params_dev, penalties ? offsets_dev : nullptr,
                                        penalties ? tokens_dev : nullptr, penalties ? counts_dev : nullptr,
                                        penalties ? p[3] : nullptr, ws_bytes, out_dev, stream_));
  std::vector<gpu::SampleOut> out(static_cast<size_t>(B));
  TESSERA_CUDA_TRY(
      cudaMemcpyAsync(out.data(), out_dev, out.size() * sizeof(gpu::SampleOut), cudaMemcpyDeviceToHost, stream_));
  TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
  job.results->reserve(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const gpu::SampleOut& o = out[static_cast<size_t>(b)];
    if (o.error != gpu::SampleError::kNone) return Status::error(gpu::sample_error_text(o, b));
    sampler::SampleResult r;
    r.token = o.token;
    r.logprob = o.logprob;
    for (int32_t i = 0; i < o.n_top; ++i) r.top_logprobs.emplace_back(o.top_ids[i], o.top_logprobs[i]);
    job.results->push_back(std::move(r));
  }
  return Status::success();
}

std::vector<sampler::SampleResult> CudaRunner::prefill_and_sample(const PrefillGroup& group,
                                                                  std::span<const SampleRequest> rows) {
  if (!device_sampling_) return ModelRunner::prefill_and_sample(group, rows);
  std::vector<float> unused;
  std::vector<sampler::SampleResult> results;
  const SampleJob job{rows, &results};
  throw_if(run_prefill(group, unused, &job), "prefill");
  return results;
}

std::vector<sampler::SampleResult> CudaRunner::decode_and_sample(const std::vector<int32_t>& tokens,
                                                                 const std::vector<int32_t>& slots,
                                                                 const std::vector<int32_t>& positions,
                                                                 std::span<const SampleRequest> rows) {
  if (!device_sampling_) return ModelRunner::decode_and_sample(tokens, slots, positions, rows);
  std::vector<float> unused;
  std::vector<sampler::SampleResult> results;
  const SampleJob job{rows, &results};
  throw_if(run_decode(tokens, slots, positions, unused, &job), "decode");
  return results;
}

std::unique_ptr<ModelRunner> make_cuda_runner(model::ModelWeights weights, DType dtype, parallel::Communicator* tp) {
  return std::make_unique<CudaRunner>(std::move(weights), dtype, tp);
}

}  // namespace tessera::worker
