// coordinator/scheduler/block_pool.h — paged KV memory: a pool of fixed-size KV blocks shared by all sequences,
// per-sequence block tables, and automatic prefix caching (vLLM's hash chain over full blocks). Issue 13, first
// step: model-free; the scheduler, the StepPlan and the attention kernels do not use it yet.
//
// In: a sequence's token ids (admit, cache_full_blocks) and its decode steps (append_token). Out: block tables
// (block ids in token order: token p of a sequence lives in block table[p / block_size], slot p % block_size),
// how many leading tokens are already cached, and the counters behind the KV metrics.
//
// Guarantees:
// - A cache hit is exact: a block is reused for a prefix only when its token ids and everything before them are
//   equal to what was computed into it. Keys are 64-bit hashes, but every hit is verified (the block's own ids,
//   and the identity of the cached block before it), so a hash collision costs a miss, never a wrong token.
// - The block a sequence writes into (its tail) is never shared: the block holding the last prompt token is never
//   taken from the cache, and shared blocks are full. No copy-on-write is needed.
// - "No free block" is a normal answer (nullopt / false), never an abort; caller bugs (an unknown or duplicate
//   sequence, tokens beyond the allocated slots) abort with TESSERA_CHECK.
//
// Not thread-safe: owned by the scheduler thread, like SlotPool.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

namespace tessera::coordinator {

// Key of a full block from the key of the block before it (kRootBlockKey for a sequence's first block) and the
// block's token ids. Any function will do for correctness (hits are verified); a poor one only costs hits.
using BlockHasher = uint64_t (*)(uint64_t parent_key, std::span<const int32_t> tokens);
inline constexpr uint64_t kRootBlockKey = 0;
uint64_t hash_block_tokens(uint64_t parent_key, std::span<const int32_t> tokens);  // splitmix64 over the ids

// What admit() would do for these tokens now (nothing is taken; see match_prefix()).
struct PrefixMatch {
  int32_t n_cached_tokens = 0;  // leading tokens found in cached blocks (whole blocks, never the last token's)
  int32_t n_blocks_needed = 0;  // free blocks admit() would consume: new blocks + cached blocks no sequence holds;
                                // admit() succeeds iff n_blocks_needed <= n_free()
};

class BlockPool {
 public:
  // n_blocks blocks of block_size tokens. prefix_caching false: nothing is ever registered or looked up.
  // hasher: tests pass a colliding one to check that collisions never hit.
  BlockPool(int32_t n_blocks, int32_t block_size, bool prefix_caching = true, BlockHasher hasher = &hash_block_tokens);

  // The longest cached prefix of `tokens` in whole blocks, never including the block of the last token (at least
  // one token must be computed to produce logits): n_cached_tokens <= (size - 1) rounded down to whole blocks.
  // For admission decisions; counts nothing.
  PrefixMatch match_prefix(std::span<const int32_t> tokens) const;

  // Admits sequence `seq` (a new id, chosen by the caller) with its prompt `tokens` (non-empty; a preempted
  // sequence comes back with prompt + generated): takes a reference on the cached prefix of match_prefix() and
  // allocates new blocks for the rest, so the table has ceil(size / block_size) blocks and n_tokens() = size.
  // Returns the number of cached tokens (their KV need not be computed), or nullopt when the free blocks (counting
  // evictable cached ones) do not suffice: then nothing is taken and nothing is counted. New blocks are free
  // unhashed blocks (lowest id first), else the least recently freed cached block, whose cache entry is dropped.
  // Counts prefix-cache queries (+= size) and hits (+= cached tokens) when caching is on.
  std::optional<int32_t> admit(uint64_t seq, std::span<const int32_t> tokens);

  // The caller has computed the KV of `tokens` (the sequence's first tokens.size() tokens: prompt, then generated;
  // at most n_tokens(seq)). Registers every block that became full since the last call in the prefix cache,
  // decode-generated blocks too. When an identical block is cached already (another sequence computed the same
  // prefix at the same time), the sequence keeps its own block and the cache keeps pointing at the existing one.
  // When another prefix holds the key (a hash collision, or a block whose parent entry was evicted), an idle entry
  // gives way; one in use stays, and this block and the rest of the sequence stay uncached.
  // The tokens of blocks registered before must be the same as then (the caller passes one growing sequence).
  void cache_full_blocks(uint64_t seq, std::span<const int32_t> tokens);

