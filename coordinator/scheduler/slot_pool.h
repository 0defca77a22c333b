// coordinator/scheduler/slot_pool.h — KV-cache capacity: which of the workers' n_slots sequence slots are free.
//
// Admission is by slots: a request with n sequences needs n free slots (each slot holds up to max_ctx tokens,
// and submit() already checked prompt + max_tokens ≤ max_ctx, so an admitted sequence always fits).
// acquire() hands out the lowest free slot, so runs are reproducible. A slot released here is free at once;
// the Scheduler tells the workers in the next plan's release list, which they apply before that plan's prefill,
// so the slot may be refilled in the same step.
// Not thread-safe: owned by the scheduler thread.
#pragma once

#include <cstdint>
#include <set>

namespace tessera::coordinator {

class SlotPool {
 public:
  explicit SlotPool(int32_t n_slots);

  int32_t acquire();  // the lowest free slot; a caller bug (CHECK) when none is free
  void release(int32_t slot);
  int32_t n_slots() const { return n_slots_; }
  int32_t n_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t n_used() const { return n_slots_ - n_free(); }
  double usage() const { return n_slots_ > 0 ? static_cast<double>(n_used()) / n_slots_ : 0.0; }

 private:
  int32_t n_slots_;
  std::set<int32_t> free_;
};

}  // namespace tessera::coordinator
