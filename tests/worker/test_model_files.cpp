// tests/worker/test_model_files.cpp — the model file readers (worker/model/): GGUF, safetensors, dequantizers.
//
// 1. Round trips: files built here by a tiny writer (GgufBuilder, write_safetensors) are read back: metadata of
//    every GGUF value type, shapes, row/column sub-block reads, raw bytes.
// 2. Bad files: truncations at every interesting length, bad magic/version, absurd counts, unsupported types,
//    offsets past the end, overlaps, and 500 seeded random byte flips in the header region — each must be a
//    tessera::Error naming the file (never a crash: run this under ASan/UBSan too).
// 3. Against implementations nobody here wrote: fixtures from tests/python/make_quant_fixtures.py (PyPI gguf's
//    GGUFWriter + gguf.quants.dequantize; safetensors.torch), located by $TESSERA_QUANT_FIXTURES.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/check.h"
#include "worker/model/dequant.h"
#include "worker/model/gguf.h"
#include "worker/model/safetensors.h"
#include "worker/model/tensor_source.h"

namespace fs = std::filesystem;
using namespace tessera::model;
using tessera::Error;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tessera_model_files_XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, size_t len = SIZE_MAX) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(std::min(len, bytes.size())));
  ASSERT_TRUE(f.good()) << path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Expects `fn` to throw tessera::Error whose message contains every string in `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no tessera::Error thrown; expected one mentioning '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
  }
}

uint16_t fp32_to_fp16_exact(float f) {  // only for values exactly representable as normal fp16 (test data)
  const uint32_t b = std::bit_cast<uint32_t>(f);
  if ((b & 0x7FFFFFFF) == 0) return static_cast<uint16_t>(b >> 16);
  const uint32_t sign = (b >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((b >> 23) & 0xFF) - 127 + 15;
  const uint32_t mant = (b >> 13) & 0x3FF;
  if (exp <= 0 || exp >= 31 || (b & 0x1FFF) != 0) throw std::runtime_error("test value not exact in fp16");
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | mant);
}

// ---------------------------------------------------------------------------------------------------------------
// A tiny GGUF writer (little-endian). Tensors are laid out in insertion order, aligned; no padding after the last.

class GgufBuilder {
 public:
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  uint64_t alignment = 32;
  // Overrides of the counts written in the header (to forge absurd values).
  std::optional<uint64_t> n_tensors_override, n_kv_override;

  // Section boundaries of the last build(), for truncation tests.
  size_t kv_begin = 0, ti_begin = 0, data_begin = 0;

  template <typename T>
  void kv_scalar(const std::string& key, GgufType type, T value) {
    std::vector<uint8_t> v;
    put(v, value);
    add_kv(key, type, v);
  }
  void kv_string(const std::string& key, const std::string& s) {
    std::vector<uint8_t> v;
    put_string(v, s);
    add_kv(key, GgufType::STRING, v);
  }
  template <typename T>
  void kv_array(const std::string& key, GgufType elem, const std::vector<T>& values) {
    std::vector<uint8_t> v;
    put(v, static_cast<uint32_t>(elem));
    put(v, static_cast<uint64_t>(values.size()));
    for (const T& x : values) put(v, x);
    add_kv(key, GgufType::ARRAY, v);
  }
  void kv_string_array(const std::string& key, const std::vector<std::string>& values) {
    std::vector<uint8_t> v;
    put(v, static_cast<uint32_t>(GgufType::STRING));
    put(v, static_cast<uint64_t>(values.size()));
    for (const auto& s : values) put_string(v, s);
    add_kv(key, GgufType::ARRAY, v);
  }
  // Raw value bytes (for nested arrays and forged values).
  void kv_raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    std::vector<uint8_t> e;
    put_string(e, key);
    put(e, type);
    e.insert(e.end(), value.begin(), value.end());
    kvs_.push_back(e);
  }

  // ne is GGUF order (innermost first). offset_override forces the recorded offset.
  void tensor(const std::string& name, uint32_t ggml_type, const std::vector<uint64_t>& ne,
              const std::vector<uint8_t>& bytes, std::optional<uint64_t> offset_override = {}) {
    tensors_.push_back({name, ggml_type, ne, bytes, offset_override});
  }

  std::vector<uint8_t> build() {
    std::vector<uint8_t> out;
    put(out, magic);
    put(out, version);
    put(out, n_tensors_override.value_or(tensors_.size()));
    put(out, n_kv_override.value_or(kvs_.size()));
    kv_begin = out.size();
    for (const auto& e : kvs_) out.insert(out.end(), e.begin(), e.end());
    ti_begin = out.size();
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const auto& t : tensors_) {
      off = (off + alignment - 1) / alignment * alignment;
      offsets.push_back(t.offset_override.value_or(off));
      off += t.bytes.size();
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      put_string(out, t.name);
      put(out, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) put(out, d);
      put(out, t.type);
      put(out, offsets[i]);
    }
    while (out.size() % alignment) out.push_back(0);
    data_begin = out.size();
    off = 0;
    for (const auto& t : tensors_) {
      while (off % alignment) {
        out.push_back(0);
        ++off;
      }
      out.insert(out.end(), t.bytes.begin(), t.bytes.end());
      off += t.bytes.size();
    }
    return out;
  }

  template <typename T>
  static void put(std::vector<uint8_t>& v, T x) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &x, sizeof(T));
    v.insert(v.end(), b, b + sizeof(T));
  }
  static void put_string(std::vector<uint8_t>& v, const std::string& s) {
    put(v, static_cast<uint64_t>(s.size()));
    v.insert(v.end(), s.begin(), s.end());
  }

 private:
  struct T {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> ne;
    std::vector<uint8_t> bytes;
    std::optional<uint64_t> offset_override;
  };
  void add_kv(const std::string& key, GgufType type, const std::vector<uint8_t>& value) {
    kv_raw(key, static_cast<uint32_t>(type), value);
  }
  std::vector<std::vector<uint8_t>> kvs_;
  std::vector<T> tensors_;
};

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Deterministic test data and its encodings, with expected fp32 values computed independently of dequant.cpp's
// code paths (exact small values for F16/BF16; explicit per-block formulas for Q types).
struct Encoded {
  std::vector<uint8_t> bytes;
  std::vector<float> expected;
};

Encoded make_f32(int64_t n, int seed) {
  Encoded e;
  for (int64_t i = 0; i < n; ++i) e.expected.push_back(static_cast<float>((i * 7 + seed) % 23) * 0.25f - 2.5f);
  e.bytes = as_bytes(e.expected);
  return e;
}
Encoded make_f16(int64_t n, int seed) {
  Encoded e;
  std::vector<uint16_t> h;
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>((i * 5 + seed) % 19) * 0.125f - 1.0f;
    e.expected.push_back(v);
    h.push_back(fp32_to_fp16_exact(v));
  }
  e.bytes = as_bytes(h);
  return e;
}
Encoded make_bf16(int64_t n, int seed) {
  Encoded e;
  std::vector<uint16_t> h;
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>((i * 3 + seed) % 17) * 0.5f - 4.0f;
    e.expected.push_back(v);
    h.push_back(static_cast<uint16_t>(std::bit_cast<uint32_t>(v) >> 16));
  }
  e.bytes = as_bytes(h);
  return e;
}
// Q types: scales are powers of two so that every expected value is exact.
Encoded make_q8_0(int64_t n, int seed) {
  Encoded e;
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = std::ldexp(1.0f, static_cast<int>((b + seed) % 5) - 3);
    GgufBuilder::put(e.bytes, fp32_to_fp16_exact(d));
    for (int j = 0; j < 32; ++j) {
      const int8_t q = static_cast<int8_t>(((b * 32 + j) * 37 + seed) % 255 - 127);
      e.bytes.push_back(static_cast<uint8_t>(q));
      e.expected.push_back(d * q);
    }
  }
  return e;
}
Encoded make_q4(int64_t n, int seed, bool with_min) {
  Encoded e;
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = std::ldexp(1.0f, static_cast<int>((b + seed) % 4) - 2);
    const float m = with_min ? -static_cast<float>((b + seed) % 3) * 0.5f : 0.0f;
    GgufBuilder::put(e.bytes, fp32_to_fp16_exact(d));
    if (with_min) GgufBuilder::put(e.bytes, fp32_to_fp16_exact(m));
    uint8_t qs[16];
    float vals[32];
    for (int j = 0; j < 16; ++j) {
      const int lo = static_cast<int>((b * 16 + j) * 5 + seed) % 16;
      const int hi = static_cast<int>((b * 16 + j) * 11 + seed + 3) % 16;
      qs[j] = static_cast<uint8_t>(lo | (hi << 4));
      vals[j] = with_min ? d * lo + m : d * (lo - 8);
      vals[j + 16] = with_min ? d * hi + m : d * (hi - 8);
    }
    e.bytes.insert(e.bytes.end(), qs, qs + 16);
    e.expected.insert(e.expected.end(), vals, vals + 32);
  }
  return e;
}

struct TensorSpec {
  std::string name;
  uint32_t ggml_type;
  std::vector<int64_t> shape;  // PyTorch order
  Encoded enc;
};

std::vector<TensorSpec> standard_tensors() {
  std::vector<TensorSpec> t;
  t.push_back({"t.f32", 0, {3, 5}, make_f32(15, 1)});
  t.push_back({"t.f16", 1, {4, 6}, make_f16(24, 2)});
  t.push_back({"t.bf16", 30, {2, 3, 4}, make_bf16(24, 3)});
  t.push_back({"t.q8_0", 8, {3, 64}, make_q8_0(3 * 64, 4)});
  t.push_back({"t.q4_0", 2, {2, 96}, make_q4(2 * 96, 5, false)});
  t.push_back({"t.q4_1", 3, {5, 32}, make_q4(5 * 32, 6, true)});
  t.push_back({"t.q8_0_3d", 8, {2, 2, 32}, make_q8_0(2 * 2 * 32, 7)});
  t.push_back({"t.vec", 0, {7}, make_f32(7, 8)});
  return t;
}

// A valid GGUF with metadata of every value type and the standard tensors.
GgufBuilder standard_gguf(const std::vector<TensorSpec>& tensors) {
  GgufBuilder g;
  g.kv_string("general.architecture", "llama");
  g.kv_scalar("k.u8", GgufType::UINT8, uint8_t{250});
  g.kv_scalar("k.i8", GgufType::INT8, int8_t{-120});
  g.kv_scalar("k.u16", GgufType::UINT16, uint16_t{65000});
  g.kv_scalar("k.i16", GgufType::INT16, int16_t{-32000});
  g.kv_scalar("k.u32", GgufType::UINT32, uint32_t{4000000000u});
  g.kv_scalar("k.i32", GgufType::INT32, int32_t{-2000000000});
  g.kv_scalar("k.f32", GgufType::FLOAT32, 0.75f);
  g.kv_scalar("k.bool", GgufType::BOOL, uint8_t{1});
  g.kv_scalar("k.u64", GgufType::UINT64, uint64_t{1} << 40);
  g.kv_scalar("k.u64_big", GgufType::UINT64, ~uint64_t{0});
  g.kv_scalar("k.i64", GgufType::INT64, int64_t{-(int64_t{1} << 50)});
  g.kv_scalar("k.f64", GgufType::FLOAT64, 2.5e-300);
  g.kv_string("k.str", "tessera \xe2\x9c\x93");
  g.kv_string("k.empty_str", "");
  g.kv_array<int32_t>("k.arr_i32", GgufType::INT32, {1, -2, 3});
  g.kv_array<uint8_t>("k.arr_u8", GgufType::UINT8, {0, 255});
  g.kv_array<float>("k.arr_f32", GgufType::FLOAT32, {0.5f, -1.5f});
  g.kv_array<double>("k.arr_f64", GgufType::FLOAT64, {1e100});
  g.kv_array<uint8_t>("k.arr_bool", GgufType::BOOL, {1, 0, 1});
  g.kv_array<int32_t>("k.arr_empty", GgufType::INT32, {});
  g.kv_string_array("k.arr_str", {"a", "", "\xc4\xa0the"});
  {  // array of 2 arrays of uint16
    std::vector<uint8_t> v;
    GgufBuilder::put(v, static_cast<uint32_t>(GgufType::ARRAY));
    GgufBuilder::put(v, uint64_t{2});
    for (int i = 0; i < 2; ++i) {
      GgufBuilder::put(v, static_cast<uint32_t>(GgufType::UINT16));
      GgufBuilder::put(v, uint64_t{2});
      GgufBuilder::put(v, static_cast<uint16_t>(10 * i));
      GgufBuilder::put(v, static_cast<uint16_t>(10 * i + 1));
    }
    g.kv_raw("k.nested", static_cast<uint32_t>(GgufType::ARRAY), v);
  }
  for (const auto& t : tensors) {
    std::vector<uint64_t> ne(t.shape.rbegin(), t.shape.rend());
    g.tensor(t.name, t.ggml_type, ne, t.enc.bytes);
  }
  return g;
}

// Reads every metadata value and every tensor of an opened file (used after fuzzed opens succeed).
void touch_everything(const GgufFile& f) {
  for (const std::string& key : f.keys()) {
    try {
      switch (f.key_type(key)) {
        case GgufType::STRING:
          (void)f.get_string(key);
          break;
        case GgufType::FLOAT32:
        case GgufType::FLOAT64:
          (void)f.get_float(key);
          break;
        case GgufType::BOOL:
          (void)f.get_bool(key);
          break;
        case GgufType::ARRAY:
          if (f.array_type(key) == GgufType::STRING)
            (void)f.get_string_array(key);
          else if (f.array_type(key) == GgufType::FLOAT32 || f.array_type(key) == GgufType::FLOAT64)
            (void)f.get_float_array(key);
          else if (f.array_type(key) != GgufType::ARRAY)
            (void)f.get_int_array(key);
          break;
        default:
          (void)f.get_int(key);
          break;
      }
    } catch (const Error&) {
      // e.g. a uint64 that does not fit int64: a clean error is fine
    }
  }
  for (const std::string& name : f.names()) {
    const TensorInfo& ti = f.info(name);
    if (ti.numel() <= (1 << 20)) {
      std::vector<float> v = f.read_all(name);
      ASSERT_EQ(static_cast<int64_t>(v.size()), ti.numel());
    }
  }
}

// Checks read() of sub-blocks against read_all() for a few ranges, incl. block-unaligned column ranges.
void check_sub_blocks(const TensorSource& src, const std::string& name) {
  const TensorInfo& ti = src.info(name);
  const std::vector<float> all = src.read_all(name);
  const int64_t R = ti.rows(), C = ti.cols();
  const std::vector<std::array<int64_t, 4>> ranges = {{0, R, 0, C},
                                                      {R / 2, R, 0, C},
                                                      {0, R, C / 2, C},
                                                      {0, 1, 1, C - 1 > 1 ? C - 1 : C},
                                                      {R - 1, R, 0, 1},
                                                      {0, R, C - 1, C},
                                                      {0, R, C / 3, (2 * C) / 3 + 1},
                                                      {1 < R ? 1 : 0, R, 0, 0}};
  for (const auto& [r0, r1, c0, c1] : ranges) {
    std::vector<float> out(static_cast<size_t>((r1 - r0) * (c1 - c0)) + 1, -12345.0f);
    src.read(name, r0, r1, c0, c1, out.data());
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        ASSERT_EQ(out[(r - r0) * (c1 - c0) + (c - c0)], all[r * C + c])
            << name << " block [" << r0 << "," << r1 << ")x[" << c0 << "," << c1 << ") at " << r << "," << c;
      }
    }
    EXPECT_EQ(out.back(), -12345.0f) << name << ": read() wrote past the block";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dequantizers

TEST(Dequant, Fp16SpecialValues) {
  EXPECT_EQ(fp16_to_fp32(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x83FF), -std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)) && fp16_to_fp32(0x7C00) > 0);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0xFC00)) && fp16_to_fp32(0xFC00) < 0);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC0A0), -5.0f);
}

TEST(Dequant, RowsAndRangesMatchBlockFormulas) {
  struct Case {
    DType type;
    Encoded enc;
  };
  std::vector<Case> cases = {{DType::F32, make_f32(96, 1)},        {DType::F16, make_f16(96, 2)},
                             {DType::BF16, make_bf16(96, 3)},      {DType::Q8_0, make_q8_0(96, 4)},
                             {DType::Q4_0, make_q4(96, 5, false)}, {DType::Q4_1, make_q4(96, 6, true)}};
  for (const auto& c : cases) {
    ASSERT_EQ(static_cast<int64_t>(c.enc.bytes.size()), dtype_nbytes(c.type, 96)) << dtype_name(c.type);
    std::vector<float> out(96);
    dequantize_row(c.type, c.enc.bytes.data(), out.data(), 96);
    EXPECT_EQ(out, c.enc.expected) << dtype_name(c.type);
    // Every [begin, end) range, incl. partial blocks at both edges, from an unaligned copy of the bytes.
    std::vector<uint8_t> shifted(c.enc.bytes.size() + 1);
    std::memcpy(shifted.data() + 1, c.enc.bytes.data(), c.enc.bytes.size());
    for (int64_t b = 0; b <= 96; b += 5) {
      for (int64_t e = b; e <= 96; e += 7) {
        std::vector<float> part(static_cast<size_t>(e - b) + 1, 99.0f);
        dequantize_range(c.type, shifted.data() + 1, b, e, part.data());
        for (int64_t i = b; i < e; ++i) ASSERT_EQ(part[i - b], c.enc.expected[i]) << dtype_name(c.type) << " " << i;
        ASSERT_EQ(part.back(), 99.0f);
      }
    }
  }
}

TEST(Dequant, TypeTables) {
  EXPECT_STREQ(dtype_name(DType::Q4_1), "Q4_1");
  EXPECT_EQ(dtype_nbytes(DType::Q8_0, 64), 68);
  EXPECT_EQ(dtype_nbytes(DType::Q4_0, 32), 18);
  EXPECT_EQ(dtype_nbytes(DType::Q4_1, 32), 20);
  EXPECT_EQ(dtype_nbytes(DType::BF16, 3), 6);
  EXPECT_EQ(dtype_nbytes(DType::Q4_0, 33), -1);
  EXPECT_EQ(dtype_nbytes(DType::F32, INT64_MAX / 2), -1);
}

TEST(TensorInfo, RowsColsOfEveryRank) {
  TensorInfo t;
  t.shape = {};
  EXPECT_EQ(t.numel(), 1);
  EXPECT_EQ(t.rows(), 1);
  EXPECT_EQ(t.cols(), 1);
  t.shape = {7};
  EXPECT_EQ(t.rows(), 1);
  EXPECT_EQ(t.cols(), 7);
  t.shape = {3, 4, 5};
  EXPECT_EQ(t.numel(), 60);
  EXPECT_EQ(t.rows(), 3);
  EXPECT_EQ(t.cols(), 20);
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF: valid files

TEST(Gguf, MetadataOfEveryType) {
  TempDir dir;
  const auto tensors = standard_tensors();
  GgufBuilder g = standard_gguf(tensors);
  const std::string path = dir.file("m.gguf");
  write_bytes(path, g.build());
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->keys().front(), "general.architecture");
  EXPECT_EQ(f->keys().size(), 23u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("k.u8"), 250);
  EXPECT_EQ(f->get_int("k.i8"), -120);
  EXPECT_EQ(f->get_int("k.u16"), 65000);
  EXPECT_EQ(f->get_int("k.i16"), -32000);
  EXPECT_EQ(f->get_int("k.u32"), 4000000000LL);
  EXPECT_EQ(f->get_int("k.i32"), -2000000000);
  EXPECT_EQ(f->get_float("k.f32"), 0.75);
  EXPECT_EQ(f->get_float("k.u32"), 4e9);  // integers read as floats
  EXPECT_TRUE(f->get_bool("k.bool"));
  EXPECT_EQ(f->get_int("k.bool"), 1);
  EXPECT_EQ(f->get_int("k.u64"), int64_t{1} << 40);
  EXPECT_EQ(f->get_float("k.u64_big"), 18446744073709551615.0);
  EXPECT_EQ(f->get_int("k.i64"), -(int64_t{1} << 50));
  EXPECT_EQ(f->get_float("k.f64"), 2.5e-300);
  EXPECT_EQ(f->get_string("k.str"), "tessera \xe2\x9c\x93");
  EXPECT_EQ(f->get_string("k.empty_str"), "");
  EXPECT_EQ(f->get_int_array("k.arr_i32"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f->get_int_array("k.arr_u8"), (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(f->get_float_array("k.arr_f32"), (std::vector<double>{0.5, -1.5}));
  EXPECT_EQ(f->get_float_array("k.arr_i32"), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(f->get_float_array("k.arr_f64"), (std::vector<double>{1e100}));
  EXPECT_EQ(f->get_int_array("k.arr_bool"), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_TRUE(f->get_int_array("k.arr_empty").empty());
  EXPECT_EQ(f->get_string_array("k.arr_str"), (std::vector<std::string>{"a", "", "\xc4\xa0the"}));
  EXPECT_EQ(f->array_type("k.nested"), GgufType::ARRAY);
  EXPECT_EQ(f->array_size("k.nested"), 2);
  EXPECT_TRUE(f->has_key("k.nested"));
  EXPECT_FALSE(f->has_key("k.nope"));

  // Errors name the file and the key.
  expect_error([&] { f->get_string("k.nope"); }, {path, "k.nope", "missing"});
  expect_error([&] { f->get_string("k.u8"); }, {path, "k.u8", "expected a string", "uint8"});
  expect_error([&] { f->get_int("k.str"); }, {path, "k.str", "expected an integer"});
  expect_error([&] { f->get_int("k.f32"); }, {path, "k.f32"});
  expect_error([&] { f->get_int("k.u64_big"); }, {path, "k.u64_big", "does not fit"});
  expect_error([&] { f->get_bool("k.u8"); }, {path, "k.u8", "bool"});
  expect_error([&] { f->get_float("k.str"); }, {path, "k.str"});
  expect_error([&] { f->get_string_array("k.arr_i32"); }, {path, "k.arr_i32", "array of int32"});
  expect_error([&] { f->get_int_array("k.arr_str"); }, {path, "k.arr_str"});
  expect_error([&] { f->get_int_array("k.nested"); }, {path, "k.nested"});
  expect_error([&] { f->get_float_array("k.u8"); }, {path, "k.u8"});
  expect_error([&] { f->array_size("k.u8"); }, {path, "k.u8"});
}

TEST(Gguf, TensorsShapesAndSubBlocks) {
  TempDir dir;
  const auto tensors = standard_tensors();
  GgufBuilder g = standard_gguf(tensors);
  const std::string path = dir.file("t.gguf");
  const auto bytes = g.build();
  write_bytes(path, bytes);
  auto f = GgufFile::open(path);
  std::vector<std::string> expected_names;
  for (const auto& t : tensors) expected_names.push_back(t.name);
  EXPECT_EQ(f->names(), expected_names);
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(f->has(t.name));
    const TensorInfo& ti = f->info(t.name);
    EXPECT_EQ(ti.name, t.name);
    EXPECT_EQ(ti.shape, t.shape);
    EXPECT_EQ(f->expect(t.name, t.shape).name, t.name);
    EXPECT_EQ(f->read_all(t.name), t.enc.expected);
    // Raw bytes: exactly what was written, inside the mapping, aligned.
    ASSERT_EQ(f->nbytes(t.name), static_cast<int64_t>(t.enc.bytes.size()));
    EXPECT_EQ(std::memcmp(f->data(t.name), t.enc.bytes.data(), t.enc.bytes.size()), 0);
    EXPECT_EQ(f->file_offset(t.name) % 32, 0u);
    check_sub_blocks(*f, t.name);
  }
  EXPECT_EQ(f->info("t.q4_1").dtype, DType::Q4_1);
  EXPECT_EQ(f->info("t.bf16").rows(), 2);
  EXPECT_EQ(f->info("t.bf16").cols(), 12);
  EXPECT_EQ(f->info("t.vec").rows(), 1);
  EXPECT_EQ(f->info("t.vec").cols(), 7);

  expect_error([&] { f->info("nope"); }, {path + ": no tensor 'nope'"});
  expect_error([&] { f->read_all("nope"); }, {path, "nope"});
  expect_error([&] { f->data("nope"); }, {path, "nope"});
  expect_error([&] { f->expect("t.f32", {5, 3}); }, {path + ": tensor 't.f32' has shape [3, 5], expected [5, 3]"});
  std::vector<float> out(64);
  expect_error([&] { f->read("t.f32", 0, 4, 0, 5, out.data()); }, {path, "t.f32", "out of range"});
  expect_error([&] { f->read("t.f32", 2, 1, 0, 5, out.data()); }, {path, "t.f32"});
  expect_error([&] { f->read("t.f32", 0, 1, -1, 5, out.data()); }, {path, "t.f32"});
  expect_error([&] { f->read("t.f32", 0, 1, 0, 6, out.data()); }, {path, "t.f32"});
  expect_error([&] { f->read("t.f32", 0, 1, 0, 5, nullptr); }, {path, "t.f32", "null"});
  f->read("t.f32", 1, 1, 0, 5, nullptr);  // an empty block is fine

  // The generic entry point dispatches on the extension.
  auto src = open_tensor_source(path);
  EXPECT_EQ(src->read_all("t.q4_0"), f->read_all("t.q4_0"));
}

TEST(Gguf, AlignmentVersionTwoAndZeroTensors) {
  TempDir dir;
  {
    GgufBuilder g;
    g.alignment = 64;
    g.kv_scalar("general.alignment", GgufType::UINT32, uint32_t{64});
    Encoded a = make_f32(5, 1), b = make_q8_0(64, 2);
    g.tensor("a", 0, {5}, a.bytes);
    g.tensor("b", 8, {64}, b.bytes);
    write_bytes(dir.file("a64.gguf"), g.build());
    auto f = GgufFile::open(dir.file("a64.gguf"));
    EXPECT_EQ(f->alignment(), 64u);
    EXPECT_EQ(f->data_offset() % 64, 0u);
    EXPECT_EQ(f->file_offset("b") % 64, 0u);
    EXPECT_EQ(f->read_all("b"), b.expected);
  }
  {
    GgufBuilder g;
    g.version = 2;
    g.kv_string("general.name", "v2");
    write_bytes(dir.file("v2.gguf"), g.build());
    auto f = GgufFile::open(dir.file("v2.gguf"));
    EXPECT_EQ(f->version(), 2u);
    EXPECT_TRUE(f->names().empty());
    EXPECT_EQ(f->get_string("general.name"), "v2");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF: bad files

TEST(GgufCorrupt, EveryTruncationIsAnErrorNamingTheFile) {
  TempDir dir;
  const auto tensors = standard_tensors();
  GgufBuilder g = standard_gguf(tensors);
  const auto bytes = g.build();
  const size_t n = bytes.size();
  const std::vector<size_t> lengths = {0,
                                       3,
                                       4,
                                       8,
                                       12,
                                       23,
                                       g.kv_begin,
                                       (g.kv_begin + g.ti_begin) / 2,
                                       g.ti_begin - 1,
                                       g.ti_begin,
                                       (g.ti_begin + g.data_begin) / 2,
                                       g.data_begin - 1,
                                       g.data_begin,
                                       (g.data_begin + n) / 2,
                                       n - 1};
  for (size_t len : lengths) {
    SCOPED_TRACE("length " + std::to_string(len) + " of " + std::to_string(n));
    const std::string path = dir.file("trunc_" + std::to_string(len) + ".gguf");
    write_bytes(path, bytes, len);
    expect_error([&] { GgufFile::open(path); }, {path});
  }
  // And every single length in the header region, for good measure.
  const std::string path = dir.file("trunc_all.gguf");
  for (size_t len = 0; len < g.data_begin; len += 1) {
    write_bytes(path, bytes, len);
    try {
      GgufFile::open(path);
      ADD_FAILURE() << "length " << len << " opened";
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(GgufCorrupt, BadMagicAndVersion) {
  TempDir dir;
  auto check = [&](GgufBuilder g, const std::vector<std::string>& parts) {
    const std::string path = dir.file("bad.gguf");
    write_bytes(path, g.build());
    std::vector<std::string> all = parts;
    all.push_back(path);
    expect_error([&] { GgufFile::open(path); }, all);
  };
  GgufBuilder g;
  g.magic = 0x46554746;
  check(g, {"bad magic"});
  g = GgufBuilder();
  g.version = 1;
  check(g, {"version 1"});
  g.version = 4;
  check(g, {"version 4"});
  g.version = 0x03000000;
  check(g, {"big-endian"});
  // Not a file at all.
  expect_error([&] { GgufFile::open(dir.file("missing.gguf")); }, {dir.file("missing.gguf"), "cannot open"});
  expect_error([&] { GgufFile::open(dir.path()); }, {dir.path(), "directory"});
}

TEST(GgufCorrupt, AbsurdCountsAndLengths) {
  TempDir dir;
  const std::string path = dir.file("absurd.gguf");
  auto expect_open_error = [&](GgufBuilder& g, const std::vector<std::string>& parts) {
    write_bytes(path, g.build());
    std::vector<std::string> all = parts;
    all.push_back(path);
    expect_error([&] { GgufFile::open(path); }, all);
  };
  {
    GgufBuilder g;
    g.n_tensors_override = uint64_t{1} << 62;
    expect_open_error(g, {"tensor count"});
  }
  {
    GgufBuilder g;
    g.n_kv_override = ~uint64_t{0};
    expect_open_error(g, {"metadata count"});
  }
  {
    GgufBuilder g;  // a string length of 2^63
    std::vector<uint8_t> v;
    GgufBuilder::put(v, uint64_t{1} << 63);
    v.push_back('x');
    g.kv_raw("k.s", static_cast<uint32_t>(GgufType::STRING), v);
    expect_open_error(g, {"k.s", "truncated"});
  }
  {
    GgufBuilder g;  // an array length whose byte size overflows
    std::vector<uint8_t> v;
    GgufBuilder::put(v, static_cast<uint32_t>(GgufType::UINT64));
    GgufBuilder::put(v, ~uint64_t{0} / 4);
    g.kv_raw("k.arr", static_cast<uint32_t>(GgufType::ARRAY), v);
    expect_open_error(g, {"k.arr"});
  }
  {
    GgufBuilder g;  // a key length past the end
    g.n_kv_override = 1;
    auto bytes = g.build();
    bytes.resize(24);  // drop the alignment padding: the entry follows the header directly
    GgufBuilder::put(bytes, uint64_t{1000});
    bytes.insert(bytes.end(), 20, 'k');
    write_bytes(path, bytes);
    expect_error([&] { GgufFile::open(path); }, {path, "metadata entry 0", "truncated"});
  }
  {
    GgufBuilder g;
    g.kv_raw("k.badtype", 13, {0, 0, 0, 0});
    expect_open_error(g, {"k.badtype", "invalid value type 13"});
  }
  {
    GgufBuilder g;
    std::vector<uint8_t> v;
    GgufBuilder::put(v, uint32_t{99});
    GgufBuilder::put(v, uint64_t{0});
    g.kv_raw("k.badelem", static_cast<uint32_t>(GgufType::ARRAY), v);
    expect_open_error(g, {"k.badelem", "element type 99"});
  }
  {
    GgufBuilder g;  // arrays nested 100 deep
    std::vector<uint8_t> v;
    for (int i = 0; i < 100; ++i) {
      GgufBuilder::put(v, static_cast<uint32_t>(GgufType::ARRAY));
      GgufBuilder::put(v, uint64_t{1});
    }
    GgufBuilder::put(v, static_cast<uint32_t>(GgufType::UINT8));
    GgufBuilder::put(v, uint64_t{0});
    g.kv_raw("k.deep", static_cast<uint32_t>(GgufType::ARRAY), v);
    expect_open_error(g, {"k.deep", "nested"});
  }
  {
    GgufBuilder g;
    g.kv_scalar("k.a", GgufType::UINT8, uint8_t{1});
    g.kv_scalar("k.a", GgufType::UINT8, uint8_t{2});
    expect_open_error(g, {"k.a", "duplicate"});
  }
  {
    GgufBuilder g;
    g.kv_scalar("general.alignment", GgufType::UINT32, uint32_t{48});
    expect_open_error(g, {"general.alignment", "power of two"});
  }
  {
    GgufBuilder g;
    g.kv_string("general.alignment", "32");
    expect_open_error(g, {"general.alignment"});
  }
}

TEST(GgufCorrupt, BadTensorInfos) {
  TempDir dir;
  const std::string path = dir.file("ti.gguf");
  auto expect_open_error = [&](GgufBuilder& g, const std::vector<std::string>& parts) {
    write_bytes(path, g.build());
    std::vector<std::string> all = parts;
    all.push_back(path);
    expect_error([&] { GgufFile::open(path); }, all);
  };
  const Encoded q = make_q8_0(64, 1);
  {
    GgufBuilder g;
    g.tensor("blk.0.ffn_down.weight", 12, {256, 2}, std::vector<uint8_t>(288));
    write_bytes(path, g.build());
    expect_error([&] { GgufFile::open(path); },
                 {"unsupported tensor type 12 (Q4_K) for tensor 'blk.0.ffn_down.weight' in " + path +
                  "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 1000, {4}, std::vector<uint8_t>(16));
    expect_open_error(g, {"unsupported tensor type 1000", "'w'"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 0, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4));
    expect_open_error(g, {"'w'", "dimension count 5"});
  }
  {
    GgufBuilder g;  // dims whose product overflows int64
    g.tensor("w", 0, {uint64_t{1} << 32, uint64_t{1} << 32}, std::vector<uint8_t>(4));
    expect_open_error(g, {"'w'", "overflow"});
  }
  {
    GgufBuilder g;  // a dim above INT64_MAX
    g.tensor("w", 0, {~uint64_t{0}}, std::vector<uint8_t>(4));
    expect_open_error(g, {"'w'", "overflow"});
  }
  {
    GgufBuilder g;  // element count fits, byte count does not
    g.tensor("w", 0, {uint64_t{1} << 62}, std::vector<uint8_t>(4));
    expect_open_error(g, {"'w'", "overflow"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 8, {48}, std::vector<uint8_t>(34));
    expect_open_error(g, {"'w'", "block size 32"});
  }
  {
    GgufBuilder g;                     // data past the end of the file
    g.tensor("w", 8, {128}, q.bytes);  // declares 4 blocks, holds 2
    expect_open_error(g, {"'w'", "past the end"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 8, {64}, q.bytes, uint64_t{1} << 60);
    expect_open_error(g, {"'w'", "past the end"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 8, {64}, q.bytes, ~uint64_t{0} - 31);  // aligned, and offset + size overflows uint64
    expect_open_error(g, {"'w'", "past the end"});
  }
  {
    GgufBuilder g;
    g.tensor("w", 8, {64}, q.bytes, 8);
    expect_open_error(g, {"'w'", "alignment"});
  }
  {
    GgufBuilder g;  // two tensors sharing bytes
    g.tensor("a", 8, {64}, q.bytes);
    g.tensor("b", 8, {64}, q.bytes, 32);
    expect_open_error(g, {"'a'", "'b'", "overlaps"});
  }
  {
    GgufBuilder g;
    g.tensor("a", 0, {4}, std::vector<uint8_t>(16));
    g.tensor("a", 0, {4}, std::vector<uint8_t>(16));
    expect_open_error(g, {"'a'", "duplicate"});
  }
}

TEST(GgufCorrupt, RandomByteFlipsInTheHeaderNeverCrash) {
  TempDir dir;
  const auto tensors = standard_tensors();
  GgufBuilder g = standard_gguf(tensors);
  const auto bytes = g.build();
  const std::string path = dir.file("fuzz.gguf");
  std::mt19937 rng(20240601);
  int n_ok = 0, n_error = 0;
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<uint8_t> b = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % g.data_begin;
      // Half the time a random byte, otherwise a single bit (which keeps more files parseable).
      if (rng() % 2)
        b[pos] = static_cast<uint8_t>(rng());
      else
        b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    write_bytes(path, b);
    try {
      auto f = GgufFile::open(path);
      touch_everything(*f);
      ++n_ok;
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++n_error;
    }
  }
  // Both outcomes must occur, or this test is not testing anything.
  EXPECT_GT(n_ok, 10);
  EXPECT_GT(n_error, 10);
  std::printf("fuzz: %d opened cleanly, %d rejected\n", n_ok, n_error);
}

// ---------------------------------------------------------------------------------------------------------------
// safetensors

struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Builds a safetensors file; `mutate` may edit the header JSON before it is serialized.
std::vector<uint8_t> build_safetensors(const std::vector<StTensor>& tensors,
                                       const std::function<void(nlohmann::json&)>& mutate = {},
                                       size_t* header_end = nullptr) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::vector<uint8_t> data;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  if (mutate) mutate(h);
  std::string js = h.dump();
  while ((8 + js.size()) % 8) js.push_back(' ');
  std::vector<uint8_t> out;
  GgufBuilder::put(out, static_cast<uint64_t>(js.size()));
  out.insert(out.end(), js.begin(), js.end());
  if (header_end) *header_end = out.size();
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

struct StFixture {
  Encoded f32 = make_f32(12, 1), f16 = make_f16(10, 2), bf16 = make_bf16(4, 3), f32b = make_f32(6, 4);
  std::vector<StTensor> tensors() const {
    return {{"w.f32", "F32", {3, 4}, f32.bytes},
            {"w.f16", "F16", {2, 5}, f16.bytes},
            {"w.bf16", "BF16", {4}, bf16.bytes},
            {"w.scalar", "F32", {}, make_f32(1, 9).bytes},
            {"buf.i64", "I64", {2}, std::vector<uint8_t>(16, 1)},
            {"w.f32b", "F32", {1, 2, 3}, f32b.bytes}};
  }
};

TEST(Safetensors, SingleFileRoundTrip) {
  TempDir dir;
  StFixture fx;
  const std::string path = dir.file("one.safetensors");
  write_bytes(path, build_safetensors(fx.tensors()));
  auto src = open_safetensors_file(path);
  EXPECT_EQ(src->path(), path);
  EXPECT_EQ(src->names(), (std::vector<std::string>{"w.bf16", "w.f16", "w.f32", "w.f32b", "w.scalar"}));
  EXPECT_EQ(src->info("w.f32").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(src->info("w.f16").dtype, DType::F16);
  EXPECT_EQ(src->read_all("w.f32"), fx.f32.expected);
  EXPECT_EQ(src->read_all("w.f16"), fx.f16.expected);
  EXPECT_EQ(src->read_all("w.bf16"), fx.bf16.expected);
  EXPECT_EQ(src->read_all("w.f32b"), fx.f32b.expected);
  EXPECT_EQ(src->read_all("w.scalar").size(), 1u);
  for (const char* n : {"w.f32", "w.f16", "w.bf16", "w.f32b"}) check_sub_blocks(*src, n);
  EXPECT_EQ(src->nbytes("w.f16"), 20);
  EXPECT_EQ(std::memcmp(src->data("w.f16"), fx.f16.bytes.data(), 20), 0);
  EXPECT_FALSE(src->has("buf.i64"));
  expect_error([&] { src->info("buf.i64"); }, {path, "'buf.i64'", "unsupported dtype I64"});
  expect_error([&] { src->info("nope"); }, {path + ": no tensor 'nope'"});
  expect_error([&] { src->expect("w.f16", {5, 2}); }, {path + ": tensor 'w.f16' has shape [2, 5], expected [5, 2]"});
  auto* file = dynamic_cast<SafetensorsFile*>(src.get());
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST(Safetensors, DirectorySingleAndSharded) {
  TempDir dir;
  StFixture fx;
  auto all = fx.tensors();
  // Single file directory.
  fs::create_directories(dir.file("single"));
  write_bytes(dir.file("single/model.safetensors"), build_safetensors(all));
  auto single = open_safetensors_dir(dir.file("single"));
  EXPECT_EQ(single->read_all("w.f16"), fx.f16.expected);
  auto via_generic = open_tensor_source(dir.file("single"));
  EXPECT_EQ(via_generic->read_all("w.bf16"), fx.bf16.expected);

  // Two shards + index.
  const std::string sd = dir.file("sharded");
  fs::create_directories(sd);
  write_bytes(sd + "/model-00001-of-00002.safetensors", build_safetensors({all[0], all[1]}));
  write_bytes(sd + "/model-00002-of-00002.safetensors", build_safetensors({all[2], all[4], all[5]}));
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map",
                           {{"w.f32", "model-00001-of-00002.safetensors"},
                            {"w.f16", "model-00001-of-00002.safetensors"},
                            {"w.bf16", "model-00002-of-00002.safetensors"},
                            {"buf.i64", "model-00002-of-00002.safetensors"},
                            {"w.f32b", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(sd + "/model.safetensors.index.json") << index.dump(2);
  auto sharded = open_safetensors_dir(sd);
  EXPECT_EQ(sharded->path(), sd);
  EXPECT_EQ(sharded->names(), (std::vector<std::string>{"w.bf16", "w.f16", "w.f32", "w.f32b"}));
  EXPECT_EQ(sharded->read_all("w.f32"), fx.f32.expected);
  EXPECT_EQ(sharded->read_all("w.f32b"), fx.f32b.expected);
  check_sub_blocks(*sharded, "w.f16");
  EXPECT_EQ(sharded->nbytes("w.bf16"), 8);
  expect_error([&] { sharded->info("nope"); }, {sd + ": no tensor 'nope'"});
  expect_error([&] { sharded->info("buf.i64"); }, {"model-00002-of-00002.safetensors", "I64"});

  // An index naming a missing shard, a tensor its shard lacks, a path outside the directory, bad JSON.
  auto with_index = [&](const nlohmann::json& j) {
    std::ofstream(sd + "/model.safetensors.index.json", std::ios::trunc) << j.dump();
  };
  nlohmann::json bad = index;
  bad["weight_map"]["w.extra"] = "model-00003-of-00003.safetensors";
  with_index(bad);
  expect_error([&] { open_safetensors_dir(sd); },
               {sd + "/model.safetensors.index.json", "model-00003-of-00003.safetensors", "w.extra", "not found"});
  bad = index;
  bad["weight_map"]["w.f32"] = "model-00002-of-00002.safetensors";
  with_index(bad);
  expect_error([&] { open_safetensors_dir(sd); }, {"index.json", "'w.f32'", "lacks"});
  bad = index;
  bad["weight_map"]["w.f32"] = "../single/model.safetensors";
  with_index(bad);
  expect_error([&] { open_safetensors_dir(sd); }, {"index.json", "'w.f32'"});
  std::ofstream(sd + "/model.safetensors.index.json", std::ios::trunc) << "{\"weight_map\": {";
  expect_error([&] { open_safetensors_dir(sd); }, {sd + "/model.safetensors.index.json", "invalid JSON"});
  expect_error([&] { open_safetensors_dir(dir.file("empty_nonexistent")); }, {"empty_nonexistent"});
  fs::create_directories(dir.file("empty"));
  expect_error([&] { open_safetensors_dir(dir.file("empty")); }, {dir.file("empty"), "model.safetensors"});
}

TEST(SafetensorsCorrupt, HeaderAndOffsets) {
  TempDir dir;
  StFixture fx;
  const std::string path = dir.file("bad.safetensors");
  auto expect_open_error = [&](const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
    write_bytes(path, bytes);
    std::vector<std::string> all = parts;
    all.push_back(path);
    expect_error([&] { open_safetensors_file(path); }, all);
  };
  const auto good = fx.tensors();
  size_t header_end = 0;
  const auto bytes = build_safetensors(good, {}, &header_end);
  // Truncations.
  for (size_t len : {size_t{0}, size_t{3}, size_t{4}, size_t{7}, size_t{8}, size_t{9}, header_end / 2, header_end - 1,
                     header_end, (header_end + bytes.size()) / 2, bytes.size() - 1}) {
    SCOPED_TRACE(len);
    write_bytes(path, bytes, len);
    expect_error([&] { open_safetensors_file(path); }, {path});
  }
  // Header length past the file / absurd.
  std::vector<uint8_t> b = bytes;
  const uint64_t huge = ~uint64_t{0} - 3;
  std::memcpy(b.data(), &huge, 8);
  expect_open_error(b, {"header length"});
  // Invalid JSON / wrong JSON shapes.
  auto with_header = [&](const std::string& js) {
    std::vector<uint8_t> out;
    GgufBuilder::put(out, static_cast<uint64_t>(js.size()));
    out.insert(out.end(), js.begin(), js.end());
    out.insert(out.end(), 64, 0);
    return out;
  };
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\""), {"invalid safetensors header JSON"});
  expect_open_error(with_header("[1, 2]"), {"not a JSON object"});
  expect_open_error(with_header("{\"a\": 5}"), {"'a'", "not an object"});
  expect_open_error(with_header("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}"), {"'a'", "dtype"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}"), {"'a'", "shape"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}"), {"'a'", "data_offsets"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}"),
                    {"'a'", "invalid dimension"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}"),
                    {"'a'", "invalid dimension"});
  expect_open_error(
      with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}"),
      {"'a'"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}"),
                    {"'a'", "data_offsets"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}"),
                    {"'a'", "data_offsets"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}"),
                    {"'a'", "needs 8"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [100], \"data_offsets\": [0, 400]}}"),
                    {"'a'", "past the end"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                                " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}"),
                    {"'a'", "'b'", "overlaps"});
  expect_open_error(with_header("{\"__metadata__\": [1]}"), {"__metadata__"});
  // An unknown dtype is listed as unsupported, not rejected, but its extent is still checked.
  write_bytes(path, with_header("{\"a\": {\"dtype\": \"F4_NEW\", \"shape\": [2], \"data_offsets\": [0, 1]}}"));
  auto f = open_safetensors_file(path);
  expect_error([&] { f->read_all("a"); }, {path, "'a'", "F4_NEW"});
  expect_open_error(with_header("{\"a\": {\"dtype\": \"F4_NEW\", \"shape\": [2], \"data_offsets\": [0, 100]}}"),
                    {"'a'", "past the end"});
}

TEST(SafetensorsCorrupt, RandomByteFlipsInTheHeaderNeverCrash) {
  TempDir dir;
  StFixture fx;
  size_t header_end = 0;
  const auto bytes = build_safetensors(fx.tensors(), {}, &header_end);
  const std::string path = dir.file("fuzz.safetensors");
  std::mt19937 rng(7);
  int n_ok = 0, n_error = 0;
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<uint8_t> b = bytes;
    const size_t pos = rng() % header_end;
    // Digits are where offsets and shapes live: bias flips towards them.
    if (rng() % 2 && b[pos] >= '0' && b[pos] <= '9')
      b[pos] = static_cast<uint8_t>('0' + rng() % 10);
    else
      b[pos] = static_cast<uint8_t>(rng());
    write_bytes(path, b);
    try {
      auto src = open_safetensors_file(path);
      for (const auto& n : src->names()) (void)src->read_all(n);
      ++n_ok;
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++n_error;
    }
  }
  EXPECT_GT(n_ok, 10);
  EXPECT_GT(n_error, 10);
}

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
