// tests/formats/formats_util.h — shared by the model-file reader tests (test_gguf.cpp, test_safetensors.cpp,
// test_quant_fixtures.cpp): a temp dir, byte I/O, an error matcher, a tiny GGUF writer, encoders for every
// supported tensor type and the standard test tensors.
#pragma once

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
#include "formats/dequant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"

namespace tessera::formats_test {

namespace fs = std::filesystem;
using namespace tessera::formats;
using tessera::Error;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tessera_formats_XXXXXX").string();
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

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, size_t len = SIZE_MAX) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(std::min(len, bytes.size())));
  ASSERT_TRUE(f.good()) << path;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
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

inline uint16_t fp32_to_fp16_exact(float f) {  // only for values exactly representable as normal fp16 (test data)
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

inline Encoded make_f32(int64_t n, int seed) {
  Encoded e;
  for (int64_t i = 0; i < n; ++i) e.expected.push_back(static_cast<float>((i * 7 + seed) % 23) * 0.25f - 2.5f);
  e.bytes = as_bytes(e.expected);
  return e;
}
inline Encoded make_f16(int64_t n, int seed) {
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
inline Encoded make_bf16(int64_t n, int seed) {
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
inline Encoded make_q8_0(int64_t n, int seed) {
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
inline Encoded make_q4(int64_t n, int seed, bool with_min) {
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

// K-quants, packed the way ggml's quantize_row_q4_K_ref / quantize_row_q6_K_ref write them (the encoder's side of
// the layout, not dequant.cpp's); powers-of-two super-block scales keep every expected value exact.
inline Encoded make_q4_k(int64_t n, int seed) {
  Encoded e;
  e.bytes.reserve(static_cast<size_t>(n / 256 * 144));  // (also keeps GCC 12's -Wstringop-overflow quiet)
  for (int64_t b = 0; b < n / 256; ++b) {
    const float d = std::ldexp(1.0f, static_cast<int>((b + seed) % 4) - 5);
    const float dmin = std::ldexp(1.0f, static_cast<int>((b + seed) % 3) - 4);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {  // 6-bit values covering the top two bits
      sc[j] = static_cast<uint8_t>((b * 8 + j) * 29 + seed * 7 + 5) % 64;
      m[j] = static_cast<uint8_t>((b * 8 + j) * 23 + seed * 3 + 40) % 64;
    }
    GgufBuilder::put(e.bytes, fp32_to_fp16_exact(d));
    GgufBuilder::put(e.bytes, fp32_to_fp16_exact(dmin));
    uint8_t scales[12];
    for (int j = 0; j < 4; ++j) {
      scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      scales[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
      scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
    e.bytes.insert(e.bytes.end(), scales, scales + 12);
    uint8_t qs[128] = {};
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int q = static_cast<int>((b * 256 + j * 32 + l) * 7 + seed + l / 3) % 16;
        qs[32 * (j / 2) + l] |= static_cast<uint8_t>(q << (4 * (j % 2)));
        e.expected.push_back(d * static_cast<float>(sc[j]) * static_cast<float>(q) - dmin * static_cast<float>(m[j]));
      }
    }
    e.bytes.insert(e.bytes.end(), qs, qs + 128);
  }
  return e;
}
inline Encoded make_q6_k(int64_t n, int seed) {
  Encoded e;
  e.bytes.reserve(static_cast<size_t>(n / 256 * 210));
  for (int64_t b = 0; b < n / 256; ++b) {
    const float d = std::ldexp(1.0f, static_cast<int>((b + seed) % 5) - 7);
    int8_t sc[16];
    for (int s = 0; s < 16; ++s)
      sc[s] = static_cast<int8_t>(static_cast<int>((b * 16 + s) * 53 + seed * 11) % 256 - 128);
    uint8_t L[256];
    for (int i = 0; i < 256; ++i) {
      L[i] = static_cast<uint8_t>(static_cast<int>((b * 256 + i) * 13 + seed + i / 5) % 64);
      e.expected.push_back(d * static_cast<float>(sc[i / 16]) * static_cast<float>(L[i] - 32));
    }
    uint8_t ql[128], qh[64];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* Lh = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
        ql[64 * h + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
        ql[64 * h + l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
        qh[32 * h + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
    e.bytes.insert(e.bytes.end(), ql, ql + 128);
    e.bytes.insert(e.bytes.end(), qh, qh + 64);
    for (int s = 0; s < 16; ++s) e.bytes.push_back(static_cast<uint8_t>(sc[s]));
    GgufBuilder::put(e.bytes, fp32_to_fp16_exact(d));
  }
  return e;
}

struct TensorSpec {
  std::string name;
  uint32_t ggml_type;
  std::vector<int64_t> shape;  // PyTorch order
  Encoded enc;
};

inline std::vector<TensorSpec> standard_tensors() {
  std::vector<TensorSpec> t;
  t.push_back({"t.f32", 0, {3, 5}, make_f32(15, 1)});
  t.push_back({"t.f16", 1, {4, 6}, make_f16(24, 2)});
  t.push_back({"t.bf16", 30, {2, 3, 4}, make_bf16(24, 3)});
  t.push_back({"t.q8_0", 8, {3, 64}, make_q8_0(3 * 64, 4)});
  t.push_back({"t.q4_0", 2, {2, 96}, make_q4(2 * 96, 5, false)});
  t.push_back({"t.q4_1", 3, {5, 32}, make_q4(5 * 32, 6, true)});
  t.push_back({"t.q8_0_3d", 8, {2, 2, 32}, make_q8_0(2 * 2 * 32, 7)});
  t.push_back({"t.vec", 0, {7}, make_f32(7, 8)});
  t.push_back({"t.q4_k", 12, {3, 512}, make_q4_k(3 * 512, 9)});
  t.push_back({"t.q6_k", 14, {2, 768}, make_q6_k(2 * 768, 10)});
  t.push_back({"t.q4_k_3d", 12, {2, 2, 256}, make_q4_k(2 * 2 * 256, 11)});
  return t;
}

// A valid GGUF with metadata of every value type and the standard tensors.
inline GgufBuilder standard_gguf(const std::vector<TensorSpec>& tensors) {
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
inline void touch_everything(const GgufFile& f) {
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
inline void check_sub_blocks(const TensorSource& src, const std::string& name) {
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

}  // namespace tessera::formats_test
