// app/serve.cpp — wiring: config → tokenizer → cluster → scheduler (main thread) + api + HTTP pool; signals.
#include "app/serve.h"

#include <unistd.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "app/cluster.h"
#include "app/version.h"
#include "common/check.h"
#include "coordinator/api/api.h"
#include "coordinator/api/errors.h"
#include "coordinator/http/server.h"
#include "coordinator/scheduler/scheduler.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "monitoring/log_format.h"
#include "monitoring/metrics.h"
#include "parallel/lifeline.h"

namespace tessera::app {
namespace {

std::string served_name(const coordinator::ServeConfig& cfg, const std::string& path) {
  if (!cfg.model.name.empty()) return cfg.model.name;
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.has_extension() && p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

// Signals that drain: SIGTERM, SIGINT and SIGUSR1 (what `tessera launch` and mpirun forward at once), and, under
// mpirun, the start of mpirun's own kill sequence. Open MPI 4.1 answers a SIGTERM to mpirun by sending every rank
// SIGCONT, then SIGTERM odls_base_sigkill_timeout seconds later, then SIGKILL: the coordinator drains from the
// SIGCONT on (one sent by its parent, mpirun or orted, and not the end of a Ctrl-Z stop), so that readiness goes
// false at once, and the parent's SIGTERM that follows belongs to the same sequence, not a second signal.
// The handler only writes a code to a pipe (async-signal-safe, on whatever thread the kernel picks); a watcher
// thread reads it and drains, since draining needs locks and a timer.
constexpr unsigned char kWake = 0;       // the destructor's wake-up
constexpr unsigned char kSignal = 1;     // drain, or abort when already draining
constexpr unsigned char kKillStart = 2;  // mpirun's kill sequence: drain; never an abort
int g_signal_pipe = -1;
volatile sig_atomic_t g_watch_kill_sequence = 0;  // under mpirun only
volatile sig_atomic_t g_stopped_by_tstp = 0;
volatile sig_atomic_t g_kill_sequence_seen = 0;

void send_code(unsigned char code) {
  if (g_signal_pipe >= 0) {
    const ssize_t n = ::write(g_signal_pipe, &code, 1);
    (void)n;
  }
}

extern "C" void on_signal(int sig, siginfo_t* info, void*) {
  const bool from_parent = info != nullptr && info->si_pid == ::getppid();
  if (sig == SIGTSTP) {  // a job-control stop (mpirun forwards Ctrl-Z): stop, and let the SIGCONT resume
    g_stopped_by_tstp = 1;
    ::raise(SIGSTOP);
    return;
  }
  if (sig == SIGCONT) {
    if (g_stopped_by_tstp) {
      g_stopped_by_tstp = 0;
      return;
    }
    if (!g_watch_kill_sequence || !from_parent) return;
    g_kill_sequence_seen = 1;
    send_code(kKillStart);
    return;
  }
  send_code(sig == SIGTERM && from_parent && g_kill_sequence_seen ? kKillStart : kSignal);
}

class SignalWatcher {
 public:
  SignalWatcher(coordinator::api::Api& api, coordinator::Scheduler& scheduler, double drain_timeout_s,
                bool under_mpirun)
      : api_(api), scheduler_(scheduler), drain_timeout_s_(drain_timeout_s) {
    if (::pipe(fds_) != 0) throw Error("serve: pipe() failed");
    g_signal_pipe = fds_[1];
    g_watch_kill_sequence = under_mpirun ? 1 : 0;
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    for (size_t i = 0; i < kSignals.size(); ++i) {
      if (!under_mpirun && (kSignals[i] == SIGCONT || kSignals[i] == SIGTSTP)) continue;
      sigaction(kSignals[i], &sa, &old_[i]);
      installed_[i] = true;
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~SignalWatcher() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    const ssize_t n = ::write(fds_[1], &kWake, 1);  // wakes the watcher
    (void)n;
    thread_.join();
    if (drain_.joinable()) drain_.join();
    // main's handlers again: a signal during the shutdown stops MPI waits
    for (size_t i = 0; i < kSignals.size(); ++i)
      if (installed_[i]) sigaction(kSignals[i], &old_[i], nullptr);
    g_watch_kill_sequence = 0;
    g_signal_pipe = -1;
    ::close(fds_[0]);
    ::close(fds_[1]);
  }

 private:
  static constexpr std::array<int, 5> kSignals = {SIGTERM, SIGINT, SIGUSR1, SIGCONT, SIGTSTP};

  void loop() {
    bool draining = false;
    for (;;) {
      unsigned char code = kWake;
      const ssize_t n = ::read(fds_[0], &code, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || code == kWake) return;
      if (draining) {
        if (code == kKillStart) continue;  // mpirun's SIGTERM after its SIGCONT: the same request to stop
        spdlog::warn("second signal: aborting in-flight requests");
        scheduler_.stop();
        continue;
      }
      draining = true;
      spdlog::info("{}: draining (not ready, new requests 503), up to {:.0f} s for in-flight requests",
                   code == kKillStart ? "mpirun is ending the job" : "signal", drain_timeout_s_);
      api_.begin_drain();
      scheduler_.begin_drain();
      drain_ = std::thread([this] {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, std::chrono::duration<double>(drain_timeout_s_), [this] { return done_; })) {
          spdlog::warn("drain timeout ({:.0f} s) passed: aborting in-flight requests", drain_timeout_s_);
          scheduler_.stop();
        }
      });
    }
  }

  coordinator::api::Api& api_;
  coordinator::Scheduler& scheduler_;
  double drain_timeout_s_;
  int fds_[2] = {-1, -1};
  std::array<struct sigaction, kSignals.size()> old_{};
  std::array<bool, kSignals.size()> installed_{};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_, drain_;
};

// Under mpirun, a SIGTERM to mpirun reaches this process as its kill sequence: the SIGCONT starts the drain, and
// the SIGKILL comes 2 x odls_base_sigkill_timeout seconds later (default 1): warn when that cuts the drain short.
void check_mpirun_kill_timeout(double drain_timeout_s) {
  const char* v = std::getenv("OMPI_MCA_odls_base_sigkill_timeout");
  const double t = v != nullptr ? std::atof(v) : 1.0;
  const double needed = std::ceil(drain_timeout_s / 2) + 5;
  if (t < needed)
    spdlog::warn(
        "under mpirun with odls_base_sigkill_timeout {} s: a SIGTERM to mpirun SIGKILLs the ranks after {:.0f} s, "
        "before server.drain_timeout_s ({:.0f} s) has passed; run mpirun with --mca odls_base_sigkill_timeout {:.0f}, "
        "or under `tessera launch -- mpirun ...` (which drains and exits 0)",
        v != nullptr ? v : "1 (the default)", 2 * t, drain_timeout_s, needed);
}

// The periodic stats line (logging.stats_interval_s): a thread that wakes every interval and, when requests ran
// or waited since the last line, logs rates over that interval from the scheduler's counters.
class StatsLogger {
 public:
  StatsLogger(const coordinator::Scheduler& scheduler, double interval_s) : scheduler_(scheduler) {
    if (interval_s <= 0) return;
    thread_ = std::thread([this, interval_s] { loop(interval_s); });
  }
  ~StatsLogger() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  StatsLogger(const StatsLogger&) = delete;
  StatsLogger& operator=(const StatsLogger&) = delete;

