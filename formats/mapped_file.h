// formats/mapped_file.h — a whole file memory-mapped read-only (mmap, MAP_PRIVATE, PROT_READ).
//
// In:  a path. Out: the file's bytes as [data(), data() + size()), valid for the object's lifetime.
// Guarantees: open errors are tessera::Error "<path>: cannot open: <reason>"; an empty file maps to
//      size() == 0 and data() == nullptr. Pages are loaded on first touch, so mapping a 100 GB checkpoint costs
//      nothing until a shard is read. Not copyable, not movable (readers keep pointers into it).
//      The file must not be truncated in place while mapped (a read of a vanished page is SIGBUS, as with any
//      mmap); replacing it by rename is safe.
// Thread-safety: immutable after open; safe to share between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace tessera::formats {

class MappedFile {
 public:
  static std::unique_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

  // Hints the kernel that [offset, offset+length) will be read soon (madvise WILLNEED); out-of-range is clipped.
  void prefetch(uint64_t offset, uint64_t length) const;

 private:
  MappedFile(std::string path, const uint8_t* data, uint64_t size) : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tessera::formats
