// app/launch.h — `tessera launch [--signal USR1] -- mpirun -np 4 tessera serve ...`: runs a command (mpirun, or
// tessera serve itself) as its child and turns the signals that end a service into the one that drains it.
//
// Why: Open MPI 4.1's mpirun answers SIGTERM with its kill sequence (SIGCONT to every rank, then SIGTERM
// odls_base_sigkill_timeout seconds later, SIGKILL after as long again) and exits 1 whatever the ranks did, so a
// kubelet's SIGTERM to mpirun cannot end a job with exit 0. mpirun forwards SIGUSR1 to every rank at once, and
// `tessera serve` drains on SIGUSR1 (workers ignore it). So: the first SIGTERM/SIGINT/SIGHUP to `launch` is sent
// to the child as --signal (default SIGUSR1: drain); a second one as SIGTERM (mpirun's abort). `launch` exits
// with the child's code (128 + signal when a signal ended it), and, when it runs as a container's PID 1, reaps
// every orphan that is reparented to it.
#pragma once

#include <string>
#include <vector>

namespace tessera::app {

// signal_name: USR1, USR2, TERM, INT (with or without the SIG prefix); anything else throws tessera::Error.
int run_launch(const std::vector<std::string>& command, const std::string& signal_name);

}  // namespace tessera::app
