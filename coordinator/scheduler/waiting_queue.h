// coordinator/scheduler/waiting_queue.h — the bounded FIFO of accepted requests that have not started yet.
//
// In: requests from submit() (HTTP threads).  Out: the requests the prefill-group former picks, and the ones
// that were cancelled or timed out while they waited.  Guarantees: never holds more than `capacity` requests
// (push on a full queue fails: the caller answers kQueueFull, memory stays bounded); arrival order is kept.
// Not thread-safe: the Scheduler guards it with its mutex.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "coordinator/request.h"

namespace tessera::coordinator {

class WaitingQueue {
 public:
  explicit WaitingQueue(size_t capacity) : capacity_(capacity) {}

  bool push(std::shared_ptr<Request> request);  // false when full
  // Back at the head: a request taken this step that could not be admitted after all (it keeps its place).
  void push_front(std::shared_ptr<Request> request) { items_.push_front(std::move(request)); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  size_t capacity() const { return capacity_; }
  const std::shared_ptr<Request>& at(size_t i) const { return items_[i]; }

  // Removes and returns the requests at `indices` (ascending, from the former), in arrival order.
  std::vector<std::shared_ptr<Request>> take(const std::vector<size_t>& indices);
  // Removes and returns every request for which `pred` holds, in arrival order.
  std::vector<std::shared_ptr<Request>> remove_if(const std::function<bool(const Request&)>& pred);
  // Removes and returns everything.
  std::vector<std::shared_ptr<Request>> clear();

 private:
  size_t capacity_;
  std::deque<std::shared_ptr<Request>> items_;
};

}  // namespace tessera::coordinator
