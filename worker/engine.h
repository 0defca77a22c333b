// worker/engine.h — a worker's step: StepPlan in (release slots, prefill group, decodes), StepResult out
// (one sampled token per row, on TP rank 0).
//
// The engine owns the KV cache (through its runner; the plan's block tables say where each row's KV is) and each
// sequence slot's sampling state (params, step counter, generated-token counts), opened by the prefill that fills
// the slot (a resumed sequence's from the tokens it generated before) and closed by its release. execute() is
// collective over the Transformer's TP group: every rank runs every plan in the same order. Not thread-safe: one engine
// loop.
#pragma once

#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "parallel/transport.h"
#include "worker/model_runner.h"
#include "worker/sampler.h"

namespace tessera::worker {

class Engine {
 public:
  // `tp_rank` decides who samples (rank 0). The runner must outlive the engine.
  Engine(ModelRunner& runner, int tp_rank);

  parallel::StepResult execute(const parallel::StepPlan& plan);
  ModelRunner& runner() { return runner_; }

 private:
  struct SlotState {
    SamplingParams params;
    uint64_t step = 0;  // tokens generated so far
    std::unordered_map<int32_t, int32_t> counts;
    SamplingLists lists;
  };
  // The sampling state of each row's slot, for the runner to sample with.
  std::vector<SampleRequest> requests(const std::vector<int32_t>& slots) const;
  // Appends the rows' results to out and advances each slot's step and counts (TP rank 0).
  void record(const std::vector<sampler::SampleResult>& results, const std::vector<int32_t>& slots,
              parallel::StepResult& out);

  ModelRunner& runner_;
  int tp_rank_;
  std::vector<std::optional<SlotState>> slots_;
};

// The in-process dispatcher: TP = 1, no MPI; what a single `tessera` process and the tests use.
class LocalDispatcher final : public parallel::Dispatcher {
 public:
  explicit LocalDispatcher(ModelRunner& runner) : engine_(runner, 0) {}
  parallel::StepResult run(const parallel::StepPlan& plan) override { return engine_.execute(plan); }
  int tp_size() const override { return 1; }
  Engine& engine() { return engine_; }

 private:
  Engine engine_;
};

}  // namespace tessera::worker
