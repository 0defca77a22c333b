// parallel/mpi_communicator.h — Communicator over an MPI communicator (the CPU backend's tensor group).
#pragma once

#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace tessera::parallel {

// Does not take ownership of `comm`. Errors come back as return codes (MPI_ERRORS_RETURN is set on it).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

}  // namespace tessera::parallel
