// tests/coordinator/test_block_pool.cpp — the KV block pool and its prefix cache alone (label cpu, no model):
// allocation, sharing a prefix, the last-prompt-token rule, LRU eviction, preemption and resumption, decode growth,
// caching off, hash collisions (forced by test hashers), the counters, and a randomized workload that writes a
// shadow "KV" per block and checks that every cache hit reads exactly the tokens it stands for.
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <numeric>

#include "coordinator/scheduler/block_pool.h"

namespace tessera::coordinator {
namespace {

using Ids = std::vector<int32_t>;

Ids ids(int32_t first, int32_t n) {  // first, first + 1, ...
  Ids v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

Ids cat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Ids head(const Ids& a, size_t n) { return Ids(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n)); }

// Test hashers: every key the same, and a key that ignores the parent (the sum of the ids: [1, 2] and [2, 1]
// collide, and so does the same block after different prefixes).
uint64_t same_key(uint64_t, std::span<const int32_t>) { return 42; }
uint64_t sum_key(uint64_t, std::span<const int32_t> tokens) {
  uint64_t s = 0;
  for (int32_t t : tokens) s += static_cast<uint64_t>(t);
  return s;
}

TEST(BlockPool, AllocatesWholeBlocksLowestFirst) {
  BlockPool p(8, 4);
  const Ids a = ids(100, 10);
  const PrefixMatch m = p.match_prefix(a);
  EXPECT_EQ(m.n_cached_tokens, 0);
  EXPECT_EQ(m.n_blocks_needed, 3);
  ASSERT_EQ(p.admit(1, a), 0);
  EXPECT_TRUE(p.contains(1));
  EXPECT_EQ(p.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(p.n_tokens(1), 10);
  EXPECT_EQ(p.n_used(), 3);
  EXPECT_EQ(p.n_free(), 5);
  EXPECT_DOUBLE_EQ(p.usage(), 3.0 / 8.0);
  EXPECT_EQ(p.ref_count(2), 1);
  EXPECT_EQ(p.ref_count(3), 0);
  EXPECT_EQ(p.n_cached(), 0);  // nothing is cached before the caller says the KV is computed
  p.cache_full_blocks(1, a);
  EXPECT_EQ(p.n_cached(), 2);  // two full blocks; the partial tail is not cached
  ASSERT_EQ(p.admit(2, ids(500, 1)), 0);
  EXPECT_EQ(p.block_table(2), (Ids{3}));
  EXPECT_EQ(p.n_used(), 4);
}

// One sequence of 16 tokens (4 blocks of 4) is cached; each row admits another prompt beside it.
TEST(BlockPool, SharesTheCachedPrefixInWholeBlocks) {
  struct Row {
    const char* what;
    Ids prompt;
    int32_t cached;  // tokens
  };
  const Ids s = ids(0, 16);
  Ids changed_in_block1 = s;
  changed_in_block1[6] = 99;
  const std::vector<Row> rows = {
      {"the same 16 tokens: never the block of the last token", s, 12},
      {"one token more: all four blocks", cat(s, {7}), 16},
      {"9 tokens: two blocks", head(s, 9), 8},
      {"8 = 2 blocks exactly: one block (the last token's block is computed)", head(s, 8), 4},
      {"13 tokens: three blocks", head(s, 13), 12},
      {"one block exactly: nothing", head(s, 4), 0},
      {"one token: nothing", head(s, 1), 0},
      {"the first block, then other tokens", cat(head(s, 4), ids(200, 6)), 4},
      {"another first token: nothing", cat({77}, ids(1, 15)), 0},
      {"a token changed in block 1: block 0 only", changed_in_block1, 4},
      {"block 1's ids first: a block is its whole prefix, not its ids", cat(ids(4, 4), ids(0, 4)), 0},
  };
  BlockPool p(16, 4);
  ASSERT_EQ(p.admit(1, s), 0);
  p.cache_full_blocks(1, s);
  ASSERT_EQ(p.n_cached(), 4);
  const Ids source = p.block_table(1);
  uint64_t queries = 16, hits = 0;
  for (const Row& r : rows) {
    SCOPED_TRACE(r.what);
    EXPECT_EQ(p.match_prefix(r.prompt).n_cached_tokens, r.cached);
    const auto got = p.admit(2, r.prompt);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, r.cached);
    queries += r.prompt.size();
    hits += static_cast<uint64_t>(r.cached);
    const Ids& table = p.block_table(2);
    ASSERT_EQ(table.size(), (r.prompt.size() + 3) / 4);
    const size_t n_shared = static_cast<size_t>(r.cached) / 4;
    for (size_t i = 0; i < table.size(); ++i) {
      if (i < n_shared) {
        EXPECT_EQ(table[i], source[i]) << "block " << i;
        EXPECT_EQ(p.ref_count(table[i]), 2) << "block " << i;
      } else {
        EXPECT_EQ(std::count(source.begin(), source.end(), table[i]), 0) << "block " << i << " is not shared";
        EXPECT_EQ(p.ref_count(table[i]), 1) << "block " << i;
      }
    }
    EXPECT_EQ(p.n_used(), static_cast<int32_t>(4 + table.size() - n_shared));
    p.free(2);
    for (int32_t b : source) EXPECT_EQ(p.ref_count(b), 1);
    EXPECT_EQ(p.n_used(), 4);
  }
  EXPECT_EQ(p.prefix_cache_queries(), queries);
  EXPECT_EQ(p.prefix_cache_hits(), hits);
}

TEST(BlockPool, IdenticalPromptsOfWholeBlocksReuseAllButTheLast) {
  for (int32_t k = 1; k <= 4; ++k) {
    SCOPED_TRACE(k);
    BlockPool p(16, 4);
    const Ids a = ids(10, 4 * k);
    ASSERT_EQ(p.admit(1, a), 0);
    p.cache_full_blocks(1, a);
    ASSERT_EQ(p.admit(2, a), 4 * (k - 1));
    const Ids& t1 = p.block_table(1);
    const Ids& t2 = p.block_table(2);
    ASSERT_EQ(t2.size(), static_cast<size_t>(k));
    EXPECT_EQ(head(t2, static_cast<size_t>(k - 1)), head(t1, static_cast<size_t>(k - 1)));
    EXPECT_NE(t2.back(), t1.back());  // the block the second sequence writes is its own
    EXPECT_EQ(p.ref_count(t2.back()), 1);
  }
}

TEST(BlockPool, EvictsTheLeastRecentlyFreedFirstAndTailBlocksFirst) {
  BlockPool p(6, 4);
  const Ids a = ids(100, 8), b = ids(200, 8);
  ASSERT_EQ(p.admit(1, a), 0);
  EXPECT_EQ(p.block_table(1), (Ids{0, 1}));
  p.cache_full_blocks(1, a);
  p.free(1);  // evictable: 1, then 0 (tail first)
  EXPECT_EQ(p.n_free(), 6);
  EXPECT_EQ(p.n_used(), 0);
  EXPECT_EQ(p.n_evictable(), 2);
  ASSERT_EQ(p.admit(2, b), 0);
  EXPECT_EQ(p.block_table(2), (Ids{2, 3}));  // free unhashed blocks before evicting cached ones
  p.cache_full_blocks(2, b);
  p.free(2);  // evictable: 1, 0, 3, 2

  // A freed prefix is reused while it is cached; using it again makes it the most recently freed.
  ASSERT_EQ(p.admit(3, cat(a, {7})), 8);
  EXPECT_EQ(p.block_table(3), (Ids{0, 1, 4}));
  p.free(3);  // evictable: 3, 2, 1, 0
  EXPECT_EQ(p.n_evictable(), 4);

  // 4 blocks: the two free unhashed ones, then b's blocks (freed longest ago), tail block first.
  ASSERT_EQ(p.admit(4, ids(300, 16)), 0);
  EXPECT_EQ(p.block_table(4), (Ids{4, 5, 3, 2}));
  EXPECT_EQ(p.match_prefix(cat(b, {1})).n_cached_tokens, 0);
  EXPECT_EQ(p.match_prefix(cat(a, {1})).n_cached_tokens, 8);
  p.free(4);  // never cached: unhashed again

  // 5 blocks: 2, 3, 4, 5, then a's tail block 1; a's first block survives, and then goes too.
  ASSERT_EQ(p.admit(5, ids(400, 20)), 0);
  EXPECT_EQ(p.block_table(5), (Ids{2, 3, 4, 5, 1}));
  EXPECT_EQ(p.match_prefix(cat(a, {1})).n_cached_tokens, 4);
  ASSERT_EQ(p.admit(6, ids(500, 1)), 0);
  EXPECT_EQ(p.block_table(6), (Ids{0}));
  EXPECT_EQ(p.match_prefix(cat(a, {1})).n_cached_tokens, 0);
  EXPECT_EQ(p.n_cached(), 0);
  EXPECT_EQ(p.n_free(), 0);
}

TEST(BlockPool, PreemptedSequenceResumesFromTheBlocksItCached) {
  BlockPool p(8, 4);
  Ids all = ids(10, 6);  // the prompt
  ASSERT_EQ(p.admit(7, all), 0);
  p.cache_full_blocks(7, all);
  EXPECT_EQ(p.n_cached(), 1);
  for (int32_t g = 50; g < 55; ++g) {  // five decode steps: the generated tokens fill block 1
    all.push_back(g);
    ASSERT_TRUE(p.append_token(7));
    EXPECT_EQ(p.n_tokens(7), static_cast<int32_t>(all.size()));
    p.cache_full_blocks(7, all);
  }
  EXPECT_EQ(p.n_cached(), 2);  // a decode-generated block is cached too
  const Ids before = p.block_table(7);
  ASSERT_EQ(before.size(), 3u);

  p.free(7);  // preempted
  EXPECT_EQ(p.n_used(), 0);
  ASSERT_EQ(p.admit(7, all), 8);  // recomputed from prompt + generated: 11 tokens, two blocks cached
  EXPECT_EQ(head(p.block_table(7), 2), head(before, 2));
  EXPECT_EQ(p.n_tokens(7), 11);

  p.free(7);
  EXPECT_EQ(p.reset_prefix_cache(), 2);  // evicted meanwhile: it recomputes everything
  EXPECT_EQ(p.n_cached(), 0);
  ASSERT_EQ(p.admit(7, all), 0);
}

TEST(BlockPool, DecodeGrowsAcrossABlockBoundaryUntilNoBlockIsLeft) {
  BlockPool p(2, 4);
  ASSERT_EQ(p.admit(1, ids(0, 3)), 0);
  EXPECT_EQ(p.block_table(1).size(), 1u);
  ASSERT_TRUE(p.append_token(1));  // slot 3 of block 0
  EXPECT_EQ(p.n_tokens(1), 4);
  EXPECT_EQ(p.block_table(1).size(), 1u);
  ASSERT_TRUE(p.append_token(1));  // a new block
  EXPECT_EQ(p.n_tokens(1), 5);
  EXPECT_EQ(p.block_table(1), (Ids{0, 1}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.append_token(1));
  EXPECT_EQ(p.n_tokens(1), 8);
  EXPECT_FALSE(p.append_token(1));  // full: the caller preempts
  EXPECT_EQ(p.n_tokens(1), 8);
  EXPECT_EQ(p.block_table(1).size(), 2u);
  EXPECT_FALSE(p.admit(2, ids(0, 1)).has_value());
  EXPECT_FALSE(p.contains(2));
  p.free(1);
  EXPECT_EQ(p.n_used(), 0);
  EXPECT_DOUBLE_EQ(p.usage(), 0.0);
}

TEST(BlockPool, RefusesAdmissionWithoutEnoughBlocksAndTakesNothing) {
  BlockPool p(4, 4);
  const Ids a = ids(0, 8);
  ASSERT_EQ(p.admit(1, a), 0);
  p.cache_full_blocks(1, a);
  p.free(1);                              // blocks 0, 1 cached and evictable
  ASSERT_EQ(p.admit(2, ids(100, 1)), 0);  // block 2
  EXPECT_EQ(p.n_free(), 3);               // block 3 + the two evictable ones

  // 13 tokens: 2 cached blocks (idle: they leave the free count too) + 2 new = 4 > 3. Counting only the 2 new
  // blocks would admit it and then evict its own prefix.
  const Ids too_long = cat(a, ids(50, 5));
  const PrefixMatch m = p.match_prefix(too_long);
  EXPECT_EQ(m.n_cached_tokens, 8);
  EXPECT_EQ(m.n_blocks_needed, 4);
  EXPECT_FALSE(p.admit(3, too_long).has_value());
  EXPECT_FALSE(p.contains(3));
  EXPECT_EQ(p.n_free(), 3);
  EXPECT_EQ(p.n_cached(), 2);
  EXPECT_EQ(p.prefix_cache_queries(), 9u);  // a refused admission counts nothing
  EXPECT_EQ(p.prefix_cache_hits(), 0u);

  const Ids fits = cat(a, {50});  // 2 cached + 1 new = 3
  EXPECT_EQ(p.match_prefix(fits).n_blocks_needed, 3);
  ASSERT_EQ(p.admit(3, fits), 8);
  EXPECT_EQ(p.block_table(3), (Ids{0, 1, 3}));
  EXPECT_EQ(p.n_free(), 0);
  EXPECT_EQ(p.prefix_cache_queries(), 18u);
  EXPECT_EQ(p.prefix_cache_hits(), 8u);
}

TEST(BlockPool, EvictableBlocksCountAsFree) {
  BlockPool p(4, 4);
  const Ids a = ids(0, 16);
  ASSERT_EQ(p.admit(1, a), 0);
  p.cache_full_blocks(1, a);
  p.free(1);
  EXPECT_EQ(p.n_cached(), 4);
  EXPECT_EQ(p.n_free(), 4);
  ASSERT_EQ(p.admit(2, ids(100, 16)), 0);  // evicts all four
  EXPECT_EQ(p.block_table(2), (Ids{3, 2, 1, 0}));
  EXPECT_EQ(p.n_cached(), 0);
}

TEST(BlockPool, CachingOffNeverHits) {
  for (const bool on : {false, true}) {
    SCOPED_TRACE(on ? "caching on" : "caching off");
    BlockPool p(8, 4, on);
    EXPECT_EQ(p.prefix_caching(), on);
    const Ids a = ids(0, 12);
    ASSERT_EQ(p.admit(1, a), 0);
    p.cache_full_blocks(1, a);
    EXPECT_EQ(p.n_cached(), on ? 3 : 0);
    EXPECT_EQ(p.match_prefix(a).n_cached_tokens, on ? 8 : 0);
    ASSERT_EQ(p.admit(2, a), on ? 8 : 0);
    p.free(1);
    p.free(2);
    EXPECT_EQ(p.n_evictable(), on ? 3 : 0);
    ASSERT_EQ(p.admit(3, a), on ? 8 : 0);
    EXPECT_EQ(p.block_table(3), on ? (Ids{0, 1, 3}) : (Ids{0, 1, 2}));
    EXPECT_EQ(p.prefix_cache_queries(), on ? 36u : 0u);
    EXPECT_EQ(p.prefix_cache_hits(), on ? 16u : 0u);
  }
}

TEST(BlockPool, CollidingKeysNeverHit) {
  BlockPool p(16, 4, true, &same_key);
  const Ids a = ids(0, 12);
  ASSERT_EQ(p.admit(1, a), 0);
  p.cache_full_blocks(1, a);
  EXPECT_EQ(p.n_cached(), 1);                                  // block 1's key is block 0's: it stays uncached
  EXPECT_EQ(p.match_prefix(ids(100, 12)).n_cached_tokens, 0);  // other ids under the same key
  EXPECT_EQ(p.match_prefix(cat(head(a, 4), ids(100, 8))).n_cached_tokens, 4);  // block 0 really is cached
  EXPECT_EQ(p.match_prefix(a).n_cached_tokens, 4);  // block 1's key finds block 0: not its prefix
  ASSERT_EQ(p.admit(2, cat(a, {1})), 4);
}

// Block Q1 was computed after [1, 2]; its parent entry is evicted and [2, 1] is cached under the parent's old key.
// A check of (parent key, ids) would take Q1 for [2, 1, 5, 5]; the parent's identity is what is compared.
TEST(BlockPool, ABlockWhoseParentEntryWasEvictedNeverMatches) {
  BlockPool p(16, 2, true, &sum_key);
  const Ids pp = {1, 2, 3}, q = {1, 2, 5, 5, 7};
  ASSERT_EQ(p.admit(1, pp), 0);  // admitted in the same step: neither finds the other
  ASSERT_EQ(p.admit(2, q), 0);
  p.cache_full_blocks(1, pp);
  p.cache_full_blocks(2, q);  // [1, 2] is cached already (P0): Q keeps its block, Q1 chains onto P0
  EXPECT_EQ(p.n_cached(), 2);
  EXPECT_EQ(p.match_prefix(Ids{1, 2, 5, 5, 9}).n_cached_tokens, 4);
  p.free(1);
  EXPECT_EQ(p.reset_prefix_cache(), 1);  // P0; Q1 is held by Q
  const Ids s = {2, 1, 8};
  ASSERT_EQ(p.admit(3, s), 0);
  p.cache_full_blocks(3, s);  // [2, 1] under key 3, P0's old key
  EXPECT_EQ(p.match_prefix(Ids{2, 1, 9}).n_cached_tokens, 2);
  EXPECT_EQ(p.match_prefix(Ids{2, 1, 5, 5, 9}).n_cached_tokens, 2);
  EXPECT_EQ(p.match_prefix(Ids{1, 2, 5, 5, 9}).n_cached_tokens, 0);
}

// A block whose parent entry was evicted can never be found; an idle one gives way when the same prefix is
// computed again, so the new chain is cached whole (with the real hash: the keys are those of the same ids).
TEST(BlockPool, AnUnreachableIdleEntryGivesWay) {
  BlockPool p(16, 2);
  const Ids pp = {1, 2, 3}, q = {1, 2, 5, 5, 7};
  ASSERT_EQ(p.admit(1, pp), 0);
  ASSERT_EQ(p.admit(2, q), 0);
  p.cache_full_blocks(1, pp);
  p.cache_full_blocks(2, q);
  p.free(1);
  EXPECT_EQ(p.reset_prefix_cache(), 1);  // P0
  p.free(2);                             // Q1 idle and unreachable, Q0 was never cached
  EXPECT_EQ(p.n_cached(), 1);
  const Ids r = {1, 2, 5, 5, 6, 6, 9};
  ASSERT_EQ(p.admit(3, r), 0);
  p.cache_full_blocks(3, r);
  EXPECT_EQ(p.n_cached(), 3);  // R0, R1 (in Q1's place), R2
  EXPECT_EQ(p.match_prefix(Ids{1, 2, 5, 5, 6, 6, 0}).n_cached_tokens, 6);
}

TEST(BlockPool, AComputedTwiceBlockKeepsItsOwnAndTheCacheKeepsTheFirst) {
  BlockPool p(16, 4);
  const Ids pp = cat(ids(0, 8), {99}), q = cat(ids(0, 8), {98});
  ASSERT_EQ(p.admit(1, pp), 0);
  ASSERT_EQ(p.admit(2, q), 0);
  EXPECT_EQ(p.block_table(1), (Ids{0, 1, 2}));
  EXPECT_EQ(p.block_table(2), (Ids{3, 4, 5}));
  p.cache_full_blocks(1, pp);
  p.cache_full_blocks(2, q);
  EXPECT_EQ(p.n_cached(), 2);
  EXPECT_EQ(p.block_table(2), (Ids{3, 4, 5}));  // no swap
  EXPECT_EQ(p.ref_count(0), 1);
  EXPECT_EQ(p.ref_count(3), 1);
  ASSERT_EQ(p.admit(3, cat(ids(0, 8), {97})), 8);
  EXPECT_EQ(head(p.block_table(3), 2), (Ids{0, 1}));
  p.free(1);
  p.free(2);
  EXPECT_EQ(p.n_evictable(), 0);  // 0, 1 are held by sequence 3; 3, 4 were never cached
  p.free(3);
  EXPECT_EQ(p.n_evictable(), 2);
  EXPECT_EQ(p.n_used(), 0);
}

TEST(BlockPool, ResetDropsOnlyIdleEntries) {
  BlockPool p(8, 4);
  const Ids a = ids(0, 9), b = ids(100, 9);
  ASSERT_EQ(p.admit(1, a), 0);
  ASSERT_EQ(p.admit(2, b), 0);
  p.cache_full_blocks(1, a);
  p.cache_full_blocks(2, b);
  p.free(2);
  EXPECT_EQ(p.reset_prefix_cache(), 2);
  EXPECT_EQ(p.n_cached(), 2);  // a's, held
  EXPECT_EQ(p.n_free(), 5);
  EXPECT_EQ(p.n_evictable(), 0);
  EXPECT_EQ(p.match_prefix(a).n_cached_tokens, 8);
  EXPECT_EQ(p.match_prefix(b).n_cached_tokens, 0);
}

// A randomized workload (admissions with shared prefixes over a 4-token alphabet, decode steps, preemption when
// no block is left, resumption, finishes) over each hasher, caching on and off. Each block carries a shadow of the
// ids written into it: a hit must find exactly its tokens there, a sequence only ever writes into blocks it holds
// alone, and the ref counts equal the tables' contents. At the end every block is free.
TEST(BlockPool, RandomWorkloadKeepsEveryInvariant) {
  struct Config {
    const char* what;
    BlockHasher hasher;
    bool caching;
  };
  const std::vector<Config> configs = {{"real hash", &hash_block_tokens, true},
                                       {"every key the same", &same_key, true},
                                       {"key = sum of ids, parent ignored", &sum_key, true},
                                       {"caching off", &hash_block_tokens, false}};
  for (const Config& c : configs) {
    SCOPED_TRACE(c.what);
    constexpr int32_t kBlocks = 24, kBs = 4;
    BlockPool p(kBlocks, kBs, c.caching, c.hasher);
    std::vector<Ids> kv(kBlocks, Ids(kBs, -1));
    std::map<uint64_t, Ids> live;  // seq → its tokens, all computed
    std::vector<Ids> preempted;
    uint64_t x = 2024, next_seq = 0, queries = 0, hits = 0;
    int64_t n_preemptions = 0, n_refused = 0;
    auto rnd = [&](uint64_t n) { return ((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33) % n; };
    const std::vector<Ids> families = {ids(0, 12), {3, 3, 1, 0, 2, 2, 1, 3, 0, 0, 1, 2}, {1, 2, 3, 0, 1, 2, 3, 0}};

    auto compute = [&](uint64_t seq, const Ids& tokens, size_t from) {  // "write the KV" of tokens[from..]
      const Ids& table = p.block_table(seq);
      for (size_t i = from; i < tokens.size(); ++i) {
        const int32_t b = table[i / kBs];
        ASSERT_EQ(p.ref_count(b), 1) << "a write into a shared block";
        kv[static_cast<size_t>(b)][i % kBs] = tokens[i];
      }
      p.cache_full_blocks(seq, tokens);
    };
    auto try_admit = [&](const Ids& tokens) {
      const PrefixMatch m = p.match_prefix(tokens);
      const int32_t n_free = p.n_free();
      const uint64_t seq = next_seq++;
      const auto got = p.admit(seq, tokens);
      if (!got) {
        EXPECT_GT(m.n_blocks_needed, n_free);
        EXPECT_EQ(p.n_free(), n_free);
        ++n_refused;
        return false;
      }
      EXPECT_LE(m.n_blocks_needed, n_free);
      EXPECT_EQ(*got, m.n_cached_tokens);
      EXPECT_EQ(p.n_free(), n_free - m.n_blocks_needed);
      EXPECT_EQ(*got % kBs, 0);
      EXPECT_LT(*got, static_cast<int32_t>(tokens.size()));
      const Ids& table = p.block_table(seq);
      for (int32_t i = 0; i < *got; ++i) {
        EXPECT_EQ(kv[static_cast<size_t>(table[static_cast<size_t>(i / kBs)])][static_cast<size_t>(i % kBs)],
                  tokens[static_cast<size_t>(i)])
            << "a cache hit with other tokens, position " << i;
      }
      queries += tokens.size();
      hits += static_cast<uint64_t>(*got);
      compute(seq, tokens, static_cast<size_t>(*got));
      live[seq] = tokens;
      return true;
    };
    auto check_refs = [&] {
      std::vector<int32_t> refs(kBlocks, 0);
      for (const auto& [seq, tokens] : live) {
        const Ids& table = p.block_table(seq);
        ASSERT_EQ(table.size(), (tokens.size() + kBs - 1) / kBs);
        ASSERT_EQ(p.n_tokens(seq), static_cast<int32_t>(tokens.size()));
        for (int32_t b : table) ++refs[static_cast<size_t>(b)];
      }
      int32_t used = 0;
      for (int32_t b = 0; b < kBlocks; ++b) {
        ASSERT_EQ(p.ref_count(b), refs[static_cast<size_t>(b)]) << "block " << b;
        used += refs[static_cast<size_t>(b)] > 0;
      }
      ASSERT_EQ(p.n_used(), used);
      ASSERT_EQ(p.n_free() + p.n_used(), kBlocks);
      ASSERT_LE(p.n_cached(), kBlocks);
    };

    for (int step = 0; step < 3000; ++step) {
      const uint64_t action = rnd(10);
      if (action < 3 && live.size() < 6) {
        const Ids& f = families[rnd(families.size())];
        Ids prompt = head(f, rnd(f.size() + 1));
        for (uint64_t i = 0, n = 1 + rnd(8); i < n; ++i) prompt.push_back(static_cast<int32_t>(rnd(4)));
        try_admit(prompt);
      } else if (action < 8 && !live.empty()) {
        auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(rnd(live.size())));
        if (p.append_token(it->first)) {
          it->second.push_back(static_cast<int32_t>(rnd(4)));
          compute(it->first, it->second, it->second.size() - 1);
        } else {  // preempt: recompute later from everything so far
          preempted.push_back(it->second);
          p.free(it->first);
          live.erase(it);
          ++n_preemptions;
        }
      } else if (action < 9 && !preempted.empty()) {
        if (try_admit(preempted.back())) preempted.pop_back();
      } else if (!live.empty()) {
        auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(rnd(live.size())));
        p.free(it->first);
        live.erase(it);
      }
      check_refs();
      if (HasFatalFailure()) return;
    }
    for (const auto& [seq, tokens] : live) p.free(seq);
    live.clear();
    check_refs();
    EXPECT_EQ(p.n_used(), 0);
    EXPECT_EQ(p.n_free(), kBlocks);
    EXPECT_DOUBLE_EQ(p.usage(), 0.0);
    EXPECT_EQ(p.prefix_cache_queries(), c.caching ? queries : 0u);
    EXPECT_EQ(p.prefix_cache_hits(), c.caching ? hits : 0u);
    if (c.caching) {
      EXPECT_GT(hits, 0u);  // the workload shares prefixes: a cache that never hits is broken
    } else {
      EXPECT_EQ(hits, 0u);
      EXPECT_EQ(p.n_cached(), 0);
    }
    EXPECT_GT(n_preemptions, 0);  // the pool is small enough that decode runs out
    EXPECT_GT(n_refused, 0);
  }
}

TEST(BlockPoolDeathTest, CallerBugsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  BlockPool p(4, 4);
  ASSERT_EQ(p.admit(1, ids(0, 3)), 0);
  EXPECT_DEATH(p.admit(1, ids(0, 3)), "admitted twice");
  EXPECT_DEATH(p.cache_full_blocks(1, ids(0, 4)), "beyond the sequence's slots");
  EXPECT_DEATH(p.admit(2, Ids{}), "at least one token");
  EXPECT_DEATH(p.append_token(9), "unknown sequence");
  p.free(1);
  EXPECT_DEATH(p.free(1), "freed twice");
}

}  // namespace
}  // namespace tessera::coordinator
