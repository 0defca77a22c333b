// worker/worker_loop.h — a worker process under mpirun: load this rank's shard onto its backend (worker/backend.h:
// the CPU Transformer with MPI collectives, or a GPU of its node with NCCL), then receive plans, execute them
// (collectively with the other workers) and, on TP rank 0, send each result to the coordinator, until the
// coordinator says shut down.
#pragma once

#include <string>

#include "parallel/bootstrap.h"
#include "worker/backend.h"

namespace tessera::worker {

// Returns the process exit code. A load error or a failed step is reported on stderr with the rank and ends
// the whole job (fail fast: the orchestrator restarts the group).
int run_worker(const parallel::Topology& topology, const std::string& model_path, const BackendOptions& backend);

}  // namespace tessera::worker
