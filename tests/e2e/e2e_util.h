// tests/e2e/e2e_util.h — reading the reference files written by tests/python (reference.json + raw float32
// logits) and comparing tessera's outputs against them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/generate.h"
#include "worker/model/transformer.h"

namespace tessera::e2e {

struct RefCase {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> greedy_ids;
  std::vector<float> logits;  // [n_steps, vocab]
  int64_t n_steps = 0, vocab = 0;
  std::string prompt_text, greedy_text;
};

struct Reference {
  std::string dir, model, arch;
  std::vector<RefCase> cases;
};

// Reads <dir>/reference.json; fails the current test (and returns empty) when it is missing or malformed.
Reference read_reference(const std::string& dir);
// The path named by an environment variable, else the one CMake compiled in, else "" (the caller skips).
std::string env_dir(const char* var);

struct LogitStats {
  double max_abs_diff = 0.0;
  int64_t top1_mismatches = 0;
};
// Batch generation in-process (TP = 1) through the coordinator's step loop.
std::vector<coordinator::GenerateResult> generate(worker::Transformer& model,
                                                  const std::vector<coordinator::GenerateRequest>& requests);

// Teacher-forced along the reference's greedy path: prefill the prompt alone, then decode greedy_ids[t];
// compares each step's logits with the reference.
LogitStats compare_logits(worker::Transformer& model, const RefCase& c);

}  // namespace tessera::e2e
