// parallel/lifeline.h — notices within milliseconds that a rank of the job died.
//
// MPI does not say when a peer dies: a broadcast or receive that waits for a killed worker waits forever (or
// until parallel.step_timeout_s), and mpirun only SIGTERMs the survivors about a second later, which looks like
// a normal drain. So every worker keeps one TCP connection to the coordinator (its "lifeline"): the kernel
// closes it when the process dies, however it dies, and a watcher thread on each end sees the EOF at once.
// A rank that leaves cleanly says goodbye first (one byte), so its EOF is not a death.
//
// Set-up (start_lifelines, collective over the world communicator, right after MPI_Init): the coordinator
// listens on an ephemeral TCP port of every interface and broadcasts the port, its IPv4 addresses and a random
// token; each worker tries the addresses (loopback first) and proves the token; the coordinator acknowledges.
// A worker that reaches none of the addresses logs a warning and runs without one (its death is then noticed
// only by the step timeout). The watcher threads make no MPI calls (MPI stays funneled).
#pragma once

#include <mpi.h>

#include <functional>
#include <string>

namespace tessera::parallel {

// Collective: every rank of `world` calls it once. A no-op for a world of one process.
void start_lifelines(MPI_Comm world, int world_rank, int world_size);

// Before MPI_Finalize on a clean exit: says goodbye to the peers and stops watching. Idempotent.
void close_lifelines();

// Empty while every peer lives; else which one died, e.g. "world rank 2 (tensor-parallel rank 1) died".
// Thread-safe and cheap (an atomic load while nothing died): the MPI waits poll it.
std::string dead_peer();

// Called once, on the watcher thread, when a peer dies (after dead_peer() has become non-empty): the server
// uses it to fail its requests while the scheduler is idle. Pass nullptr to unset; unsetting waits for a call
// in progress, so the callback's captures may be destroyed right after.
void on_peer_death(std::function<void(const std::string&)> callback);

}  // namespace tessera::parallel
