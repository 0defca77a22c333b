// coordinator/scheduler/slot_pool.cpp — see slot_pool.h.
#include "coordinator/scheduler/slot_pool.h"

#include "common/check.h"

namespace tessera::coordinator {

SlotPool::SlotPool(int32_t n_slots) : n_slots_(n_slots) {
  TESSERA_CHECK(n_slots >= 0);
  for (int32_t s = 0; s < n_slots; ++s) free_.insert(s);
}

int32_t SlotPool::acquire() {
  TESSERA_CHECK_MSG(!free_.empty(), "no free KV slot");
  const int32_t s = *free_.begin();
  free_.erase(free_.begin());
  return s;
}

void SlotPool::release(int32_t slot) {
  TESSERA_CHECK(slot >= 0 && slot < n_slots_);
  const bool inserted = free_.insert(slot).second;
  TESSERA_CHECK_MSG(inserted, "slot released twice");
}

}  // namespace tessera::coordinator
