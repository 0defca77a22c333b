// fuzz/fuzz_safetensors.cpp — the safetensors reader (formats/safetensors.h) on arbitrary files.
//
// Feeds: the input as a .safetensors file to SafetensorsFile::open() (what open_safetensors_file() returns);
// then the metadata, every listed tensor's info/nbytes/data, fp32 reads of small tensors (whole, a block
// picked by the input's last bytes, out-of-range blocks), and info() of names it does not list.
// Must hold: only tessera::Error is thrown; no sanitizer report (the file is a heap copy: heap_mapped_file.cpp);
// every listed tensor lies inside the data section; a block read equals the same block of the whole read.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "fuzz/check_tensor_reads.h"
#include "fuzz/fuzz_support.h"
#include "formats/safetensors.h"

namespace {

using tessera::Error;
using tessera::formats::SafetensorsFile;
using tessera::fuzz::throws_error;

constexpr const char* kTarget = "fuzz_safetensors";
constexpr int64_t kMaxReadElements = int64_t{1} << 20;

void exercise_tensor(const SafetensorsFile& f, const std::string& name, uint64_t file_size, uint32_t knob) {
  const auto& info = f.info(name);
  FUZZ_ASSERT(kTarget, info.name == name && f.has(name) && f.contains(name), name);
  const int64_t nbytes = f.nbytes(name);
  FUZZ_ASSERT(kTarget, nbytes >= 0 && nbytes == tessera::formats::dtype_nbytes(info.dtype, info.numel()), name);
  const auto* p = static_cast<const uint8_t*>(f.data(name));
  if (nbytes > 0) {
    FUZZ_ASSERT(kTarget, p != nullptr && f.data_offset() <= file_size, name);
    // The first and last raw bytes: ASan checks both against the heap copy of the file.
    volatile uint8_t ends = p[0] ^ p[nbytes - 1];
    (void)ends;
  }
  tessera::fuzz::check_tensor_reads(kTarget, f, name, knob, kMaxReadElements);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = tessera::fuzz::as_view(data, size);
  const std::string path = tessera::fuzz::write_scratch("model.safetensors", input);
  std::unique_ptr<SafetensorsFile> f;
  try {
    f = SafetensorsFile::open(path);
  } catch (const Error& e) {
    tessera::fuzz::note(kTarget, e.what());
    return 0;
  }
  tessera::fuzz::note(kTarget, "opened: " + std::to_string(f->names().size()) + " tensors");
  FUZZ_ASSERT(kTarget, f->data_offset() >= 8 && f->data_offset() <= size, "data section outside the file");
  for (const auto& [k, v] : f->metadata()) (void)(k.size() + v.size());
  uint32_t knob = 0;
  if (size >= 4) std::memcpy(&knob, data + size - 4, 4);
  const std::vector<std::string> names = f->names();
  for (const std::string& name : names) exercise_tensor(*f, name, size, knob);
  // Unknown and unsupported-dtype names: info() refuses them with an Error.
  FUZZ_ASSERT(kTarget, throws_error([&] { (void)f->info("no such tensor \x01"); }), "missing tensor");
  FUZZ_ASSERT(kTarget, !f->has("__metadata__"), "__metadata__ listed as a tensor");
  return 0;
}
