// worker/worker_loop.cpp — see worker_loop.h.
#include "worker/worker_loop.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "common/check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_dispatcher.h"
#include "worker/engine.h"

namespace tessera::worker {
namespace {

// This worker's index among the workers on its node: which GPU it takes.
int local_worker_index(MPI_Comm tensor) {
  MPI_Comm node = MPI_COMM_NULL;
  int index = 0;
  if (MPI_Comm_split_type(tensor, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS)
    throw Error("MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed");
  MPI_Comm_rank(node, &index);
  MPI_Comm_free(&node);
  return index;
}

}  // namespace

int run_worker(const parallel::Topology& topo, const std::string& model_path, const BackendOptions& backend) {
  const int tp_rank = topo.tp_rank(), tp_size = topo.tp_size();
  try {
    auto host_comm = parallel::make_mpi_communicator(topo.tensor);
    LoadRequest req;
    req.path = model_path;
    req.options = backend;
    req.tp_rank = tp_rank;
    req.tp_size = tp_size;
    req.host_comm = host_comm.get();
    req.local_index = local_worker_index(topo.tensor);
    if (resolve_backend(backend) == "cuda") req.device_comm = nccl_comm_factory(&topo.tensor);
    auto model = load_model(req);
    spdlog::info("tp rank {}/{}: {}", tp_rank, tp_size, model->describe());
    parallel::Communicator* comm = model->collectives() != nullptr ? model->collectives() : host_comm.get();
    Engine engine(model->runner(), tp_rank);
    for (;;) {
      const parallel::StepPlan plan = parallel::receive_plan(topo.world);
      if (plan.kind == parallel::StepPlan::Kind::kShutdown) {
        struct rusage ru {};
        ::getrusage(RUSAGE_SELF, &ru);
        spdlog::info("tp rank {}/{}: {:.0f} MB of weights, peak RSS {:.0f} MB", tp_rank, tp_size,
                     model->weight_bytes() / 1e6, ru.ru_maxrss / 1024.0);
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
