// fuzz/fuzz_support.h — what the libFuzzer targets share: the input as a file for readers that take a path,
// and small helpers to carve the input into parts.
//
// Exception policy of every target: the code under test may throw only the types its header documents
// (tessera::Error, api::ApiError); the target catches those and nothing else, so any other exception reaches
// std::terminate and libFuzzer records the input as a crash.
// Not thread-safe: libFuzzer runs one input at a time in a process (-jobs/-workers use processes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::fuzz {

// Writes `bytes` to `name` in this process's scratch directory and returns its path: <base>/tessera-fuzz-<pid>,
// base $TESSERA_FUZZ_SCRATCH, else /dev/shm (else /tmp); removed at a normal exit (a crash leaves it behind).
std::string write_scratch(const std::string& name, std::string_view bytes);
// Removes `name` from the scratch directory if it is there.
void remove_scratch(const std::string& name);

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// `s` split at each occurrence of `sep`, at most `max_parts` parts (the last keeps any further separators).
std::vector<std::string_view> split(std::string_view s, char sep, size_t max_parts);

// With TESSERA_FUZZ_VERBOSE=1 in the environment, prints "<target>: <what>" to stderr (why an input was
// refused, what a seed opened as); otherwise nothing. For checking seeds: `fuzz_x corpus/fuzz_x/*`.
void note(const char* target, const std::string& what);

// Aborts with a message when an invariant of the code under test does not hold (libFuzzer records a crash).
[[noreturn]] void invariant_failed(const char* target, const std::string& what);

}  // namespace tessera::fuzz

#define FUZZ_ASSERT(target, cond, what)                                                       \
  do {                                                                                        \
    if (!(cond)) ::tessera::fuzz::invariant_failed(target, std::string(#cond ": ") + (what)); \
  } while (0)
