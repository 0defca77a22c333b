// coordinator/config.h — the serving configuration: one YAML file plus command-line overrides.
//
// In: a YAML file (sections model, parallel, backend, server, scheduler, metrics, logging) and dotted-key
// overrides ("server.port" = "9000") from `--set key=value` and the CLI shortcuts (--model, --port, ...).
// Out: a validated ServeConfig. Every key has a default (below; deploy/examples/cluster.yaml documents each);
// an unknown key at any level, a value of the wrong type, out of range, or inconsistent with another key
// (max_prompt_tokens > max_ctx, ...) throws tessera::Error naming the file (or "--set") and the key.
// A list key (server.public_routes) is a YAML sequence in the file; in an override, "[a, b]" or "a,b" ("" or
// "[]" for none).
// Overrides are applied after the file, so they win.
// Thread-safety: pure functions; a ServeConfig is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tessera::coordinator {

struct ServeConfig {
  struct {
    std::string path = "default";  // .gguf file, Hugging Face directory, or "default" (SmolLM2-135M-Instruct)
    std::string name;              // served model id ("" → the file stem)
  } model;
  struct {
    int tp = 0;                  // tensor-parallel size; 0: from mpirun (world size - 1), 1 without mpirun
    double step_timeout_s = 60;  // a step slower than this means a rank is gone: fail fast
  } parallel;
  struct {
    std::string kind = "auto";             // auto | cpu | cuda
    std::string dtype = "bf16";            // bf16 | fp16 | fp32 (GPU storage type; the CPU backend computes in fp32)
    double kv_memory_fraction = 0.9;       // fraction of free accelerator memory for the KV cache, (0, 1]
    std::string cpu_kv_dtype = "fp32";     // fp32 | bf16 | fp16: the CPU backend's KV cache (the GPU's follows dtype)
    std::string cpu_activations = "fp32";  // fp32 | int8: the CPU products with quantized weights
    double cpu_kv_memory_mb = 0;           // the CPU KV cache's size (MiB); 0: max_running sequences of max_ctx
    bool cuda_graphs = false;              // decode steps replayed as CUDA graphs (TP 1; off until measured on a GPU)
  } backend;
  struct {
    std::string host = "127.0.0.1";
    int port = 8000;
    int threads = 4;      // HTTP I/O threads
    std::string api_key;  // "" → no authentication
    // Routes that need no API key when api_key is set; every other route needs it.
    std::vector<std::string> public_routes = {"/health", "/ready", "/metrics", "/version"};
    int64_t max_body_bytes = 1 << 20;  // larger bodies → 413
    double request_timeout_s = 600;    // per request, from arrival; then it is aborted
    double drain_timeout_s = 30;       // SIGTERM: in-flight requests get this long to finish
    double idle_timeout_s = 60;        // a request must arrive whole this long after the connection is idle (408)
  } server;
  struct {
    int max_waiting = 256;              // queue bound; full → 429 + Retry-After
    int max_running = 16;               // concurrent sequences (their KV lives in blocks)
    int max_ctx = 2048;                 // tokens per slot (prompt + generated)
    int max_prompt_tokens = 2048;       // ≤ max_ctx
    int max_tokens_limit = 2048;        // the largest max_tokens a request may ask for, ≤ max_ctx
    int default_max_tokens = 16;        // max_tokens when a request gives none, ≤ max_tokens_limit
    int max_n = 8;                      // the largest n
    int token_budget = 4096;            // tokens per step (prefill group incl. padding + decodes)
    double max_pad_fraction = 0.25;     // a prefill group's pad tokens / its total tokens stay ≤ this, [0, 1)
    int block_size = 16;                // tokens per KV block, [1, 65536]
    bool enable_prefix_caching = true;  // reuse the KV of cached prompt prefixes (whole blocks)
  } scheduler;
  struct {
    bool enabled = true;  // serve GET /metrics
  } metrics;
  struct {
    std::string level = "info";    // trace | debug | info | warn | error | critical | off
    std::string format = "text";   // text (for a terminal) | json (one object per line, for log collectors)
    double stats_interval_s = 10;  // a stats line (throughput, queue, KV cache) this often while busy; 0: never
  } logging;
};

// yaml_path "" → defaults. overrides: {"server.port", "9000"} pairs (from --set key=value and the CLI shortcuts).
// Unknown keys and bad values throw tessera::Error naming the file and the key ("cluster.yaml: unknown key
// 'server.prot'", "server.port: must be in [1, 65535], got 70000").
ServeConfig load_serve_config(const std::string& yaml_path,
                              const std::vector<std::pair<std::string, std::string>>& overrides);

// Parses "key=value" (as given to --set) into a pair; throws tessera::Error when there is no '=' or no key.
std::pair<std::string, std::string> parse_override(const std::string& key_equals_value);

// Every key, dotted ("server.port"), in file order.
std::vector<std::string> serve_config_keys();

// The configuration as a YAML document that load_serve_config reads back to an equal ServeConfig
// (for --print-config and the logs).
std::string dump_serve_config(const ServeConfig& config);

bool operator==(const ServeConfig& a, const ServeConfig& b);

}  // namespace tessera::coordinator
