// tests/worker/test_gguf.cpp — the GGUF reader and the dequantizers (worker/model/): round trips of files built
// here by GgufBuilder (metadata of every value type, shapes, row/column sub-block reads, raw bytes), and bad files
// (truncations at every interesting length, bad magic/version, absurd counts, unsupported types, offsets past the
// end, overlaps, 500 seeded random byte flips in the header): each a tessera::Error naming the file, never a crash
// (this also runs under ASan/UBSan).
#include <gtest/gtest.h>

#include "tests/formats/formats_util.h"

using namespace tessera::formats_test;

namespace {

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
                             {DType::Q4_0, make_q4(96, 5, false)}, {DType::Q4_1, make_q4(96, 6, true)},
                             {DType::Q4_K, make_q4_k(768, 7)},     {DType::Q6_K, make_q6_k(768, 8)}};
  for (const auto& c : cases) {
    const int64_t n = static_cast<int64_t>(c.enc.expected.size());
    ASSERT_EQ(static_cast<int64_t>(c.enc.bytes.size()), dtype_nbytes(c.type, n)) << dtype_name(c.type);
    std::vector<float> out(static_cast<size_t>(n));
    dequantize_row(c.type, c.enc.bytes.data(), out.data(), n);
    EXPECT_EQ(out, c.enc.expected) << dtype_name(c.type);
    // Every [begin, end) range, incl. partial blocks at both edges, from an unaligned copy of the bytes.
    std::vector<uint8_t> shifted(c.enc.bytes.size() + 1);
    std::memcpy(shifted.data() + 1, c.enc.bytes.data(), c.enc.bytes.size());
    const int64_t step_b = n > 96 ? 11 : 5, step_e = n > 96 ? 13 : 7;
    for (int64_t b = 0; b <= n; b += step_b) {
      for (int64_t e = b; e <= n; e += step_e) {
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
  EXPECT_STREQ(dtype_name(DType::Q4_K), "Q4_K");
  EXPECT_STREQ(dtype_name(DType::Q6_K), "Q6_K");
  EXPECT_EQ(dtype_block_size(DType::Q4_K), 256);
  EXPECT_EQ(dtype_block_size(DType::Q6_K), 256);
  EXPECT_EQ(dtype_block_bytes(DType::Q4_K), 144);
  EXPECT_EQ(dtype_block_bytes(DType::Q6_K), 210);
  EXPECT_EQ(dtype_nbytes(DType::Q4_K, 512), 288);
  EXPECT_EQ(dtype_nbytes(DType::Q6_K, 256), 210);
  EXPECT_EQ(dtype_nbytes(DType::Q4_K, 32), -1);
  EXPECT_EQ(dtype_nbytes(DType::Q6_K, 257), -1);
  // The existing values keep their numbers (weights.cpp and the kernels rely on them).
  EXPECT_EQ(static_cast<int>(DType::Q4_1), 5);
  EXPECT_EQ(static_cast<int>(DType::Q4_K), 6);
  EXPECT_EQ(static_cast<int>(DType::Q6_K), 7);
}

TEST(Dequant, Q4kScaleMinUnpacksEverySubBlock) {
  // Pack 8 known (scale, min) pairs as ggml's quantize_row_q4_K_ref does and unpack each.
  const uint8_t sc[8] = {0, 63, 17, 42, 63, 16, 47, 5}, m[8] = {63, 0, 33, 9, 48, 63, 1, 32};
  uint8_t packed[12];
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t s = 255, mm = 255;
    q4k_scale_min(packed, j, &s, &mm);
    EXPECT_EQ(s, sc[j]) << j;
    EXPECT_EQ(mm, m[j]) << j;
  }
}

TEST(Dequant, KQuantSpecialScales) {
  // A negative d and a subnormal dmin (Q4_K), a negative d (Q6_K): the same fp32 arithmetic as the reference.
  Encoded q4k = make_q4_k(256, 3);
  q4k.bytes[0] = 0x00;
  q4k.bytes[1] = 0xB8;  // d = -0.5
  q4k.bytes[2] = 0x01;
  q4k.bytes[3] = 0x00;  // dmin = 2^-24
  std::vector<float> out(256);
  dequantize_row(DType::Q4_K, q4k.bytes.data(), out.data(), 256);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    q4k_scale_min(q4k.bytes.data() + 4, j, &sc, &m);
    const float q = static_cast<float>((q4k.bytes[16 + 32 * (j / 2) + 5] >> (4 * (j % 2))) & 0xF);
    const float p = -0.5f * static_cast<float>(sc) * q;
    EXPECT_EQ(out[32 * j + 5], p - std::ldexp(1.0f, -24) * static_cast<float>(m)) << j;
  }
  Encoded q6k = make_q6_k(256, 4);
  q6k.bytes[208] = 0x00;
  q6k.bytes[209] = 0xC0;  // d = -2
  dequantize_row(DType::Q6_K, q6k.bytes.data(), out.data(), 256);
  const float d_was = std::ldexp(1.0f, 4 % 5 - 7);  // make_q6_k's d for block 0, seed 4 (exact ratios)
  for (int i = 0; i < 256; ++i) ASSERT_EQ(out[i], q6k.expected[i] / d_was * -2.0f) << i;
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
    g.tensor("blk.0.ffn_down.weight", 13, {256, 2}, std::vector<uint8_t>(352));
    write_bytes(path, g.build());
    expect_error([&] { GgufFile::open(path); },
                 {"unsupported tensor type 13 (Q5_K) for tensor 'blk.0.ffn_down.weight' in " + path +
                  "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K"});
  }
  {
    // A K-quant row (ne[0]) must hold whole 256-value super-blocks, even when the element count would.
    GgufBuilder g;
    g.tensor("blk.0.attn_q.weight", 12, {128, 2}, make_q4_k(256, 1).bytes);
    expect_open_error(g, {"'blk.0.attn_q.weight'", "innermost dimension 128", "Q4_K", "block size 256"});
  }
  {
    GgufBuilder g;
    g.tensor("blk.1.ffn_up.weight", 14, {32, 8}, make_q6_k(256, 1).bytes);
    expect_open_error(g, {"'blk.1.ffn_up.weight'", "innermost dimension 32", "Q6_K", "block size 256"});
  }
  {
    GgufBuilder g;  // Q6_K data short by one byte
    std::vector<uint8_t> b = make_q6_k(512, 2).bytes;
    b.pop_back();
    g.tensor("w", 14, {512}, b);
    expect_open_error(g, {"'w'", "past the end"});
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

}  // namespace
