// tests/worker/test_safetensors.cpp — the safetensors reader (worker/model/): single files and directories
// (sharded or not) built here, and bad headers and offsets, and random byte flips in the header: each a
// tessera::Error naming the file, never a crash.
#include <gtest/gtest.h>

#include "tests/formats/formats_util.h"

using namespace tessera::formats_test;

namespace {

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

}  // namespace