 private:
  void loop(double interval_s) {
    coordinator::SchedulerStats last = scheduler_.stats();
    auto t_last = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(interval_s), [this] { return stop_; })) {
      const coordinator::SchedulerStats now = scheduler_.stats();
      const auto t_now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(t_now - t_last).count();
      const bool busy = now.running > 0 || now.waiting > 0 || now.generation_tokens != last.generation_tokens;
      if (busy && dt > 0) {
        const uint64_t queries = now.prefix_cache_queries - last.prefix_cache_queries,
                       hits = now.prefix_cache_hits - last.prefix_cache_hits;
        spdlog::info(
            "stats: running {}, waiting {}, KV cache {:.1f}% of {} blocks, prompt {:.1f} tok/s, generation {:.1f} "
            "tok/s, prefix cache hit rate {:.1f}%, preemptions {}",
            now.running, now.waiting, 100.0 * now.kv_usage, now.n_blocks,
            static_cast<double>(now.prompt_tokens - last.prompt_tokens) / dt,
            static_cast<double>(now.generation_tokens - last.generation_tokens) / dt,
            queries > 0 ? 100.0 * static_cast<double>(hits) / static_cast<double>(queries) : 0.0,
            now.preemptions - last.preemptions);
      }
      last = now;
      t_last = t_now;
    }
  }

