// app/cluster.h — the model behind the coordinator's Dispatcher: loaded in-process at TP = 1, or TP worker
// processes under mpirun (world ranks 1..TP). Shared by `tessera generate` and `tessera serve`.
#pragma once

#include <memory>
#include <string>

#include "parallel/bootstrap.h"
#include "parallel/transport.h"
#include "worker/backend.h"
#include "worker/engine.h"
#include "worker/model/config.h"

namespace tessera::app {

struct Cluster {
  std::unique_ptr<worker::LoadedModel> model;  // in-process only (TP 1 without mpirun)
  std::unique_ptr<parallel::Dispatcher> dispatcher;
  model::ModelConfig config;
};

// `default` is the SmolLM2 GGUF that scripts/fetch-model.sh puts in the cache; other paths are returned as is.
std::string resolve_model(const std::string& model);

// Throws tessera::Error when --tp does not match the processes mpirun started, or the model cannot be split
// that way (naming the sizes that work).
// In-process, the model is loaded here onto `backend` (worker/backend.h); under mpirun the workers load it.
Cluster start_cluster(const parallel::Topology& topo, const std::string& path, int tp_flag, double step_timeout_s,
                      const worker::BackendOptions& backend);

// Under mpirun: tells the workers to exit (their run_worker returns). A no-op in-process.
void shutdown_cluster(const parallel::Topology& topo, Cluster& cluster);

}  // namespace tessera::app
