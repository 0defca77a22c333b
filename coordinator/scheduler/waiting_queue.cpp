// coordinator/scheduler/waiting_queue.cpp — see waiting_queue.h.
#include "coordinator/scheduler/waiting_queue.h"

#include "common/check.h"

namespace tessera::coordinator {

bool WaitingQueue::push(std::shared_ptr<Request> request) {
  if (items_.size() >= capacity_) return false;
  items_.push_back(std::move(request));
  return true;
}

std::vector<std::shared_ptr<Request>> WaitingQueue::take(const std::vector<size_t>& indices) {
  std::vector<std::shared_ptr<Request>> out;
  out.reserve(indices.size());
  std::deque<std::shared_ptr<Request>> kept;
  size_t next = 0;
  for (size_t i = 0; i < items_.size(); ++i) {
    if (next < indices.size() && indices[next] == i) {
      out.push_back(std::move(items_[i]));
      ++next;
    } else {
      kept.push_back(std::move(items_[i]));
    }
  }
  TESSERA_CHECK_MSG(next == indices.size(), "take(): indices must be ascending and in range");
  items_ = std::move(kept);
  return out;
}

std::vector<std::shared_ptr<Request>> WaitingQueue::remove_if(const std::function<bool(const Request&)>& pred) {
  std::vector<std::shared_ptr<Request>> out;
  std::deque<std::shared_ptr<Request>> kept;
  for (auto& r : items_) {
    if (pred(*r))
      out.push_back(std::move(r));
    else
      kept.push_back(std::move(r));
  }
  items_ = std::move(kept);
  return out;
}

std::vector<std::shared_ptr<Request>> WaitingQueue::clear() {
  std::vector<std::shared_ptr<Request>> out(std::make_move_iterator(items_.begin()),
                                            std::make_move_iterator(items_.end()));
  items_.clear();
  return out;
}

}  // namespace tessera::coordinator
