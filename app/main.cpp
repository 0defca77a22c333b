// app/main.cpp — the `tessera` command: generate, tokenize, serve (app/serve.cpp) and bench serve.
//
// Plain text goes to stdout, logs to stderr.  Bad input (a missing model, a corrupt file, a prompt longer
// than the context) is one clear line on stderr and exit code 2; a bug aborts.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

#include "app/cluster.h"
#include "app/launch.h"
#include "app/version.h"
#include "app/serve.h"
#include "common/check.h"
#include "coordinator/bench/bench_serve_cli.h"
#include "coordinator/generate.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "kernels/cpu/quant.h"
#include "monitoring/log_format.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_dispatcher.h"
#include "worker/engine.h"
#include "worker/model/weights.h"
#include "worker/worker_loop.h"

namespace {

using Clock = std::chrono::steady_clock;
using tessera::Error;

double peak_rss_mb() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

using tessera::app::resolve_model;

std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag = "--prompt-ids") {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("range");
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw Error(flag + ": '" + item + "' is not a token id");
    }
  }
  return ids;
}

// --logit-bias TOKEN=BIAS (repeatable), the API's logit_bias: distinct tokens, bias in [-100, 100], at most 300.
std::vector<tessera::LogitBias> parse_logit_bias(const std::vector<std::string>& items) {
  std::vector<tessera::LogitBias> out;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    const std::vector<int32_t> id = parse_ids(item.substr(0, eq), "--logit-bias");
    double bias = 0;
    try {
      size_t used = 0;
      if (eq == std::string::npos) throw std::invalid_argument("no =");
      bias = std::stod(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error("--logit-bias: expected TOKEN=BIAS (e.g. 1234=-100), got '" + item + "'");
    }
    if (id.size() != 1 || !(std::fabs(bias) <= tessera::kMaxLogitBiasValue))
      throw Error("--logit-bias: '" + item + "': one token id and a bias in [-100, 100]");
    for (const auto& e : out)
      if (e.token == id[0]) throw Error("--logit-bias: token " + std::to_string(id[0]) + " given twice");
    out.push_back({id[0], static_cast<float>(bias)});
  }
  if (static_cast<int32_t>(out.size()) > tessera::kMaxLogitBias)
    throw Error("--logit-bias: at most " + std::to_string(tessera::kMaxLogitBias) + " entries");
  return out;
}

struct GenerateOptions {
  std::string model = "default";
  std::vector<std::string> prompts;
  std::vector<std::string> prompt_ids;
  int32_t max_tokens = 16;
  float temperature = 0.0f, top_p = 1.0f, presence_penalty = 0.0f, frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f, min_p = 0.0f;
  int32_t top_k = -1, min_tokens = 0;
  std::vector<std::string> logit_bias, stop_token_ids;
  std::optional<uint64_t> seed;
  std::string output = "text";
  bool chat = false, ignore_eos = false;
  int tp = 0;                  // 0: whatever mpirun started (world size - 1), 1 without mpirun
  double step_timeout_s = 60;  // a step that takes longer means a rank is gone
  tessera::worker::BackendOptions backend;
  tessera::coordinator::BatchOptions batch;
  double cpu_kv_memory_mb = 0;
  bool no_prefix_caching = false;
};

using tessera::app::Cluster;
using tessera::app::start_cluster;

