// parallel/mpi_dispatcher.h — the StepPlan/StepResult exchange over MPI_COMM_WORLD.
//
// Coordinator: MpiDispatcher::run broadcasts the encoded plan (size, then bytes) and receives TP rank 0's
// result. Workers: receive_plan / send_result. Every wait polls a non-blocking request and sleeps between
// polls (backing off to 0.5 ms), so neither an idle worker nor the coordinator spins a core in MPI while the
// workers compute. A wait gives up with tessera::Error when the step timeout passes, a termination signal
// arrived (see request_stop) or a rank died (parallel/lifeline.h), naming what it waited for.
#pragma once

#include <mpi.h>

#include "parallel/transport.h"

namespace tessera::parallel {

class MpiDispatcher final : public Dispatcher {
 public:
  MpiDispatcher(MPI_Comm world, int tp_size, double step_timeout_s);
  StepResult run(const StepPlan& plan) override;
  int tp_size() const override { return tp_size_; }

 private:
  MPI_Comm world_;
  int tp_size_;
  double step_timeout_s_;
};

// Worker side: blocks (politely) until the coordinator's next plan.
StepPlan receive_plan(MPI_Comm world);
// TP rank 0: the step's result to the coordinator.
void send_result(MPI_Comm world, const StepResult& result);

// Async-signal-safe: makes every pending and future wait throw (SIGTERM/SIGINT handlers call it).
void request_stop();
bool stop_requested();

}  // namespace tessera::parallel
