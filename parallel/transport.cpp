// parallel/transport.cpp — a flat little-endian encoding: [magic, version, payload bytes] then fields in order.
#include "parallel/transport.h"

#include <cstring>
#include <type_traits>

#include "common/check.h"

namespace tessera::parallel {
namespace {

// fuzz/make_seeds.py writes the wire's seeds with this layout by hand.
static_assert(sizeof(SamplingParams) == 48 && sizeof(LogitBias) == 8, "update fuzz/make_seeds.py and the seeds");

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put_vec(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    for (const T& x : v) put(x);
  }
  void put_str(const std::string& s) {
    put<uint64_t>(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> finish() {
    std::vector<uint8_t> framed;
    Writer h;
    h.put(kWireMagic);
    h.put(kWireVersion);
    h.put<uint64_t>(out_.size());
    framed = std::move(h.out_);
    framed.insert(framed.end(), out_.begin(), out_.end());
    return framed;
  }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b, const char* what) : b_(b), what_(what) {
    const auto magic = get<uint32_t>();
    const auto version = get<uint32_t>();
    const auto n = get<uint64_t>();
    if (magic != kWireMagic) fail("bad magic (not a tessera " + std::string(what_) + ")");
    if (version != kWireVersion)
      fail("wire version " + std::to_string(version) + ", this build speaks " + std::to_string(kWireVersion) +
           ": coordinator and workers run different tessera builds");
    if (n != b_.size() - pos_)
      fail("payload of " + std::to_string(n) + " bytes, received " + std::to_string(b_.size() - pos_));
  }
  template <typename T>
  T get() {
    T v;
    if (b_.size() - pos_ < sizeof(T)) fail("truncated");
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vec() {
    const auto n = get<uint64_t>();
    if (n > (b_.size() - pos_) / sizeof(T)) fail("vector length " + std::to_string(n) + " past the end");
    std::vector<T> v(static_cast<size_t>(n));
    for (auto& x : v) x = get<T>();
    return v;
  }
  std::string get_str() {
    const auto n = get<uint64_t>();
    if (n > b_.size() - pos_) fail("string past the end");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  void done() {
    if (pos_ != b_.size()) fail(std::to_string(b_.size() - pos_) + " trailing bytes");
  }

 private:
  [[noreturn]] void fail(const std::string& why) { throw Error(std::string("wire ") + what_ + ": " + why); }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  const char* what_;
};

}  // namespace

void append_left_padded(std::vector<int32_t>& tokens, std::vector<int32_t>& pad, int32_t cols,
                        std::span<const int32_t> prompt) {
  const auto len = static_cast<int32_t>(prompt.size());
  TESSERA_CHECK(len >= 1 && len <= cols);
  tokens.insert(tokens.end(), static_cast<size_t>(cols - len), 0);
  tokens.insert(tokens.end(), prompt.begin(), prompt.end());
  pad.push_back(cols - len);
}

std::vector<uint8_t> encode_plan(const StepPlan& p) {
  Writer w;
  w.put(static_cast<uint32_t>(p.kind));
  w.put(p.step_id);
  w.put(p.n_slots);
  w.put(p.max_ctx);
  w.put(p.block_size);
  w.put(p.kv_bytes);
  w.put_vec(p.release_slots);
  w.put(p.prefill_cols);
  w.put_vec(p.prefill_tokens);
  w.put_vec(p.prefill_pad);
  w.put_vec(p.prefill_slots);
  w.put_vec(p.prefill_cached);
  w.put_vec(p.prefill_sampling);
  w.put_vec(p.prefill_history_len);
  w.put_vec(p.prefill_history);
  w.put_vec(p.prefill_bias_len);
  w.put_vec(p.prefill_bias);
  w.put_vec(p.prefill_stop_len);
  w.put_vec(p.prefill_stop);
  w.put_vec(p.prefill_prompt_len);
  w.put_vec(p.prefill_prompt);
  w.put_vec(p.decode_tokens);
  w.put_vec(p.decode_slots);
  w.put_vec(p.decode_positions);
  w.put(p.table_width);
  w.put_vec(p.tables);
  return w.finish();
}

StepPlan decode_plan(std::span<const uint8_t> bytes) {
  Reader r(bytes, "StepPlan");
  StepPlan p;
  const auto kind = r.get<uint32_t>();
  if (kind < 1 || kind > 3) throw Error("wire StepPlan: unknown kind " + std::to_string(kind));
  p.kind = static_cast<StepPlan::Kind>(kind);
  p.step_id = r.get<uint64_t>();
  p.n_slots = r.get<int32_t>();
  p.max_ctx = r.get<int32_t>();
  p.block_size = r.get<int32_t>();
  p.kv_bytes = r.get<uint64_t>();
  p.release_slots = r.get_vec<int32_t>();
  p.prefill_cols = r.get<int32_t>();
  p.prefill_tokens = r.get_vec<int32_t>();
  p.prefill_pad = r.get_vec<int32_t>();
  p.prefill_slots = r.get_vec<int32_t>();
  p.prefill_cached = r.get_vec<int32_t>();
  p.prefill_sampling = r.get_vec<SamplingParams>();
  p.prefill_history_len = r.get_vec<int32_t>();
  p.prefill_history = r.get_vec<int32_t>();
  p.prefill_bias_len = r.get_vec<int32_t>();
  p.prefill_bias = r.get_vec<LogitBias>();
  p.prefill_stop_len = r.get_vec<int32_t>();
  p.prefill_stop = r.get_vec<int32_t>();
  p.prefill_prompt_len = r.get_vec<int32_t>();
  p.prefill_prompt = r.get_vec<int32_t>();
  p.decode_tokens = r.get_vec<int32_t>();
  p.decode_slots = r.get_vec<int32_t>();
  p.decode_positions = r.get_vec<int32_t>();
  p.table_width = r.get<int32_t>();
  p.tables = r.get_vec<int32_t>();
  r.done();
  const size_t B = p.prefill_pad.size();
  uint64_t history = 0;
  for (int32_t n : p.prefill_history_len) history += n < 0 ? UINT64_MAX / 2 : static_cast<uint64_t>(n);
  // A list's lengths: none (every row's list empty) or one per row, adding up to the concatenation.
  auto list_ok = [B](const std::vector<int32_t>& lens, size_t total) {
    if (lens.empty()) return total == 0;
    uint64_t sum = 0;
    for (int32_t n : lens) sum += n < 0 ? UINT64_MAX / 2 : static_cast<uint64_t>(n);
    return lens.size() == B && sum == total;
  };
  if (p.prefill_slots.size() != B || p.prefill_sampling.size() != B || p.prefill_cached.size() != B ||
      p.prefill_history_len.size() != B || history != p.prefill_history.size() || p.prefill_cols < 0 ||
      !list_ok(p.prefill_bias_len, p.prefill_bias.size()) || !list_ok(p.prefill_stop_len, p.prefill_stop.size()) ||
      !list_ok(p.prefill_prompt_len, p.prefill_prompt.size()) ||
      p.prefill_tokens.size() != B * static_cast<size_t>(p.prefill_cols) ||
      p.decode_slots.size() != p.decode_tokens.size() || p.decode_positions.size() != p.decode_tokens.size() ||
      p.table_width < 0 || p.tables.size() != static_cast<size_t>(p.n_rows()) * static_cast<size_t>(p.table_width))
    throw Error("wire StepPlan: inconsistent row counts");
  return p;
}

std::vector<uint8_t> encode_result(const StepResult& r) {
  Writer w;
  w.put(r.step_id);
  w.put_vec(r.tokens);
  w.put_vec(r.logprobs);
  w.put<uint64_t>(r.top_logprobs.size());
  for (const auto& t : r.top_logprobs) w.put_vec(t);
  w.put(r.n_slots);
  w.put(r.n_blocks);
  w.put(r.block_size);
  w.put_str(r.error);
  w.put(r.step_seconds);
  w.put(r.collective_seconds);
  return w.finish();
}

StepResult decode_result(std::span<const uint8_t> bytes) {
  Reader rd(bytes, "StepResult");
  StepResult r;
  r.step_id = rd.get<uint64_t>();
  r.tokens = rd.get_vec<int32_t>();
  r.logprobs = rd.get_vec<float>();
  const auto n = rd.get<uint64_t>();
  if (n > bytes.size()) throw Error("wire StepResult: top_logprobs count past the end");
  for (uint64_t i = 0; i < n; ++i) r.top_logprobs.push_back(rd.get_vec<TopLogprob>());
  r.n_slots = rd.get<int32_t>();
  r.n_blocks = rd.get<int32_t>();
  r.block_size = rd.get<int32_t>();
  r.error = rd.get_str();
  r.step_seconds = rd.get<double>();
  r.collective_seconds = rd.get<double>();
  rd.done();
  if (r.logprobs.size() != r.tokens.size()) throw Error("wire StepResult: inconsistent row counts");
  return r;
}

}  // namespace tessera::parallel
