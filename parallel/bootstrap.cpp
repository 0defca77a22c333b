// parallel/bootstrap.cpp — see bootstrap.h.
#include "parallel/bootstrap.h"

#include <cstdlib>

#include "common/check.h"
#include "parallel/lifeline.h"

namespace tessera::parallel {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

Topology bootstrap(int* argc, char*** argv) {
  Topology t;
  if (!launched_by_mpi()) return t;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) throw Error("MPI_Init_thread failed");
  t.mpi = true;
  t.world = MPI_COMM_WORLD;
  MPI_Comm_set_errhandler(t.world, MPI_ERRORS_RETURN);
  MPI_Comm_rank(t.world, &t.world_rank);
  MPI_Comm_size(t.world, &t.world_size);
  // Every rank takes part in the split; the coordinator gets MPI_COMM_NULL back.
  const int color = t.world_rank == 0 ? MPI_UNDEFINED : 1;
  if (MPI_Comm_split(t.world, color, t.world_rank, &t.tensor) != MPI_SUCCESS) throw Error("MPI_Comm_split failed");
  start_lifelines(t.world, t.world_rank, t.world_size);
  return t;
}

void finalize(Topology& t) {
  if (!t.mpi) return;
  close_lifelines();  // a clean exit: not a death
  if (t.tensor != MPI_COMM_NULL) MPI_Comm_free(&t.tensor);
  MPI_Finalize();
  t.mpi = false;
}

void abort_job(const Topology& t, int code) {
  if (t.mpi) MPI_Abort(t.world, code);
  std::exit(code);
}

}  // namespace tessera::parallel