  // One more token slot for a decode step: n_tokens(seq) += 1, allocating a block when the last one is full.
  // False, and nothing changes, when no block can be had (the caller preempts: free() and admit() later).
  bool append_token(uint64_t seq);

  // Releases all blocks of `seq` (finish, cancel, or preemption), tail first: a freed block that holds a cached
  // prefix joins the LRU of evictable blocks (so a shared prefix's first blocks are evicted last), others become
  // free unhashed blocks. The id may be admitted again afterwards.
  void free(uint64_t seq);

  // Drops the cache entries of all blocks no sequence holds (they become free unhashed blocks); blocks in use keep
  // theirs. Returns how many were dropped.
  int32_t reset_prefix_cache();

  bool contains(uint64_t seq) const { return seqs_.count(seq) != 0; }
  const std::vector<int32_t>& block_table(uint64_t seq) const;  // block ids in token order
  int32_t n_tokens(uint64_t seq) const;                         // token slots allocated to seq

  int32_t n_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  int32_t n_free() const { return static_cast<int32_t>(free_unhashed_.size() + evictable_.size()); }
  int32_t n_used() const { return n_blocks() - n_free(); }  // blocks with ref > 0
  double usage() const { return n_blocks() > 0 ? static_cast<double>(n_used()) / n_blocks() : 0.0; }
  int32_t n_cached() const { return static_cast<int32_t>(cached_.size()); }  // blocks in the prefix cache
  int32_t n_evictable() const { return static_cast<int32_t>(evictable_.size()); }
  int32_t ref_count(int32_t block) const;
  uint64_t prefix_cache_queries() const { return n_queries_; }  // tokens looked up by admit()
  uint64_t prefix_cache_hits() const { return n_hits_; }        // of which found cached

 private:
  struct Block {
    int32_t ref = 0;
    // Cache entry, valid while serial != 0 (the block is the one cached_[key] names). The parent is identified
    // by its serial, not its key: serials are never reused, so a stale chain can never match a new parent.
    uint64_t serial = 0;
    uint64_t key = 0;
    uint64_t parent_serial = 0;  // 0 for a sequence's first block
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // position in evictable_ while ref == 0 and serial != 0
  };
  struct Sequence {
    std::vector<int32_t> table;
    int32_t n_tokens = 0;
    int32_t n_hashed = 0;  // leading blocks whose key is known (cached, or found identical to a cached one)
    uint64_t last_key = kRootBlockKey;
    uint64_t last_serial = 0;   // the cache entry holding the same prefix as table[n_hashed - 1]
    bool chain_broken = false;  // a collision kept a block out of the cache: nothing after it can be found
  };
  struct Walk {
    std::vector<int32_t> blocks;  // the cached prefix, in order
    uint64_t last_key = kRootBlockKey;
    uint64_t last_serial = 0;
  };

  Walk walk_cache(std::span<const int32_t> tokens, int32_t max_blocks) const;
  PrefixMatch cost(const Walk& w, int32_t n_tokens) const;
  // The block cached under `key` if it holds `tokens` after the entry `parent_serial`; -1 when none does.
  int32_t find_cached(uint64_t key, uint64_t parent_serial, std::span<const int32_t> tokens) const;
  int32_t allocate();  // a block with ref 1; the caller checked n_free() > 0
  void uncache(int32_t block);
  void release(int32_t block);
  Sequence& sequence(uint64_t seq);
  const Sequence& sequence(uint64_t seq) const;

  const int32_t block_size_;
  const bool prefix_caching_;
  const BlockHasher hasher_;
  std::vector<Block> blocks_;
  std::set<int32_t> free_unhashed_;               // ref 0, not cached: taken lowest first
  std::list<int32_t> evictable_;                  // ref 0, cached: least recently freed first
  std::unordered_map<uint64_t, int32_t> cached_;  // key → the block holding it
  std::unordered_map<uint64_t, Sequence> seqs_;
  uint64_t next_serial_ = 1;  // 0 is the root: "no parent"
  uint64_t n_queries_ = 0, n_hits_ = 0;
};

}  // namespace tessera::coordinator
