// coordinator/scheduler/block_pool.cpp — see block_pool.h.
#include "coordinator/scheduler/block_pool.h"

#include <algorithm>
#include <limits>

#include "common/check.h"

namespace tessera::coordinator {

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

}  // namespace

uint64_t hash_block_tokens(uint64_t parent_key, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_key + kGolden);
  for (int32_t t : tokens) h = mix64((h + kGolden) ^ static_cast<uint32_t>(t));
  return mix64(h ^ tokens.size());
}

BlockPool::BlockPool(int32_t n_blocks, int32_t block_size, bool prefix_caching, BlockHasher hasher)
    : block_size_(block_size), prefix_caching_(prefix_caching), hasher_(hasher) {
  TESSERA_CHECK(n_blocks >= 0);
  TESSERA_CHECK(block_size > 0);
  TESSERA_CHECK(hasher != nullptr);
  blocks_.resize(static_cast<size_t>(n_blocks));
  for (int32_t b = 0; b < n_blocks; ++b) free_unhashed_.insert(free_unhashed_.end(), b);
}

int32_t BlockPool::find_cached(uint64_t key, uint64_t parent_serial, std::span<const int32_t> tokens) const {
  const auto it = cached_.find(key);
  if (it == cached_.end()) return -1;
  const Block& b = blocks_[static_cast<size_t>(it->second)];
  if (b.parent_serial != parent_serial || !std::ranges::equal(b.tokens, tokens)) return -1;  // a collision
  return it->second;
}

BlockPool::Walk BlockPool::walk_cache(std::span<const int32_t> tokens, int32_t max_blocks) const {
  Walk w;
  if (!prefix_caching_) return w;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const auto ids = tokens.subspan(static_cast<size_t>(i) * block_size_, static_cast<size_t>(block_size_));
    const uint64_t key = hasher_(w.last_key, ids);
    const int32_t b = find_cached(key, w.last_serial, ids);
    if (b < 0) break;
    w.blocks.push_back(b);
    w.last_key = key;
    w.last_serial = blocks_[static_cast<size_t>(b)].serial;
  }
  return w;
}

namespace {

int32_t checked_size(std::span<const int32_t> tokens) {
  TESSERA_CHECK_MSG(!tokens.empty(), "a sequence has at least one token");
  TESSERA_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()));
  return static_cast<int32_t>(tokens.size());
}

}  // namespace

PrefixMatch BlockPool::cost(const Walk& w, int32_t n_tokens) const {
  const auto n_hit = static_cast<int32_t>(w.blocks.size());
  const int32_t n_total = (n_tokens - 1) / block_size_ + 1;
  // Hit blocks nobody holds sit in the evictable LRU: taking them shrinks the free count too.
  const auto n_idle_hits =
      static_cast<int32_t>(std::ranges::count_if(w.blocks, [&](int32_t b) { return ref_count(b) == 0; }));
  return {n_hit * block_size_, n_total - n_hit + n_idle_hits};
}

PrefixMatch BlockPool::match_prefix(std::span<const int32_t> tokens) const {
  const int32_t n = checked_size(tokens);
  return cost(walk_cache(tokens, (n - 1) / block_size_), n);
}

std::optional<int32_t> BlockPool::admit(uint64_t seq, std::span<const int32_t> tokens) {
  TESSERA_CHECK_MSG(!contains(seq), "sequence admitted twice");
  const int32_t n = checked_size(tokens);
  const Walk w = walk_cache(tokens, (n - 1) / block_size_);
  const PrefixMatch m = cost(w, n);
  if (m.n_blocks_needed > n_free()) return std::nullopt;

  Sequence s;
  s.table.reserve(static_cast<size_t>((n - 1) / block_size_ + 1));
  // The hits first, so that allocating the rest can never evict one of them.
  for (int32_t b : w.blocks) {
    Block& blk = blocks_[static_cast<size_t>(b)];
    if (blk.ref == 0) evictable_.erase(blk.lru);
    ++blk.ref;
    s.table.push_back(b);
  }
  while (static_cast<int32_t>(s.table.size()) * block_size_ < n) s.table.push_back(allocate());
  s.n_tokens = n;
  s.n_hashed = static_cast<int32_t>(w.blocks.size());
  s.last_key = w.last_key;
  s.last_serial = w.last_serial;
  seqs_.emplace(seq, std::move(s));
  if (prefix_caching_) {
    n_queries_ += static_cast<uint64_t>(n);
    n_hits_ += static_cast<uint64_t>(m.n_cached_tokens);
  }
  return m.n_cached_tokens;
}

