// worker/worker_loop.cpp — see worker_loop.h.
#include "worker/worker_loop.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "common/check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_dispatcher.h"
#include "worker/engine.h"

namespace tessera::worker {

int run_worker(const parallel::Topology& topo, const std::string& model_path) {
  const int tp_rank = topo.tp_rank(), tp_size = topo.tp_size();
  try {
    auto comm = parallel::make_mpi_communicator(topo.tensor);
    Transformer model(model::load_weights(model_path, tp_rank, tp_size), comm.get());
    spdlog::info("tp rank {}/{}: loaded {:.0f} MB of weights", tp_rank, tp_size, model.weights().n_bytes() / 1e6);
    CpuRunner runner(model);
    Engine engine(runner, tp_rank);
    for (;;) {
      const parallel::StepPlan plan = parallel::receive_plan(topo.world);
      if (plan.kind == parallel::StepPlan::Kind::kShutdown) {
        struct rusage ru {};
        ::getrusage(RUSAGE_SELF, &ru);
        spdlog::info("tp rank {}/{}: {:.0f} MB of weights, peak RSS {:.0f} MB", tp_rank, tp_size,
                     model.weights().n_bytes() / 1e6, ru.ru_maxrss / 1024.0);
        return 0;
      }
      const double comm_before = comm->seconds_in_collectives();
      parallel::StepResult result = engine.execute(plan);
      result.collective_seconds = comm->seconds_in_collectives() - comm_before;
      if (tp_rank == 0) parallel::send_result(topo.world, result);
    }
  } catch (const std::exception& e) {
    spdlog::error("tensor-parallel rank {} (world rank {}): {}", tp_rank, topo.world_rank, e.what());
    parallel::abort_job(topo, 3);
  }
}

}  // namespace tessera::worker
