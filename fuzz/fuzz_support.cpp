// fuzz/fuzz_support.cpp — the scratch directory, the splitter and the sanitizer defaults of every target.
#include "fuzz/fuzz_support.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

// A UBSan report is a finding: stop at the first one (libFuzzer then saves the input), with its stack.
extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:print_stacktrace=1"; }

namespace tessera::fuzz {
namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_support: %s: %s\n", what.c_str(), std::strerror(errno));
  std::abort();
}

// Made on first use; removed by its destructor at a normal exit.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* env = std::getenv("TESSERA_FUZZ_SCRATCH");
    const char* base = env && *env ? env : std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    path = std::string(base) + "/tessera-fuzz-" + std::to_string(::getpid());
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) die("mkdir " + path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

}  // namespace

std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open " + path);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("write " + path);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return path;
}

void remove_scratch(const std::string& name) { ::unlink((scratch_dir() + "/" + name).c_str()); }

std::vector<std::string_view> split(std::string_view s, char sep, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = s.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(s.substr(0, at));
    s.remove_prefix(at + 1);
  }
  parts.push_back(s);
  return parts;
}

void note(const char* target, const std::string& what) {
  static const bool verbose = [] {
    const char* v = std::getenv("TESSERA_FUZZ_VERBOSE");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (verbose) std::fprintf(stderr, "%s: %s\n", target, what.c_str());
}

void invariant_failed(const char* target, const std::string& what) {
  std::fprintf(stderr, "%s: invariant violated: %s\n", target, what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tessera::fuzz
