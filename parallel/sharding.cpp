// parallel/sharding.cpp — see sharding.h.
#include "parallel/sharding.h"

#include "common/check.h"

namespace tessera::parallel {
namespace {

// Empty when tp_size works, else the reason it does not.
std::string why_not(const ShardShape& s, int tp) {
  if (tp < 1) return "tensor-parallel size must be >= 1";
  if (s.n_heads % tp != 0)
    return "tensor-parallel size " + std::to_string(tp) + " does not divide the " + std::to_string(s.n_heads) +
           " attention heads";
  if (tp <= s.n_kv_heads ? s.n_kv_heads % tp != 0 : tp % s.n_kv_heads != 0)
    return "tensor-parallel size " + std::to_string(tp) + " and the " + std::to_string(s.n_kv_heads) +
           " key/value heads divide neither way";
  if (s.ffn % tp != 0)
    return "tensor-parallel size " + std::to_string(tp) + " does not divide the FFN size " + std::to_string(s.ffn);
  if (s.vocab < tp) return "tensor-parallel size " + std::to_string(tp) + " exceeds the vocabulary";
  return {};
}

}  // namespace

std::vector<int> valid_tp_sizes(const ShardShape& shape, int max_size) {
  std::vector<int> out;
  for (int tp = 1; tp <= max_size; ++tp)
    if (why_not(shape, tp).empty()) out.push_back(tp);
  return out;
}

void check_tp_size(const ShardShape& shape, int tp_size) {
  const std::string why = why_not(shape, tp_size);
  if (why.empty()) return;
  std::string sizes;
  for (int tp : valid_tp_sizes(shape)) sizes += (sizes.empty() ? "" : ", ") + std::to_string(tp);
  throw Error(why + "; sizes that work for this model: " + sizes);
}

Shard make_shard(const ShardShape& s, int tp_rank, int tp_size) {
  check_tp_size(s, tp_size);
  TESSERA_CHECK(tp_rank >= 0 && tp_rank < tp_size);
  Shard sh;
  sh.tp_rank = tp_rank;
  sh.tp_size = tp_size;
  const int64_t h = s.n_heads / tp_size;
  sh.q_heads = {tp_rank * h, (tp_rank + 1) * h};
  if (tp_size <= s.n_kv_heads) {
    const int64_t kv = s.n_kv_heads / tp_size;
    sh.kv_heads = {tp_rank * kv, (tp_rank + 1) * kv};
  } else {
    const int64_t kv = tp_rank / (tp_size / s.n_kv_heads);  // the head this rank's query heads read
    sh.kv_heads = {kv, kv + 1};
  }
  const int64_t f = s.ffn / tp_size;
  sh.ffn = {tp_rank * f, (tp_rank + 1) * f};
  const int64_t v = (s.vocab + tp_size - 1) / tp_size;
  sh.vocab = {std::min<int64_t>(tp_rank * v, s.vocab), std::min<int64_t>((tp_rank + 1) * v, s.vocab)};
  return sh;
}

}  // namespace tessera::parallel
