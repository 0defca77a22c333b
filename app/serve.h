// app/serve.h — `tessera serve`: the OpenAI-compatible server on the coordinator (world rank 0).
//
// Configuration: the YAML file of --config (coordinator/config.h), then every --set key=value, then the
// shortcuts --model, --host, --port, --tp, --backend, --dtype. The coordinator loads the tokenizer, starts the cluster
// (app/cluster.h), runs the Scheduler's step loop on the main thread (the one that owns the Dispatcher: MPI
// is initialized FUNNELED) and HTTP on its own pool of threads.
// SIGTERM / SIGINT: readiness false, new completions 503 + Retry-After, in-flight requests get
// server.drain_timeout_s to finish (then they are aborted), the workers are shut down, exit 0.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "coordinator/config.h"
#include "parallel/bootstrap.h"
#include "worker/backend.h"

namespace CLI {
class App;
}

namespace tessera::app {

struct ServeCli {
  std::string config;  // YAML path ("" → defaults)
  std::string model, host, backend, dtype;
  int port = -1, tp = -1;         // -1: not given
  std::vector<std::string> sets;  // key=value
  bool print_config = false;      // print the effective configuration and exit
};

// Registers the `serve` subcommand's options on `cmd`.
void add_serve_options(CLI::App& cmd, ServeCli& cli);
// The configuration every rank agrees on. Throws tessera::Error naming the file and the key.
coordinator::ServeConfig load_config(const ServeCli& cli);
// The effective configuration as YAML (every key; a set server.api_key printed as "***"), what --print-config shows.
std::string printable_config(const coordinator::ServeConfig& config);
// The config's backend section as the worker's loader takes it.
worker::BackendOptions backend_options(const coordinator::ServeConfig& config);
// The coordinator's side; returns the exit code. Throws tessera::Error when the start fails or the cluster
// fails while serving.
int run_serve(const coordinator::ServeConfig& config, const parallel::Topology& topo);

}  // namespace tessera::app
