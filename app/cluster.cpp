// app/cluster.cpp — model loading (in-process) or the MPI dispatcher (workers), and `default` model lookup.
#include "app/cluster.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "common/check.h"
#include "parallel/mpi_dispatcher.h"
#include "worker/model/weights.h"

namespace tessera::app {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

std::string resolve_model(const std::string& model) {
  if (model != "default") return model;
  std::string cache;
  if (const char* c = std::getenv("TESSERA_CACHE"); c && *c) {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    cache = std::string(x) + "/tessera";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    cache = std::string(h) + "/.cache/tessera";
  } else {
    throw Error("--model default: neither TESSERA_CACHE nor HOME is set");
  }
  const std::string path = cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return path;
  }
  throw Error("--model default: " + path + " does not exist; run scripts/fetch-model.sh first");
}

Cluster start_cluster(const parallel::Topology& topo, const std::string& path, int tp_flag, double step_timeout_s,
                      const worker::BackendOptions& backend) {
  Cluster c;
  backend.validate();
  if (topo.in_process()) {
    if (tp_flag > 1)
      throw Error("--tp " + std::to_string(tp_flag) + " needs " + std::to_string(tp_flag) +
                  " worker processes: run it as mpirun -np " + std::to_string(tp_flag + 1) + " tessera ...");
    const auto t0 = Clock::now();
    worker::LoadRequest req;
    req.path = path;
    req.options = backend;
    c.model = worker::load_model(req);
    c.config = c.model->runner().config();
    spdlog::info("loaded {} ({}, {} layers, hidden {}) in {:.0f} ms: {}", path, model::arch_name(c.config.arch),
                 c.config.n_layers, c.config.hidden, ms_since(t0), c.model->describe());
    c.dispatcher = std::make_unique<worker::LocalDispatcher>(c.model->runner());
    return c;
  }
  const int tp = topo.tp_size();
  if (tp_flag != 0 && tp_flag != tp)
    throw Error("--tp " + std::to_string(tp_flag) + " but mpirun started " + std::to_string(topo.world_size) +
                " processes (1 coordinator + " + std::to_string(tp) + " workers): use mpirun -np " +
                std::to_string(tp_flag + 1));
  c.config = model::read_model_config(path);
  parallel::check_tp_size(model::shard_shape(c.config), tp);
  c.dispatcher = std::make_unique<parallel::MpiDispatcher>(topo.world, tp, step_timeout_s);
  spdlog::info("cluster: coordinator + {} tensor-parallel workers serving {} (backend.kind {})", tp, path,
               backend.kind);
  return c;
}

void shutdown_cluster(const parallel::Topology& topo, Cluster& cluster) {
  if (topo.in_process()) return;
  parallel::StepPlan bye;
  bye.kind = parallel::StepPlan::Kind::kShutdown;
  cluster.dispatcher->run(bye);
}

}  // namespace tessera::app
