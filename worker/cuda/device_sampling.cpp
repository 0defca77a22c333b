// worker/cuda/device_sampling.cpp — the CUDA runner samples next to its logits: gpu::sample_tokens over the
// gathered logits, one SampleOut per row back to the host (see cuda_runner.h).
#include "worker/cuda/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;

// rows_normed → logits on the device (under TP: gathered to rank 0 and laid out as [B, vocab] there) →
// gpu::sample_tokens → one SampleOut per row back to the host. The [B, vocab] logits never leave the device.
void CudaRunner::sample(const ForwardStep& s, const SampleJob& job) { runner_check(sample_rows(s, job), "sampling"); }

Status CudaRunner::sample_rows(const ForwardStep& s, const SampleJob& job) {
  const int64_t B = s.B;
  const int64_t V = config_.vocab;
  const int size = tp_->size();
  const bool root = tp_->rank() == 0;
  TESSERA_CHECK(static_cast<int64_t>(job.rows.size()) == B);
  forward_->gather_logits();
  job.results->clear();
  if (!root) {
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::success();
  }
  // The inputs, staged on the host in the device layout: params [B], offsets [B + 1], then the edits (CSR): per
  // row the tokens whose logit the sampler changes (gpu::SampleEdit: logit_bias, generated counts when a
  // penalty is on, prompt tokens when the repetition penalty is, stop ids when min_tokens is), one entry per token.
  std::vector<gpu::SampleParams> params(static_cast<size_t>(B));
  std::vector<int32_t> offsets{0};
  std::vector<gpu::SampleEdit> edits;
  std::map<int32_t, gpu::SampleEdit> row_edits;  // token → edit, ascending (a deterministic layout)
  for (int64_t b = 0; b < B; ++b) {
    const SampleRequest& r = job.rows[static_cast<size_t>(b)];
    const SamplingParams& p = *r.params;
    params[static_cast<size_t>(b)] = gpu::SampleParams{p, r.step};
    row_edits.clear();
    auto at = [&](int32_t t) -> gpu::SampleEdit& {
      return row_edits.try_emplace(t, gpu::SampleEdit{t, 0, 0.0f, 0u}).first->second;
    };
    const bool repetition = p.repetition_penalty != 1.0f;
    if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f || repetition) {
      for (const auto& [t, n] : *r.counts)
        if (n > 0) at(t).count = n;
    }
    if (r.lists != nullptr) {
      for (const LogitBias& e : r.lists->logit_bias) at(e.token).bias = e.bias;
      if (repetition)
        for (int32_t t : r.lists->prompt_tokens) at(t).flags |= gpu::kSampleInPrompt;
      if (r.step < static_cast<uint64_t>(p.min_tokens))
        for (int32_t t : r.lists->stop_ids) at(t).flags |= gpu::kSampleStopId;
    }
    for (const auto& [t, e] : row_edits) edits.push_back(e);
    offsets.push_back(static_cast<int32_t>(edits.size()));
  }
  const bool edited = !edits.empty();
  const size_t params_bytes = params.size() * sizeof(gpu::SampleParams);
  const size_t offsets_bytes = offsets.size() * sizeof(int32_t);
  const size_t edits_bytes = edits.size() * sizeof(gpu::SampleEdit);
  const size_t ws_bytes = edited ? gpu::sample_workspace_bytes(B, V) : 0;
  const size_t sizes[] = {size > 1 ? static_cast<size_t>(B * V) * sizeof(float) : 0,  // logits [B, V] (TP > 1)
                          params_bytes + offsets_bytes + edits_bytes,                 // params | offsets | edits
                          static_cast<size_t>(B) * sizeof(gpu::SampleOut),            // out
                          ws_bytes};                                                  // edit bitmaps
  size_t total = 0;
  for (size_t b : sizes) total += DeviceArena::round_up(std::max<size_t>(b, 1));
  if (total > sampling_.capacity()) {
    TESSERA_CUDA_TRY(cudaStreamSynchronize(stream_));
    TESSERA_STATUS_TRY(sampling_.reserve(total + total / 4));
  }
  sampling_.reset();
  void* p[std::size(sizes)];
  for (size_t i = 0; i < std::size(sizes); ++i) p[i] = sampling_.take(std::max<size_t>(sizes[i], 1));
  const auto* logits_dev = static_cast<const float*>(s.logits_local.data);  // TP = 1: [B, block = vocab]
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
  // params (8-byte aligned) | offsets | edits: the sizes of SampleParams and int32 keep each part 4-byte aligned.
  static_assert(sizeof(gpu::SampleParams) % alignof(gpu::SampleEdit) == 0 && alignof(gpu::SampleEdit) == 4);
  std::vector<unsigned char> staged(params_bytes + offsets_bytes + edits_bytes);
  std::memcpy(staged.data(), params.data(), params_bytes);
  std::memcpy(staged.data() + params_bytes, offsets.data(), offsets_bytes);
  if (edited) std::memcpy(staged.data() + params_bytes + offsets_bytes, edits.data(), edits_bytes);
  TESSERA_CUDA_TRY(cudaMemcpyAsync(p[1], staged.data(), staged.size(), cudaMemcpyHostToDevice, stream_));
  const auto* params_dev = static_cast<const gpu::SampleParams*>(p[1]);
  const auto* offsets_dev = reinterpret_cast<const int32_t*>(static_cast<const char*>(p[1]) + params_bytes);
  const auto* edits_dev =
      reinterpret_cast<const gpu::SampleEdit*>(static_cast<const char*>(p[1]) + params_bytes + offsets_bytes);
  auto* out_dev = static_cast<gpu::SampleOut*>(p[2]);
  TESSERA_STATUS_TRY(gpu::sample_tokens(logits_dev, B, V, params_dev, edited ? offsets_dev : nullptr,
                                        edited ? edits_dev : nullptr, edited ? p[3] : nullptr, ws_bytes, out_dev,
                                        stream_));
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

}  // namespace tessera::worker
