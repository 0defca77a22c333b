// tests/e2e/test_corrupt_models.cpp — damaged checkpoints give a tessera::Error that names the file (and the
// tensor or key), never a crash: truncated safetensors and GGUF files at many lengths, a config whose shape
// disagrees with the tensors, an unknown architecture, a missing file, a directory that is not a model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "tests/e2e/e2e_util.h"
#include "worker/model/weights.h"

namespace tessera::e2e {
namespace {

namespace fs = std::filesystem;

class CorruptModel : public testing::Test {
 protected:
  void SetUp() override {
    const std::string root = env_dir("TESSERA_ORACLES");
    if (root.empty()) GTEST_SKIP() << "TESSERA_ORACLES is not set";
    src_ = root + "/llama_gqa_untied";
    tmp_ = fs::temp_directory_path() / ("tessera_corrupt_" + std::to_string(::getpid()) + "_" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
    for (const char* f : {"config.json", "model.safetensors", "model-f32.gguf"})
      fs::copy_file(src_ + "/" + f, tmp_ / f);
  }
  void TearDown() override {
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }
  // Expects load_weights(path) to throw a tessera::Error whose message contains every needle.
  static void expect_error(const std::string& path, const std::vector<std::string>& needles) {
    try {
      model::load_weights(path);
      ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
      for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  }
  static void truncate_to(const fs::path& p, uintmax_t size) { fs::resize_file(p, size); }
  std::string src_;
  fs::path tmp_;
};

TEST_F(CorruptModel, TruncatedSafetensorsAtManyLengths) {
  const auto file = tmp_ / "model.safetensors";
  const auto full = fs::file_size(file);
  for (uintmax_t len : {uintmax_t{0}, uintmax_t{4}, uintmax_t{8}, uintmax_t{100}, full / 2, full - 1}) {
    fs::copy_file(src_ + "/model.safetensors", file, fs::copy_options::overwrite_existing);
    truncate_to(file, len);
    expect_error(tmp_.string(), {"model.safetensors"});
  }
}

TEST_F(CorruptModel, TruncatedGgufAtManyLengths) {
  const auto file = tmp_ / "model-f32.gguf";
  const auto full = fs::file_size(file);
  for (uintmax_t len :
       {uintmax_t{4}, uintmax_t{8}, uintmax_t{24}, uintmax_t{200}, uintmax_t{2000}, full / 2, full - 1}) {
    fs::copy_file(src_ + "/model-f32.gguf", file, fs::copy_options::overwrite_existing);
    truncate_to(file, len);
    expect_error(file.string(), {"model-f32.gguf"});
  }
}

TEST_F(CorruptModel, ConfigShapeDisagreesWithTensorsNamesTheTensor) {
  std::ifstream in(tmp_ / "config.json");
  auto j = nlohmann::json::parse(in);
  in.close();
  j["intermediate_size"] = j["intermediate_size"].get<int>() + 32;
  std::ofstream(tmp_ / "config.json") << j.dump();
  expect_error(tmp_.string(), {"mlp.gate_proj.weight", "shape"});
}

TEST_F(CorruptModel, UnknownArchitectureNamesTheKey) {
  std::ifstream in(tmp_ / "config.json");
  auto j = nlohmann::json::parse(in);
  in.close();
  j["model_type"] = "bert";
  std::ofstream(tmp_ / "config.json") << j.dump();
  expect_error(tmp_.string(), {"config.json", "model_type", "bert"});
}

TEST_F(CorruptModel, MissingTensorNamesTheTensor) {
  // A config that asks for one more layer than the checkpoint holds.
  std::ifstream in(tmp_ / "config.json");
  auto j = nlohmann::json::parse(in);
  in.close();
  j["num_hidden_layers"] = j["num_hidden_layers"].get<int>() + 1;
  std::ofstream(tmp_ / "config.json") << j.dump();
  expect_error(tmp_.string(), {"model.layers.2.input_layernorm.weight"});
}

TEST_F(CorruptModel, MissingPathsAndNonModels) {
  expect_error((tmp_ / "nope.gguf").string(), {"nope.gguf"});
  std::ofstream(tmp_ / "junk.bin") << "this is not a model";
  expect_error((tmp_ / "junk.bin").string(), {"junk.bin"});
  fs::create_directories(tmp_ / "empty");
  expect_error((tmp_ / "empty").string(), {"config.json"});
}

}  // namespace
}  // namespace tessera::e2e
