// common/check.h — invariants that only a bug can break, and the error type for bad inputs.
//
// TESSERA_CHECK(cond) aborts with file:line and the expression: use it for programmer errors only.
// tessera::Error is thrown for bad data (a corrupt file, a wrong config): its message names the file,
// the field or the tensor, and it is caught where it can become a clear message or an HTTP error.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s %s\n", file, line, expr, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tessera

#define TESSERA_CHECK(cond)                                              \
  do {                                                                   \
    if (!(cond)) ::tessera::check_failed(#cond, __FILE__, __LINE__, ""); \
  } while (0)

#define TESSERA_CHECK_MSG(cond, msg)                                        \
  do {                                                                      \
    if (!(cond)) ::tessera::check_failed(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