int run_generate(const GenerateOptions& o, const tessera::parallel::Topology& topo) {
  const std::string path = resolve_model(o.model);
  std::optional<tessera::tokenizer::Tokenizer> tok;
  if (o.prompt_ids.empty() || tessera::model::is_gguf_path(path)) {
    tok = tessera::tokenizer::Tokenizer::from_model_path(path);
  }
  std::vector<tessera::coordinator::GenerateRequest> reqs;
  tessera::SamplingParams sp;
  sp.temperature = o.temperature;
  sp.top_p = o.top_p;
  sp.top_k = o.top_k;
  sp.presence_penalty = o.presence_penalty;
  sp.frequency_penalty = o.frequency_penalty;
  sp.repetition_penalty = o.repetition_penalty;
  sp.min_p = o.min_p;
  sp.min_tokens = o.min_tokens;
  sp.seed = o.seed ? *o.seed : std::random_device{}();
  sp.validate();  // the ranges of common/sampling.h, named as the sampler names them
  std::vector<int32_t> stop_ids;
  if (tok && !o.ignore_eos) stop_ids = tok->stop_ids();
  for (const std::string& list : o.stop_token_ids)
    for (int32_t id : parse_ids(list, "--stop-token-ids"))
      stop_ids.push_back(id);  // as the API's stop_token_ids: also with --ignore-eos
  const std::vector<tessera::LogitBias> logit_bias = parse_logit_bias(o.logit_bias);
  auto add = [&](std::vector<int32_t> ids) {
    tessera::coordinator::GenerateRequest r;
    r.prompt = std::move(ids);
    r.max_tokens = o.max_tokens;
    r.sampling = sp;
    r.stop_ids = stop_ids;
    r.logit_bias = logit_bias;
    reqs.push_back(std::move(r));
  };
  for (const auto& ids : o.prompt_ids) add(parse_ids(ids));
  for (const auto& p : o.prompts) {
    if (!tok) throw Error(path + ": no tokenizer.json next to the model: use --prompt-ids");
    if (o.chat) {
      add(tok->encode(tok->apply_chat_template({{"user", p}}, true), false, true));
    } else {
      add(tok->encode(p, true, false));
    }
  }
  if (reqs.empty()) throw Error("give --prompt or --prompt-ids");

  Cluster cluster = start_cluster(topo, path, o.tp, o.step_timeout_s, o.backend);
  // Stream a single plain-text generation as it is produced; batches print at the end.
  const bool stream = o.output == "text" && reqs.size() == 1 && tok;
  std::optional<tessera::tokenizer::IncrementalDecoder> dec;
  if (stream) dec.emplace(*tok);
  auto t0 = Clock::now();
  double t_first = 0.0;
  size_t n_generated = 0;
  tessera::coordinator::GenerateStats stats;
  auto on_token = [&](size_t, int32_t id) {
    if (n_generated++ == 0) t_first = ms_since(t0);
    if (stream) std::cout << dec->push(id) << std::flush;
  };
  tessera::coordinator::BatchOptions batch = o.batch;
  batch.prefix_caching = !o.no_prefix_caching;
  batch.kv_bytes = static_cast<uint64_t>(o.cpu_kv_memory_mb * 1048576.0);
  auto results = tessera::coordinator::generate(*cluster.dispatcher, {cluster.config.vocab, cluster.config.max_ctx},
                                                reqs, on_token, &stats, batch);
  const double t_total = ms_since(t0);
  size_t n_prompt = 0;
  for (const auto& r : reqs) n_prompt += r.prompt.size();
  const size_t n_decode = n_generated - reqs.size();  // tokens produced by decode steps
  spdlog::info(
      "prefill: {} prompt tokens in {} rows, {:.1f} ms ({:.1f} tok/s); decode: {} tokens in {:.1f} ms "
      "({:.1f} tok/s); TP {}",
      n_prompt, reqs.size(), t_first, n_prompt / (t_first / 1e3), n_decode, t_total - t_first,
      n_decode / ((t_total - t_first) / 1e3), cluster.dispatcher->tp_size());
  if (stats.steps > 0 && cluster.dispatcher->tp_size() > 1)
    spdlog::info("workers: {} steps, {:.2f} ms/step, all-reduce + gather {:.2f} ms/step ({:.0f}% of the step)",
                 stats.steps, 1e3 * stats.step_seconds / stats.steps, 1e3 * stats.collective_seconds / stats.steps,
                 100.0 * stats.collective_seconds / std::max(stats.step_seconds, 1e-9));
  spdlog::info("coordinator peak RSS {:.0f} MB", peak_rss_mb());
  tessera::app::shutdown_cluster(topo, cluster);
  if (stream) {
    std::cout << dec->flush() << "\n";
    return 0;
  }
  for (const auto& r : results) {
    const std::string text = tok ? tok->decode(r.tokens, true) : "";
    if (o.output == "json") {
      nlohmann::json j = {{"token_ids", r.tokens},
                          {"text", text},
                          {"finish_reason", r.finish_reason},
                          {"cached_tokens", r.cached_tokens}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << text << "\n";
    }
  }
  return 0;
}

int run_tokenize(const std::string& model, const std::string& text, bool add_special) {
  const auto tok = tessera::tokenizer::Tokenizer::from_model_path(resolve_model(model));
  std::cout << nlohmann::json(tok.encode(text, add_special, true)).dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT when it is loaded, before main. Workers must not sleep
  // between the ops of one step (passive waiting: a futex wake per op; decode 26-34 tok/s on SmolLM2, 2 cores) and
  // nothing may spin while idle (libgomp's unbounded ACTIVE policy burns the cores the next GEMM or the HTTP
  // threads need). So unless the user chose either, start again with a bounded spin: ACTIVE for 100000 spins
  // (about 3 ms on an AMD EPYC core; ops of a step are microseconds apart), then a futex sleep. Measured
  // (docs/benchmarks.md): decode 50-56 tok/s, and an idle server uses no CPU after its last step.
  // OpenBLAS picks its kernels when it is loaded too, and runs its AVX2 ones on the AVX-512 CPUs it does not know
  // (kernels/cpu/quant.h: preferred_openblas_core); unless the user chose, start again with the AVX-512 ones.
  bool restart = false;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr && std::getenv("GOMP_SPINCOUNT") == nullptr) {
    ::setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
    ::setenv("GOMP_SPINCOUNT", "100000", 1);
    restart = true;
  }
  if (const char* core = tessera::ops::preferred_openblas_core(); core && std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    ::setenv("OPENBLAS_CORETYPE", core, 1);
    restart = true;
  }
  if (restart) ::execv("/proc/self/exe", argv);  // returns only on failure: then carry on with the defaults
  spdlog::set_default_logger(spdlog::stderr_color_mt("tessera"));
  tessera::monitoring::set_log_format(tessera::monitoring::LogFormat::kText);
  if (const char* lvl = std::getenv("TESSERA_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(lvl));

  CLI::App app{"tessera: a tensor-parallel serving cluster for transformer language models"};
  app.set_version_flag("--version",
                       std::string("tessera ") + tessera::app::version() + " (commit " + tessera::app::commit() + ")");
  app.require_subcommand(1);

  GenerateOptions g;
  auto* gen = app.add_subcommand("generate", "generate text from a prompt");
  gen->add_option("--model", g.model, "a .gguf file, a Hugging Face directory, or 'default' (SmolLM2-135M)");
  gen->add_option("--prompt", g.prompts, "prompt text (repeat for a pre-padded batch)");
  gen->add_option("--prompt-ids", g.prompt_ids, "prompt as comma-separated token ids (repeat for a batch)");
  gen->add_option("--max-tokens", g.max_tokens, "tokens to generate")->check(CLI::Range(1, 1 << 20));
  // The sampling options' ranges are checked by SamplingParams::validate (common/sampling.h), as for the API.
  gen->add_option("--temperature", g.temperature, "0 = greedy");
  gen->add_option("--top-p", g.top_p, "(0, 1]");
  gen->add_option("--top-k", g.top_k, "-1 or 0 = off");
  gen->add_option("--presence-penalty", g.presence_penalty, "[-2, 2]");
  gen->add_option("--frequency-penalty", g.frequency_penalty, "[-2, 2]");
  gen->add_option("--repetition-penalty", g.repetition_penalty, "(0, 2], over prompt and generated tokens; 1 = off");
  gen->add_option("--min-p", g.min_p, "[0, 1]; 0 = off");
  gen->add_option("--min-tokens", g.min_tokens, "no end-of-sequence token before this many tokens");
  gen->add_option("--logit-bias", g.logit_bias, "TOKEN=BIAS, bias in [-100, 100], added to the token's logit (repeat)");
  gen->add_option("--stop-token-ids", g.stop_token_ids, "comma-separated token ids that also end a sequence");
  gen->add_option("--seed", g.seed, "sampling seed (default: random)");
  gen->add_option("--output", g.output, "text or json")->check(CLI::IsMember({"text", "json"}));
  gen->add_flag("--chat", g.chat, "wrap the prompt in the model's chat template as a user message");
  gen->add_flag("--ignore-eos", g.ignore_eos, "do not stop at end-of-sequence tokens");
  gen->add_option("--tp", g.tp, "tensor-parallel size (under mpirun: the number of worker processes)")
      ->check(CLI::Range(0, 1024));
  gen->add_option("--step-timeout", g.step_timeout_s, "seconds a step may take before the cluster is declared dead");
  gen->add_option("--backend", g.backend.kind, "auto (CUDA when a GPU is visible, else CPU), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  gen->add_option("--dtype", g.backend.dtype, "GPU storage type: bf16, fp16 or fp32 (the CPU computes in fp32)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  gen->add_option("--kv-memory-fraction", g.backend.kv_memory_fraction,
                  "share of the free GPU memory the KV cache may take")
      ->check(CLI::Range(0.01, 1.0));
  gen->add_option("--cpu-kv-dtype", g.backend.cpu_kv_dtype, "the CPU backend's KV cache: fp32, bf16 or fp16")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  gen->add_option("--cpu-activations", g.backend.cpu_activations,
                  "the CPU products with quantized weights: fp32 (exact) or int8 (approximate, faster)")
      ->check(CLI::IsMember({"fp32", "int8"}));
  gen->add_flag("--cuda-graphs", g.backend.cuda_graphs, "replay decode steps as CUDA graphs (GPU, TP 1)");
  gen->add_option("--max-running", g.batch.max_running,
                  "at most this many sequences at once (the rest wait; 0 = all; as scheduler.max_running)")
      ->check(CLI::Range(0, 65536));
  gen->add_option("--block-size", g.batch.block_size, "tokens per KV block (scheduler.block_size)")
      ->check(CLI::Range(1, 65536));
  gen->add_flag("--no-prefix-caching", g.no_prefix_caching, "do not reuse cached prompt prefixes");
  gen->add_option("--cpu-kv-memory-mb", g.cpu_kv_memory_mb, "the CPU KV cache's size in MiB (0: the batch's need)")
      ->check(CLI::Range(0.0, 1073741824.0));

  std::string tk_model = "default", tk_text;
  bool tk_special = false;
  auto* tkz = app.add_subcommand("tokenize", "print the token ids of a text as JSON");
  tkz->add_option("--model", tk_model);
  tkz->add_option("--text", tk_text)->required();
  tkz->add_flag("--add-special", tk_special, "prepend BOS when the model wants one");

  tessera::app::ServeCli sv;
  auto* srv = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API (mpirun -np 1+TP for TP > 1)");
  tessera::app::add_serve_options(*srv, sv);

  // tessera bench serve: a vLLM-style load generator against a running server (no model, no MPI work).
  tessera::bench::BenchServeOptions bs;
  std::string bs_rate = "inf";
  auto* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  auto* bench_serve = bench->add_subcommand("serve", "load-test an OpenAI-compatible server (vLLM's serving method)");
  tessera::bench::add_bench_serve_options(*bench_serve, bs, bs_rate);

  std::vector<std::string> launch_cmd;
  std::string launch_signal = "USR1";
  auto* launch = app.add_subcommand(
      "launch", "run a command (mpirun ... tessera serve) so that SIGTERM drains it and exits 0 (a pod's PID 1)");
  launch->add_option("--signal", launch_signal, "what the first SIGTERM/SIGINT becomes for the command")
      ->check(CLI::IsMember({"USR1", "USR2", "TERM", "INT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT"}));
  launch->add_option("command", launch_cmd, "the command and its arguments, after --")->required();

  CLI11_PARSE(app, argc, argv);
  if (launch->parsed()) {  // before MPI: `launch` only starts mpirun
    try {
      for (const std::string& extra : launch->remaining())
        if (!(launch_cmd.empty() && extra == "--")) launch_cmd.push_back(extra);
      return tessera::app::run_launch(launch_cmd, launch_signal);
    } catch (const tessera::Error& e) {
      spdlog::error("{}", e.what());
      return 2;
    }
  }
  tessera::parallel::Topology topo;
  try {
    topo = tessera::parallel::bootstrap(&argc, &argv);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  std::signal(SIGTERM, [](int) { tessera::parallel::request_stop(); });
  std::signal(SIGINT, [](int) { tessera::parallel::request_stop(); });
  int code = 1;
  if (!topo.is_coordinator()) {
    // A worker process: only cluster commands have work for it.
    code = gen->parsed() ? tessera::worker::run_worker(topo, resolve_model(g.model), g.backend) : 0;
    if (srv->parsed() && !sv.print_config) {
      // The coordinator drains on SIGTERM and then shuts the workers down: they must outlive the drain.
      // SIGUSR1 is the drain request that mpirun forwards to every rank (tessera launch sends it).
      std::signal(SIGTERM, SIG_IGN);
      std::signal(SIGUSR1, SIG_IGN);
      try {
        const auto cfg = tessera::app::load_config(sv);
        tessera::monitoring::set_log_format(tessera::monitoring::parse_log_format(cfg.logging.format));
        code = tessera::worker::run_worker(topo, resolve_model(cfg.model.path), tessera::app::backend_options(cfg));
      } catch (const tessera::Error& e) {
        spdlog::error("{}", e.what());
        code = 2;
      }
    }
    tessera::parallel::finalize(topo);
    return code;
  }
  try {
    if (gen->parsed()) code = run_generate(g, topo);
    if (tkz->parsed()) code = run_tokenize(tk_model, tk_text, tk_special);
    if (bench_serve->parsed()) {
      try {
        bs.request_rate = tessera::bench::parse_request_rate(bs_rate);
      } catch (const std::invalid_argument& e) {
        throw Error(e.what());
      }
      code = tessera::bench::run_bench_serve(bs);
    }
    if (srv->parsed() && sv.print_config) {
      std::cout << tessera::app::printable_config(tessera::app::load_config(sv)) << std::flush;
      code = 0;
    } else if (srv->parsed()) {
      code = tessera::app::run_serve(tessera::app::load_config(sv), topo);
    }
  } catch (const tessera::Error& e) {
    spdlog::error("{}", e.what());
    // Under mpirun the workers may be mid-load or mid-step: end the whole job, non-zero.
    if (!topo.in_process()) tessera::parallel::abort_job(topo, 2);
    return 2;
  }
  tessera::parallel::finalize(topo);
  return code;
}
