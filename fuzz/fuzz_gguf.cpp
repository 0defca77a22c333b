// fuzz/fuzz_gguf.cpp — the GGUF reader (formats/gguf.h) and the GGUF tokenizer loader on arbitrary files.
//
// Feeds: the input as a file to GgufFile::open(); then every metadata key through every getter (the right one
// and the wrong ones), every tensor's info/nbytes/data, fp32 reads of small tensors (whole, a block picked by
// the input's last bytes, and out-of-range blocks), and, when tokenizer.ggml.model is present,
// Tokenizer::from_gguf() followed by exercise_tokenizer().
// Must hold: only tessera::Error is thrown; no sanitizer report (the file is a heap copy, so a read past its
// end is one: heap_mapped_file.cpp); a block read equals the same block of the whole-tensor read, bit for bit;
// getters agree with key_type()/array_size().
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz/exercise_tokenizer.h"
#include "fuzz/check_tensor_reads.h"
#include "fuzz/fuzz_support.h"
#include "formats/gguf.h"

namespace {

using tessera::Error;
using tessera::formats::GgufFile;
using tessera::formats::GgufType;
using tessera::fuzz::throws_error;

constexpr const char* kTarget = "fuzz_gguf";
constexpr int64_t kMaxReadElements = int64_t{1} << 20;  // larger tensors: info only (the reads cost time)

void exercise_key(const GgufFile& f, const std::string& key) {
  const GgufType type = f.key_type(key);
  const bool is_array = type == GgufType::ARRAY;
  const GgufType elem = is_array ? f.array_type(key) : type;
  const bool is_string = elem == GgufType::STRING;
  const bool is_number = elem != GgufType::STRING && elem != GgufType::ARRAY;
  (void)gguf_type_name(type);

  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f.get_string(key); }) != (type == GgufType::STRING), key);
  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f.get_bool(key); }) != (type == GgufType::BOOL), key);
  // get_int may also refuse a uint64 past INT64_MAX; get_float takes every number but bool.
  const bool int_ok = !throws_error([&] { (void)f.get_int(key); });
  FUZZ_ASSERT(kTarget, !int_ok || (!is_array && is_number && type != GgufType::FLOAT32 && type != GgufType::FLOAT64),
              key);
  const bool float_ok = !throws_error([&] { (void)f.get_float(key); });
  FUZZ_ASSERT(kTarget, float_ok == (!is_array && is_number && type != GgufType::BOOL), key);
  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f.array_size(key); }) != is_array, key);

  std::vector<std::string> strings;
  const bool strings_ok = !throws_error([&] { strings = f.get_string_array(key); });
  FUZZ_ASSERT(kTarget, strings_ok == (is_array && is_string), key);
  std::vector<int64_t> ints;
  const bool ints_ok = !throws_error([&] { ints = f.get_int_array(key); });
  FUZZ_ASSERT(kTarget, !ints_ok || (is_array && is_number), key);
  std::vector<double> floats;
  const bool floats_ok = !throws_error([&] { floats = f.get_float_array(key); });
  FUZZ_ASSERT(kTarget, floats_ok == (is_array && is_number && elem != GgufType::BOOL), key);
  if (is_array) {
    const auto n = static_cast<size_t>(f.array_size(key));
    FUZZ_ASSERT(kTarget, !strings_ok || strings.size() == n, key);
    FUZZ_ASSERT(kTarget, !ints_ok || ints.size() == n, key);
    FUZZ_ASSERT(kTarget, !floats_ok || floats.size() == n, key);
  }
}

void exercise_tensor(const GgufFile& f, const std::string& name, uint64_t file_size, uint32_t knob) {
  const auto& info = f.info(name);
  FUZZ_ASSERT(kTarget, info.name == name && f.has(name), name);
  const int64_t nbytes = f.nbytes(name);
  const uint64_t offset = f.file_offset(name);
  FUZZ_ASSERT(kTarget, nbytes >= 0, name);
  if (nbytes > 0) {
    FUZZ_ASSERT(kTarget, offset <= file_size && static_cast<uint64_t>(nbytes) <= file_size - offset,
                "tensor '" + name + "' lies outside the file");
    const auto* p = static_cast<const uint8_t*>(f.data(name));
    FUZZ_ASSERT(kTarget, p != nullptr, name);
    // The first and last raw bytes: ASan checks both against the heap copy of the file.
    volatile uint8_t ends = p[0] ^ p[nbytes - 1];
    (void)ends;
  }
  (void)tessera::formats::dtype_name(info.dtype);
  (void)tessera::formats::shape_string(info.shape);
  tessera::fuzz::check_tensor_reads(kTarget, f, name, knob, kMaxReadElements);
}

void exercise(const GgufFile& f, std::string_view input) {
  (void)f.version();
  (void)f.alignment();
  (void)f.data_offset();
  for (const std::string& key : f.keys()) {
    FUZZ_ASSERT(kTarget, f.has_key(key), key);
    exercise_key(f, key);
  }
  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f.key_type("no such key \x01"); }), "missing key");
  uint32_t knob = 0;
  if (input.size() >= 4) std::memcpy(&knob, input.data() + input.size() - 4, 4);
  for (const std::string& name : f.names()) exercise_tensor(f, name, input.size(), knob);
  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f.info("no such tensor \x01"); }), "missing tensor");

  if (f.has_key("tokenizer.ggml.model")) {
    std::optional<tessera::tokenizer::Tokenizer> tok;
    try {
      tok = tessera::tokenizer::Tokenizer::from_gguf(f);
      tessera::fuzz::note(kTarget, "tokenizer with " + std::to_string(tok->vocab_size()) + " ids");
    } catch (const Error& e) {
      tessera::fuzz::note(kTarget, e.what());
    }
    if (tok)
      tessera::fuzz::exercise_tokenizer(kTarget, *tok, input.substr(input.size() - std::min<size_t>(input.size(), 48)));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = tessera::fuzz::as_view(data, size);
  const std::string path = tessera::fuzz::write_scratch("model.gguf", input);
  std::unique_ptr<GgufFile> f;
  try {
    f = GgufFile::open(path);
  } catch (const Error& e) {
    tessera::fuzz::note(kTarget, e.what());
    return 0;
  }
  tessera::fuzz::note(kTarget, "opened: " + std::to_string(f->keys().size()) + " keys, " +
                                   std::to_string(f->names().size()) + " tensors");
  exercise(*f, input);
  return 0;
}
