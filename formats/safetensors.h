// formats/safetensors.h — safetensors checkpoints: one file, or a Hugging Face directory of shards.
//
// In:  "<dir>/model.safetensors", or "<dir>/model.safetensors.index.json" whose weight_map names each tensor's
//      shard; or a single .safetensors file. Files are memory-mapped.
// Out: the TensorSource interface for F32, F16 and BF16 tensors (shapes as stored: PyTorch order) and the raw
//      mapped bytes (data()). Tensors of other dtypes (I64 buffers, F64, ...) are validated but not listed by
//      names(); info()/read() of one is an Error naming its dtype.
// Guarantees: the 8-byte header length, the header JSON, every entry's dtype/shape/data_offsets (in range, equal
//      to shape × dtype size, not overlapping) and, for a directory, every shard and weight_map entry are checked
//      at open; any fault is a tessera::Error naming the file and the tensor.
// Thread-safety: immutable after open; concurrent const calls are safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/tensor_source.h"

namespace tessera::formats {

// A Hugging Face directory: model.safetensors, or model.safetensors.index.json with shards; dtypes F32, F16, BF16.
std::unique_ptr<TensorSource> open_safetensors_dir(const std::string& dir);
// A single .safetensors file.
std::unique_ptr<TensorSource> open_safetensors_file(const std::string& path);

// One .safetensors file (what open_safetensors_file returns; exposed for its metadata).
class SafetensorsFile : public TensorSource {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  // The header's "__metadata__" string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section (8 + header length)

  const std::string& path() const override { return file_->path(); }
  std::vector<std::string> names() const override;  // supported-dtype tensors, sorted by name
  bool has(const std::string& name) const override;
  const TensorInfo& info(const std::string& name) const override;
  void read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
            float* out) const override;
  const void* data(const std::string& name) const override;
  int64_t nbytes(const std::string& name) const override;

  // Whether the file has a tensor of this name in any dtype (supported or not).
  bool contains(const std::string& name) const { return tensors_.count(name) || unsupported_.count(name); }

 private:
  struct Tensor {
    TensorInfo info;
    uint64_t begin;  // relative to data_offset_
    int64_t nbytes;
  };

  explicit SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  void parse();
  const Tensor& tensor(const std::string& name) const;

  std::unique_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, Tensor> tensors_;
  std::unordered_map<std::string, std::string> unsupported_;  // name → dtype string
};

}  // namespace tessera::formats