  const coordinator::Scheduler& scheduler_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

void add_serve_options(CLI::App& cmd, ServeCli& cli) {
  cmd.add_option("--config", cli.config, "YAML configuration (deploy/examples/cluster.yaml documents every key)");
  cmd.add_option("--model", cli.model, "model.path: a .gguf file, a Hugging Face directory, or 'default'");
  cmd.add_option("--host", cli.host, "server.host");
  cmd.add_option("--port", cli.port, "server.port")->check(CLI::Range(1, 65535));
  cmd.add_option("--tp", cli.tp, "parallel.tp (under mpirun: the number of worker processes)");
  cmd.add_option("--backend", cli.backend, "backend.kind: auto (CUDA when a GPU is visible, else CPU), cpu or cuda");
  cmd.add_option("--dtype", cli.dtype, "backend.dtype: the GPU storage type, bf16, fp16 or fp32");
  cmd.add_option("--set", cli.sets, "override any configuration key: --set scheduler.max_waiting=4 (repeatable)");
  cmd.add_flag("--print-config", cli.print_config,
               "print the effective configuration (the file, the defaults and every override) as YAML and exit");
}

coordinator::ServeConfig load_config(const ServeCli& cli) {
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const std::string& s : cli.sets) overrides.push_back(coordinator::parse_override(s));
  if (!cli.model.empty()) overrides.emplace_back("model.path", cli.model);
  if (!cli.host.empty()) overrides.emplace_back("server.host", cli.host);
  if (cli.port >= 0) overrides.emplace_back("server.port", std::to_string(cli.port));
  if (cli.tp >= 0) overrides.emplace_back("parallel.tp", std::to_string(cli.tp));
  if (!cli.backend.empty()) overrides.emplace_back("backend.kind", cli.backend);
  if (!cli.dtype.empty()) overrides.emplace_back("backend.dtype", cli.dtype);
  return coordinator::load_serve_config(cli.config, overrides);
}

std::string printable_config(const coordinator::ServeConfig& config) {
  coordinator::ServeConfig shown = config;
  if (!shown.server.api_key.empty()) shown.server.api_key = "***";
  return coordinator::dump_serve_config(shown);
}

worker::BackendOptions backend_options(const coordinator::ServeConfig& cfg) {
  worker::BackendOptions b;
  b.kind = cfg.backend.kind;
  b.dtype = cfg.backend.dtype;
  b.kv_memory_fraction = cfg.backend.kv_memory_fraction;
  b.cpu_kv_dtype = cfg.backend.cpu_kv_dtype;
  b.cpu_activations = cfg.backend.cpu_activations;
  b.cuda_graphs = cfg.backend.cuda_graphs;
  return b;
}

