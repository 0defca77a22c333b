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

// Bit-for-bit equality (the K-quant dequantizers promise the reference's exact fp32 values).
void compare_bits(const float* got, const float* ref, size_t n, const std::string& what) {
  int64_t n_wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(ref[i])) {
      if (n_wrong < 5) ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", reference " << ref[i];
      ++n_wrong;
    }
  }
  EXPECT_EQ(n_wrong, 0) << what << ": " << n_wrong << " of " << n << " elements differ in their bits";
}

bool is_k_quant(const std::string& type) { return type == "Q4_K" || type == "Q6_K"; }

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
    const std::vector<float> all = f->read_all(name);
    compare_exact(all, ref, name);
    if (is_k_quant(t["type"]) && all.size() == ref.size()) compare_bits(all.data(), ref.data(), ref.size(), name);
    check_sub_blocks(*f, name);
  }
  EXPECT_EQ(types_seen, (std::set<std::string>{"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"}));
}

// Column blocks of the K-quant tensors — a tensor-parallel shard's read — not aligned to the 256-value
// super-block, against the gguf package's values for the same rows and columns.
TEST_F(QuantFixtures, GgufKQuantColumnBlocksMatchGgufPackage) {
  auto f = GgufFile::open(dir_ + "/" + manifest_["gguf"]["file"].get<std::string>());
  int n_checked = 0;
  for (const auto& t : manifest_["gguf"]["tensors"]) {
    if (!is_k_quant(t["type"])) continue;
    const std::string name = t["name"];
    SCOPED_TRACE(name);
    const TensorInfo& ti = f->info(name);
    const int64_t R = ti.rows(), C = ti.cols();
    ASSERT_EQ(C % 256, 0);
    const auto ref = read_f32_file(dir_ + "/" + t["ref"].get<std::string>());
    ASSERT_EQ(static_cast<int64_t>(ref.size()), R * C);
    // [r0, r1) x [c0, c1): unaligned at both edges, inside one super-block, crossing one or two boundaries,
    // a single value, an aligned shard, a tail ending at the row's end.
    const std::vector<std::array<int64_t, 4>> blocks = {{0, R, 100, 200},
                                                        {0, R, 17, C - 3},
                                                        {R / 2, R, 255, 257},
                                                        {0, 1, 1, 2},
                                                        {0, R, 0, 256},
                                                        {0, R, C - 256 + 7, C},
                                                        {R - 1, R, C / 2 - 1, C / 2 + 129},
                                                        {0, R, C / 3, 2 * C / 3},
                                                        {R > 2 ? 1 : 0, R > 2 ? 3 : 1, 3, C > 512 ? 515 : C - 5}};
    for (auto [r0, r1, c0, c1] : blocks) {
      c1 = std::min(c1, C);  // the 1-super-block rows
      ASSERT_LT(c0, c1);
      SCOPED_TRACE("block [" + std::to_string(r0) + "," + std::to_string(r1) + ")x[" + std::to_string(c0) + "," +
                   std::to_string(c1) + ")");
      const int64_t w = c1 - c0;
      std::vector<float> got(static_cast<size_t>((r1 - r0) * w) + 1, -12345.0f);
      f->read(name, r0, r1, c0, c1, got.data());
      std::vector<float> want;
      for (int64_t r = r0; r < r1; ++r) want.insert(want.end(), ref.begin() + r * C + c0, ref.begin() + r * C + c1);
      compare_bits(got.data(), want.data(), want.size(), name);
      EXPECT_EQ(got.back(), -12345.0f) << "read() wrote past the block";
      ++n_checked;
    }
  }
  EXPECT_GE(n_checked, 8 * 9);
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