void BlockPool::cache_full_blocks(uint64_t seq, std::span<const int32_t> tokens) {
  Sequence& s = sequence(seq);
  TESSERA_CHECK_MSG(tokens.size() <= static_cast<size_t>(s.n_tokens), "tokens beyond the sequence's slots");
  if (!prefix_caching_ || s.chain_broken) return;
  const auto n_full = static_cast<int32_t>(tokens.size() / static_cast<size_t>(block_size_));
  for (int32_t i = s.n_hashed; i < n_full; ++i) {
    const auto ids = tokens.subspan(static_cast<size_t>(i) * block_size_, static_cast<size_t>(block_size_));
    const uint64_t key = hasher_(s.last_key, ids);
    const auto it = cached_.find(key);
    if (it != cached_.end()) {
      const int32_t same = find_cached(key, s.last_serial, ids);
      if (same >= 0) {
        // Computed twice (admitted before the other was cached): keep our block, the cache keeps the other, and
        // our later blocks chain onto the other's entry.
        s.last_serial = blocks_[static_cast<size_t>(same)].serial;
        s.last_key = key;
        s.n_hashed = i + 1;
        continue;
      }
      // Another entry holds this key: a hash collision, or a block whose parent entry was evicted since (it can
      // never be found again). An idle one gives way to ours; one in use stays, and then this block and all after
      // it stay uncached (a lookup could not get past this key anyway).
      if (blocks_[static_cast<size_t>(it->second)].ref > 0) {
        s.chain_broken = true;
        return;
      }
      const int32_t idle = it->second;
      evictable_.erase(blocks_[static_cast<size_t>(idle)].lru);
      uncache(idle);
      free_unhashed_.insert(idle);
    }
    const int32_t b = s.table[static_cast<size_t>(i)];
    Block& blk = blocks_[static_cast<size_t>(b)];
    TESSERA_CHECK(blk.serial == 0 && blk.ref == 1);  // a sequence's own block beyond its hashed prefix
    blk.serial = next_serial_++;
    blk.key = key;
    blk.parent_serial = s.last_serial;
    blk.tokens.assign(ids.begin(), ids.end());
    cached_.emplace(key, b);
    s.last_serial = blk.serial;
    s.last_key = key;
    s.n_hashed = i + 1;
  }
}

bool BlockPool::append_token(uint64_t seq) {
  Sequence& s = sequence(seq);
  if (s.n_tokens == static_cast<int32_t>(s.table.size()) * block_size_) {
    if (n_free() == 0) return false;
    s.table.push_back(allocate());
  }
  ++s.n_tokens;
  return true;
}

void BlockPool::free(uint64_t seq) {
  const auto it = seqs_.find(seq);
  TESSERA_CHECK_MSG(it != seqs_.end(), "free of an unknown sequence (freed twice?)");
  const std::vector<int32_t>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) release(*b);
  seqs_.erase(it);
}

int32_t BlockPool::reset_prefix_cache() {
  const auto n = static_cast<int32_t>(evictable_.size());
  for (int32_t b : evictable_) {
    uncache(b);
    free_unhashed_.insert(b);
  }
  evictable_.clear();
  return n;
}

const std::vector<int32_t>& BlockPool::block_table(uint64_t seq) const { return sequence(seq).table; }

int32_t BlockPool::n_tokens(uint64_t seq) const { return sequence(seq).n_tokens; }

int32_t BlockPool::ref_count(int32_t block) const {
  TESSERA_CHECK(block >= 0 && block < n_blocks());
  return blocks_[static_cast<size_t>(block)].ref;
}

int32_t BlockPool::allocate() {
  int32_t b;
  if (!free_unhashed_.empty()) {
    b = *free_unhashed_.begin();
    free_unhashed_.erase(free_unhashed_.begin());
  } else {
    TESSERA_CHECK_MSG(!evictable_.empty(), "no free KV block");
    b = evictable_.front();
    evictable_.pop_front();
    uncache(b);
  }
  blocks_[static_cast<size_t>(b)].ref = 1;
  return b;
}

void BlockPool::uncache(int32_t block) {
  Block& blk = blocks_[static_cast<size_t>(block)];
  const auto it = cached_.find(blk.key);
  TESSERA_CHECK(blk.serial != 0 && it != cached_.end() && it->second == block);
  cached_.erase(it);
  blk.serial = 0;
  blk.key = 0;
  blk.parent_serial = 0;
  blk.tokens.clear();
}

void BlockPool::release(int32_t block) {
  Block& blk = blocks_[static_cast<size_t>(block)];
  TESSERA_CHECK(blk.ref > 0);
  if (--blk.ref > 0) return;
  if (blk.serial != 0) {
    blk.lru = evictable_.insert(evictable_.end(), block);
  } else {
    free_unhashed_.insert(block);
  }
}

BlockPool::Sequence& BlockPool::sequence(uint64_t seq) {
  const auto it = seqs_.find(seq);
  TESSERA_CHECK_MSG(it != seqs_.end(), "unknown sequence");
  return it->second;
}

const BlockPool::Sequence& BlockPool::sequence(uint64_t seq) const {
  const auto it = seqs_.find(seq);
  TESSERA_CHECK_MSG(it != seqs_.end(), "unknown sequence");
  return it->second;
}

}  // namespace tessera::coordinator
