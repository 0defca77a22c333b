// fuzz/fuzz_tokenizer_json.cpp — the tokenizer.json loader (Tokenizer::from_tokenizer_json) and the tokenizer it
// builds, on arbitrary files.
//
// Feeds: the input split at its first two NUL bytes into tokenizer.json, tokenizer_config.json (written beside
// it when that part is there and not empty, so that bos/eos/add_bos and chat_template are read too) and a text; a
// loaded tokenizer goes through exercise_tokenizer() (exercise_tokenizer.h) with that text. Must hold: only
// tessera::Error is thrown, no sanitizer report, and exercise_tokenizer's checks (ids in range, streamed decode equal
// to decode()).
#include <optional>
#include <string>

#include "common/check.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz/exercise_tokenizer.h"
#include "fuzz/fuzz_support.h"

namespace {
constexpr const char* kTarget = "fuzz_tokenizer_json";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = tessera::fuzz::split(tessera::fuzz::as_view(data, size), '\0', 3);
  const std::string path = tessera::fuzz::write_scratch("tokenizer.json", parts[0]);
  if (parts.size() > 1 && !parts[1].empty())
    tessera::fuzz::write_scratch("tokenizer_config.json", parts[1]);
  else
    tessera::fuzz::remove_scratch("tokenizer_config.json");
  std::optional<tessera::tokenizer::Tokenizer> tok;
  try {
    tok = tessera::tokenizer::Tokenizer::from_tokenizer_json(path);
  } catch (const tessera::Error& e) {
    tessera::fuzz::note(kTarget, e.what());
    return 0;
  }
  tessera::fuzz::note(kTarget, "tokenizer with " + std::to_string(tok->vocab_size()) + " ids");
  tessera::fuzz::exercise_tokenizer(kTarget, *tok, parts.size() > 2 ? parts[2] : std::string_view());
  return 0;
}