int run_serve(const coordinator::ServeConfig& cfg, const parallel::Topology& topo) {
  spdlog::set_level(spdlog::level::from_str(cfg.logging.level));
  monitoring::set_log_format(monitoring::parse_log_format(cfg.logging.format));
  if (!topo.in_process()) check_mpirun_kill_timeout(cfg.server.drain_timeout_s);

  // The port before the model: a busy port or a bad host fails in well under a second, not after the load. Until
  // the engine is up every route answers 503 (the process is alive, the model loading: what a startupProbe and a
  // load balancer need to see), then the API takes over. GET /metrics answers from the start (tessera_ready 0,
  // the process families), so that a scraper sees the target up while a large model loads and no "down" alert
  // fires; unless an API key guards it (it is not in server.public_routes), then it waits like the rest.
  const std::string path = resolve_model(cfg.model.path);
  const std::string name = served_name(cfg, path);
  // Buckets of the length histograms up to the configured context: the served one is min(that, the model's).
  monitoring::Metrics metrics(name, cfg.scheduler.max_ctx);
  const auto& open_routes = cfg.server.public_routes;
  const bool metrics_while_loading =
      cfg.metrics.enabled && (cfg.server.api_key.empty() ||
                              std::find(open_routes.begin(), open_routes.end(), "/metrics") != open_routes.end());
  coordinator::http::ServerOptions ho;
  ho.host = cfg.server.host;
  ho.port = cfg.server.port;
  ho.threads = cfg.server.threads;
  ho.max_body_bytes = cfg.server.max_body_bytes;
  ho.idle_timeout_s = cfg.server.idle_timeout_s;
  std::mutex handler_mu;
  std::shared_ptr<const coordinator::http::Handler> live;  // the API's handler, once it exists
  coordinator::http::Server server(
      ho, [&](coordinator::http::HttpRequest req, std::shared_ptr<coordinator::http::Exchange> ex) {
        std::shared_ptr<const coordinator::http::Handler> h;
        {
          std::lock_guard lock(handler_mu);
          h = live;
        }
        if (h) return (*h)(std::move(req), std::move(ex));
        if (metrics_while_loading && req.method == "GET" && req.path == "/metrics" && req.error_status == 0)
          return ex->respond({200, "text/plain; version=0.0.4; charset=utf-8", metrics.exposition(), {}});
        ex->respond(coordinator::api::to_response(
            coordinator::api::ApiError(coordinator::api::ErrorKind::kUnavailable, "not ready: the model is loading")));
      });
  server.start();
  spdlog::info("listening on http://{}:{} (503 until the model is loaded)", cfg.server.host, server.port());

  std::optional<tokenizer::Tokenizer> tok;
  try {
    tok = tokenizer::Tokenizer::from_model_path(path);
  } catch (const Error& e) {
    spdlog::warn("no tokenizer ({}): serving token-id prompts only", e.what());
  }
  Cluster cluster = start_cluster(topo, path, cfg.parallel.tp, cfg.parallel.step_timeout_s, backend_options(cfg));
  const auto max_ctx = static_cast<int32_t>(std::min<int64_t>(cfg.scheduler.max_ctx, cluster.config.max_ctx));

  coordinator::SchedulerOptions so;
  so.n_slots = cfg.scheduler.max_running;
  so.max_ctx = max_ctx;
  so.max_waiting = cfg.scheduler.max_waiting;
  so.token_budget = cfg.scheduler.token_budget;
  so.max_pad_fraction = cfg.scheduler.max_pad_fraction;
  so.block_size = cfg.scheduler.block_size;
  so.prefix_caching = cfg.scheduler.enable_prefix_caching;
  so.kv_bytes = static_cast<uint64_t>(cfg.backend.cpu_kv_memory_mb * 1048576.0);
  so.vocab = cluster.config.vocab;
  coordinator::Scheduler scheduler(*cluster.dispatcher, so, &metrics);
  // The workers allocate the KV cache now; on a GPU the pool may hold fewer slots than scheduler.max_running.
  const int32_t n_slots = scheduler.configure();
  if (n_slots < so.n_slots)
    spdlog::warn(
        "the KV cache holds {} slots of {} tokens, not scheduler.max_running {}: backend.kv_memory_fraction "
        "{} of the free device memory",
        n_slots, max_ctx, so.n_slots, cfg.backend.kv_memory_fraction);

  coordinator::api::ApiOptions ao;
  ao.limits.model_name = name;
  ao.limits.vocab = cluster.config.vocab;
  ao.limits.max_ctx = max_ctx;
  ao.limits.max_prompt_tokens = std::min(cfg.scheduler.max_prompt_tokens, max_ctx - 1);
  ao.limits.max_tokens_limit = std::min(cfg.scheduler.max_tokens_limit, max_ctx - 1);
  ao.limits.default_max_tokens = cfg.scheduler.default_max_tokens;
  ao.limits.max_n = std::min(cfg.scheduler.max_n, n_slots);
  ao.api_key = cfg.server.api_key;
  ao.public_routes = cfg.server.public_routes;
  ao.request_timeout_s = cfg.server.request_timeout_s;
  ao.serve_metrics = cfg.metrics.enabled;
  ao.version = app::version();
  ao.commit = app::commit();
  coordinator::api::Api api(
      ao, tok ? &*tok : nullptr,
      [&scheduler](std::shared_ptr<coordinator::Request> r, std::string* why) {
        return scheduler.submit(std::move(r), why);
      },
      &metrics);

  // On any way out of this function the HTTP threads stop before the API they call into goes away.
  struct StopServerFirst {
    coordinator::http::Server& server;
    ~StopServerFirst() { server.stop(0.0); }
  } stop_server_first{server};
  {
    std::lock_guard lock(handler_mu);
    live = std::make_shared<const coordinator::http::Handler>(api.handler());
  }
  const coordinator::SchedulerStats kv = scheduler.stats();
  spdlog::info(
      "serving '{}' (TP {}, {} sequences of up to {} tokens, KV cache {} blocks of {} tokens, prefix caching "
      "{}) on http://{}:{}",
      name, cluster.dispatcher->tp_size(), n_slots, max_ctx, kv.n_blocks, kv.block_size,
      so.prefix_caching ? "on" : "off", cfg.server.host, server.port());

  std::optional<Error> failure;
  {
    SignalWatcher watcher(api, scheduler, cfg.server.drain_timeout_s, !topo.in_process());
    // A worker that dies while the scheduler idles (a step in flight notices by itself): not ready, and every
    // request in flight or waiting ends with an error now, not when mpirun's SIGTERM arrives.
    parallel::on_peer_death([&api, &scheduler](const std::string& why) {
      api.fail(why);
      scheduler.fail(why);
    });
    api.set_ready(true);
    StatsLogger stats(scheduler, cfg.logging.stats_interval_s);
    try {
      scheduler.run();  // returns after a drain or stop()
    } catch (const Error& e) {
      failure = e;
      api.fail(e.what());
    }
    parallel::on_peer_death(nullptr);
    api.set_ready(false);
  }
  if (failure) {
    spdlog::error("the cluster failed: {}", failure->what());
    // Half a second more of listening, so that probes and load balancers read a 503 naming the failure rather
    // than a refused connection, and the in-flight error answers go out; then exit non-zero (main ends the
    // MPI job), well before mpirun's own SIGTERM (about 1 s after a rank's death) and SIGKILL (2 s).
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    server.stop(0.5);
    throw *failure;
  }
  shutdown_cluster(topo, cluster);
  server.stop(2.0);
  spdlog::info("drained: exiting");
  return 0;
}

}  // namespace tessera::app
