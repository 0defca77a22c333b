// tests/e2e/reference.h — the reference files written by tests/python (reference.json + raw little-endian
// float32 logits [n_steps, vocab] per case), read by the end-to-end, tensor-parallel and GPU tests alike.
// Header-only so that engine-only builds (tests/gpu, no coordinator) can use it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

// Reads <dir>/reference.json; fails the current test (and returns what it read) when a file is missing or short.
inline Reference read_reference(const std::string& dir) {
  Reference r;
  r.dir = dir;
  std::ifstream in(dir + "/reference.json");
  if (!in) {
    ADD_FAILURE() << "cannot open " << dir << "/reference.json";
    return r;
  }
  const auto j = nlohmann::json::parse(in);
  r.model = j.value("model", "");
  r.arch = j.value("arch", "");
  for (const auto& jc : j.at("cases")) {
    RefCase c;
    c.prompt_ids = jc.at("prompt_ids").get<std::vector<int32_t>>();
    c.greedy_ids = jc.at("greedy_ids").get<std::vector<int32_t>>();
    c.n_steps = jc.at("n_steps").get<int64_t>();
    c.vocab = jc.at("vocab").get<int64_t>();
    c.prompt_text = jc.value("prompt_text", "");
    c.greedy_text = jc.value("greedy_text", "");
    std::ifstream lf(dir + "/" + jc.at("logits_file").get<std::string>(), std::ios::binary);
    c.logits.resize(static_cast<size_t>(c.n_steps * c.vocab));
    lf.read(reinterpret_cast<char*>(c.logits.data()), static_cast<std::streamsize>(c.logits.size() * sizeof(float)));
    if (!lf) ADD_FAILURE() << "short logits file in " << dir;
    r.cases.push_back(std::move(c));
  }
  return r;
}

}  // namespace tessera::e2e
