// worker/model_runner.cpp — the CPU runner's KV cache from its byte budget.
#include "worker/model_runner.h"

#include <string>

#include "common/check.h"

namespace tessera::worker {

KvGeometry CpuRunner::configure(const KvRequest& r) {
  if (r.max_seqs < 1 || r.max_ctx < 1 || r.block_size < 1)
    throw Error("configure: max_seqs " + std::to_string(r.max_seqs) + ", max_ctx " + std::to_string(r.max_ctx) +
                " and block_size " + std::to_string(r.block_size) + " must be >= 1");
  const size_t per_block = model_.kv_bytes_per_block(r.block_size);
  const int64_t blocks_per_seq = (r.max_ctx + r.block_size - 1) / r.block_size;
  const size_t budget =
      r.memory_bytes > 0 ? r.memory_bytes : static_cast<size_t>(r.max_seqs * blocks_per_seq) * per_block;
  const auto n_blocks = static_cast<int64_t>(budget / per_block);
  if (n_blocks < 1)
    throw Error("the KV cache budget of " + std::to_string(budget) + " bytes holds no block of " +
                std::to_string(r.block_size) + " tokens (" + std::to_string(per_block) + " bytes)");
  cache_.reset();  // free the old cache before allocating the new one
  geometry_ = {};
  cache_.emplace(model_.make_cache(n_blocks, r.block_size));
  geometry_ = {r.max_seqs, n_blocks, r.block_size};
  return geometry_;
}

}  // namespace tessera::worker
