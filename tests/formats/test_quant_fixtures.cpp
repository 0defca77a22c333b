// tests/worker/test_quant_fixtures.cpp — the model file readers against implementations nobody here wrote:
// fixtures from tests/python/make_quant_fixtures.py (PyPI gguf's GGUFWriter + gguf.quants.dequantize;
// safetensors.torch), located by $TESSERA_QUANT_FIXTURES.
#include <gtest/gtest.h>

#include "tests/formats/formats_util.h"

using namespace tessera::formats_test;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Against the PyPI gguf / safetensors packages (fixtures from tests/python/make_quant_fixtures.py)

std::vector<float> read_f32_file(const std::string& path) {
  const auto b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

void compare_exact(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int64_t n_wrong = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const float tol = 1e-6f * std::fabs(ref[i]);
    if (!(std::fabs(got[i] - ref[i]) <= tol)) {
      if (n_wrong < 5) ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", reference " << ref[i];
      ++n_wrong;
    }
  }
  EXPECT_EQ(n_wrong, 0) << what << ": " << n_wrong << " of " << ref.size() << " elements differ";
}

class QuantFixtures : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* d = std::getenv("TESSERA_QUANT_FIXTURES");
    if (d == nullptr || *d == '\0') {
      GTEST_SKIP() << "TESSERA_QUANT_FIXTURES is not set: run tests/python/make_quant_fixtures.py OUTDIR with the "
                      "venv python (gguf 0.10.0) and point TESSERA_QUANT_FIXTURES at OUTDIR (ctest does this when "
                      "configured with -DTESSERA_PYTHON=...)";
    }
    dir_ = d;
    std::ifstream f(dir_ + "/fixtures.json");
    ASSERT_TRUE(f.good()) << dir_ << "/fixtures.json is missing: did make_quant_fixtures.py run?";
    manifest_ = nlohmann::json::parse(f);
  }
  std::string dir_;
  nlohmann::json manifest_;
};

TEST_F(QuantFixtures, GgufTensorsMatchGgufPackage) {
  auto f = GgufFile::open(dir_ + "/" + manifest_["gguf"]["file"].get<std::string>());
  std::set<std::string> types_seen;
  ASSERT_GE(manifest_["gguf"]["tensors"].size(), 6u);
  for (const auto& t : manifest_["gguf"]["tensors"]) {
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    const TensorInfo& ti = f->info(name);
    EXPECT_EQ(ti.shape, t["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(std::string(dtype_name(ti.dtype)), t["type"].get<std::string>());
    types_seen.insert(dtype_name(ti.dtype));
    const auto ref = read_f32_file(dir_ + "/" + t["ref"].get<std::string>());
    compare_exact(f->read_all(name), ref, name);
    check_sub_blocks(*f, name);
  }
  EXPECT_EQ(types_seen, (std::set<std::string>{"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"}));
}

TEST_F(QuantFixtures, GgufMetadataMatchesGgufPackage) {
  auto f = GgufFile::open(dir_ + "/" + manifest_["gguf"]["file"].get<std::string>());
  int n_checked = 0;
  for (const auto& m : manifest_["gguf"]["metadata"]) {
    const std::string key = m["key"], type = m["type"];
    SCOPED_TRACE(key + " (" + type + ")");
    ASSERT_TRUE(f->has_key(key));
    const auto& v = m["value"];
    if (type == "string") {
      EXPECT_EQ(f->get_string(key), v.get<std::string>());
    } else if (type == "bool") {
      EXPECT_EQ(f->get_bool(key), v.get<bool>());
    } else if (type == "float32" || type == "float64") {
      EXPECT_EQ(f->get_float(key), type == "float32" ? static_cast<double>(v.get<float>()) : v.get<double>());
    } else if (type == "array_string") {
      EXPECT_EQ(f->get_string_array(key), v.get<std::vector<std::string>>());
    } else if (type == "array_int") {
      EXPECT_EQ(f->get_int_array(key), v.get<std::vector<int64_t>>());
    } else if (type == "array_bool") {
      std::vector<int64_t> want;
      for (bool x : v.get<std::vector<bool>>()) want.push_back(x);
      EXPECT_EQ(f->get_int_array(key), want);
    } else if (type == "array_float") {
      EXPECT_EQ(f->get_float_array(key), v.get<std::vector<double>>());
    } else {  // integer types
      EXPECT_EQ(std::string(gguf_type_name(f->key_type(key))), type);
      EXPECT_EQ(f->get_int(key), v.get<int64_t>());
    }
    ++n_checked;
  }
  EXPECT_GE(n_checked, 15);
}

TEST_F(QuantFixtures, SafetensorsMatchTorch) {
  auto src = open_safetensors_file(dir_ + "/" + manifest_["safetensors"]["file"].get<std::string>());
  for (const auto& t : manifest_["safetensors"]["tensors"]) {
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    const TensorInfo& ti = src->info(name);
    EXPECT_EQ(ti.shape, t["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(std::string(dtype_name(ti.dtype)), t["type"].get<std::string>());
    compare_exact(src->read_all(name), read_f32_file(dir_ + "/" + t["ref"].get<std::string>()), name);
    check_sub_blocks(*src, name);
  }
  auto dir_src = open_safetensors_dir(dir_);
  EXPECT_EQ(dir_src->names().size(), manifest_["safetensors"]["tensors"].size());
}

}  // namespace
