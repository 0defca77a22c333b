// tests/e2e/e2e_util.h — reading the reference files written by tests/python (reference.json + raw float32
// logits) and comparing tessera's outputs against them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/generate.h"
#include "tests/e2e/reference.h"
#include "worker/model/transformer.h"

namespace tessera::e2e {

// The path named by an environment variable, else the one CMake compiled in, else "" (the caller skips).
std::string env_dir(const char* var);

struct LogitStats {
  double max_abs_diff = 0.0;
  int64_t top1_mismatches = 0;
};
// Batch generation in-process (TP = 1) through the coordinator's step loop.
std::vector<coordinator::GenerateResult> generate(worker::Transformer& model,
                                                  const std::vector<coordinator::GenerateRequest>& requests,
                                                  const coordinator::BatchOptions& options = {});

// Teacher-forced along the reference's greedy path: prefill the prompt alone, then decode greedy_ids[t];
// compares each step's logits with the reference.
LogitStats compare_logits(worker::Transformer& model, const RefCase& c);

}  // namespace tessera::e2e
