// parallel/bootstrap.h — roles from the MPI rank: world rank 0 is the coordinator, ranks 1..TP are the
// tensor-parallel workers (TP rank = world rank - 1), and `tensor` is a communicator of the workers only.
//
// Started without mpirun, tessera is one process at TP = 1 and MPI is never initialized (no singleton
// start-up cost, no MPI needed at all). Under `mpirun -np 1` it is the same single process.
#pragma once

#include <mpi.h>

namespace tessera::parallel {

struct Topology {
  bool mpi = false;  // MPI is initialized (launched by mpirun)
  int world_rank = 0, world_size = 1;
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm tensor = MPI_COMM_NULL;  // workers only; MPI_COMM_NULL on the coordinator
  bool is_coordinator() const { return world_rank == 0; }
  int tp_size() const { return world_size > 1 ? world_size - 1 : 1; }
  int tp_rank() const { return world_rank - 1; }
  bool in_process() const { return world_size == 1; }  // the coordinator runs the model itself
};

// True when the environment says an MPI launcher started this process.
bool launched_by_mpi();
// Initializes MPI (funneled: only the thread that calls these uses MPI) when launched by mpirun, and the
// lifelines between the coordinator and each worker (parallel/lifeline.h).
Topology bootstrap(int* argc, char*** argv);
// Says goodbye on the lifelines and finalizes MPI, if it was initialized.
void finalize(Topology& topology);
// Ends every rank of the job with `code` (MPI_Abort), or exits when MPI is not in use.
[[noreturn]] void abort_job(const Topology& topology, int code);

}  // namespace tessera::parallel
