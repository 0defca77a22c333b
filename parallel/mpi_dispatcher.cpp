// parallel/mpi_dispatcher.cpp — polled non-blocking MPI for the plan broadcast and the result message.
#include "parallel/mpi_dispatcher.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "common/check.h"
#include "parallel/lifeline.h"

namespace tessera::parallel {
namespace {

constexpr int kResultTag = 7;
std::atomic<bool> g_stop{false};

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(std::string(what) + " failed: " + std::string(msg, static_cast<size_t>(len)));
}

// Polls `req` until it completes, sleeping between polls; timeout_s <= 0 waits forever (idle workers).
void wait(MPI_Request& req, const std::string& what, double timeout_s) {
  const auto t0 = std::chrono::steady_clock::now();
  auto sleep = std::chrono::microseconds(0);
  for (;;) {
    int done = 0;
    check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what.c_str());
    if (done) return;
    if (g_stop.load(std::memory_order_relaxed)) throw Error("stopped by a signal while waiting for " + what);
    if (std::string dead = dead_peer(); !dead.empty()) throw Error(dead + " while waiting for " + what);
    if (timeout_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s)
      throw Error("no answer within " + std::to_string(static_cast<int>(timeout_s)) + " s while waiting for " + what);
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2 + std::chrono::microseconds(10), std::chrono::microseconds(500));
  }
}

}  // namespace

void request_stop() { g_stop.store(true, std::memory_order_relaxed); }
bool stop_requested() { return g_stop.load(std::memory_order_relaxed); }

MpiDispatcher::MpiDispatcher(MPI_Comm world, int tp_size, double step_timeout_s)
    : world_(world), tp_size_(tp_size), step_timeout_s_(step_timeout_s) {}

StepResult MpiDispatcher::run(const StepPlan& plan) {
  std::vector<uint8_t> bytes = encode_plan(plan);
  uint64_t n = bytes.size();
  MPI_Request req;
  check(MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, world_, &req), "broadcast of the plan size");
  wait(req, "the workers to take step " + std::to_string(plan.step_id), step_timeout_s_);
  check(MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_BYTE, 0, world_, &req), "broadcast of the plan");
  wait(req, "the workers to take step " + std::to_string(plan.step_id), step_timeout_s_);
  if (plan.kind == StepPlan::Kind::kShutdown) return {};
  uint64_t m = 0;
  check(MPI_Irecv(&m, 1, MPI_UINT64_T, 1, kResultTag, world_, &req), "receive of the result size");
  wait(req, "tensor-parallel rank 0 (world rank 1) to finish step " + std::to_string(plan.step_id), step_timeout_s_);
  if (m > (uint64_t{1} << 31)) throw Error("result of " + std::to_string(m) + " bytes from world rank 1");
  std::vector<uint8_t> result(static_cast<size_t>(m));
  check(MPI_Irecv(result.data(), static_cast<int>(m), MPI_BYTE, 1, kResultTag, world_, &req), "receive of the result");
  wait(req, "the result of step " + std::to_string(plan.step_id) + " from world rank 1", step_timeout_s_);
  return decode_result(result);
}

StepPlan receive_plan(MPI_Comm world) {
  uint64_t n = 0;
  MPI_Request req;
  check(MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, world, &req), "broadcast of the plan size");
  wait(req, "the coordinator's next plan", 0);
  if (n > (uint64_t{1} << 31)) throw Error("plan of " + std::to_string(n) + " bytes from the coordinator");
  std::vector<uint8_t> bytes(static_cast<size_t>(n));
  check(MPI_Ibcast(bytes.data(), static_cast<int>(n), MPI_BYTE, 0, world, &req), "broadcast of the plan");
  wait(req, "the coordinator's plan", 0);
  return decode_plan(bytes);
}

void send_result(MPI_Comm world, const StepResult& result) {
  const std::vector<uint8_t> bytes = encode_result(result);
  uint64_t n = bytes.size();
  check(MPI_Send(&n, 1, MPI_UINT64_T, 0, kResultTag, world), "send of the result size");
  check(MPI_Send(bytes.data(), static_cast<int>(n), MPI_BYTE, 0, kResultTag, world), "send of the result");
}

}  // namespace tessera::parallel
