// worker/cuda/decode_graphs.cpp — the CUDA runner's decode steps as CUDA graphs, one per batch size (see
// cuda_runner.h, set_cuda_graphs).
#include "worker/cuda/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/check.h"

namespace tessera::worker {

using gpu::DType;
using gpu::Status;

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
Status CudaRunner::replay_decode_graph(int64_t B, const std::function<void()>& forward) {
  const GraphKey key{scratch_.base(), scratch_.capacity(), kv_.base(), n_slots_, max_ctx_};
  DecodeGraph& g = decode_graphs_[B];
  if (!(g.key == key)) {  // first call with these addresses (or stale ones): drop the old graph, run eagerly
    if (g.exec != nullptr) TESSERA_CUDA_TRY(cudaGraphExecDestroy(g.exec));
    g = DecodeGraph{key, nullptr};
    forward();
    return Status::success();
  }
  if (g.exec == nullptr) {  // second call: capture
    cudaGraph_t graph = nullptr;
    TESSERA_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
      forward();
    } catch (...) {  // end the capture before the error leaves: the stream must not stay in capture mode
      if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr) cudaGraphDestroy(graph);
      (void)cudaGetLastError();  // the capture's error is reported by the exception, not by the next launch check
      throw;
    }
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (end != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
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

}  // namespace tessera::worker
