// fuzz/heap_mapped_file.cpp — MappedFile (formats/mapped_file.h) for the fuzz targets: the file is read into
// a heap buffer of exactly its size instead of being mapped.
//
// Why: an mmap has no redzone and the tail of its last page reads as zeros, so a reader that runs past the end
// of a small file would go unnoticed; ASan guards a heap buffer byte for byte. The interface and the errors are
// those of mapped_file.cpp ("<path>: cannot open: ..."); an empty file gives data() == nullptr as there.
// Linked as an object, these definitions replace mapped_file.o, which the linker then never takes from the
// tessera_formats archive.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "formats/mapped_file.h"

namespace tessera::formats {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw Error(path + ": cannot open: " + what + (err ? std::string(": ") + std::strerror(err) : std::string()));
}

}  // namespace

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open()", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int err = errno;
    ::close(fd);
    fail(path, S_ISDIR(st.st_mode) ? "is a directory, expected a file" : "not a regular file", err);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint8_t* data = nullptr;
  if (size > 0) {
    data = static_cast<uint8_t*>(std::malloc(size));
    if (data == nullptr) {
      ::close(fd);
      fail(path, "malloc() of " + std::to_string(size) + " bytes", ENOMEM);
    }
    uint64_t done = 0;
    while (done < size) {
      const ssize_t n = ::pread(fd, data + done, size - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : 0;
        std::free(data);
        ::close(fd);
        fail(path, "read()", err);
      }
      done += static_cast<uint64_t>(n);
    }
  }
  ::close(fd);
  return std::unique_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() { std::free(const_cast<uint8_t*>(data_)); }

void MappedFile::prefetch(uint64_t, uint64_t) const {}

}  // namespace tessera::formats
