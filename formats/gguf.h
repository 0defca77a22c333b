// formats/gguf.h — a GGUF (v2/v3, little-endian) checkpoint: metadata key/values and tensors.
//
// In:  a .gguf file, memory-mapped. Out: typed metadata getters and the TensorSource interface (fp32 reads of
//      any row/column block, dequantizing F16, BF16, Q8_0, Q4_0, Q4_1), plus the raw mapped bytes (data()).
// Guarantees: open() validates the whole header — magic, version, counts, every string and (nested) array
//      length, key uniqueness, tensor dims/types/offsets/alignment/overlap — against the file size, with
//      overflow-checked arithmetic; any fault is a tessera::Error naming the file and the key or tensor.
//      Shapes are PyTorch order (GGUF's ne[] reversed). Metadata values are decoded from the mapping on demand.
// Thread-safety: immutable after open(); concurrent const calls are safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/tensor_source.h"

namespace tessera::formats {

// GGUF metadata value types (the file's numbering).
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType type);
// GGML tensor type name for an id ("Q4_K" for 12), "unknown" for ids ggml never used.
const char* ggml_type_name(uint32_t type_id);

class GgufFile : public TensorSource {
 public:
  // Throws tessera::Error naming the path and what is wrong.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data section

  bool has_key(const std::string& key) const;
  std::vector<std::string> keys() const;  // file order
  GgufType key_type(const std::string& key) const;
  // For an ARRAY key: the element type and length (Error if the key is not an array).
  GgufType array_type(const std::string& key) const;
  int64_t array_size(const std::string& key) const;

  // Missing key / wrong type: tessera::Error naming the file and the key.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;   // any integer type (and bool); uint64 > INT64_MAX is an Error
  double get_float(const std::string& key) const;  // f32/f64, also integers
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;   // arrays of any integer type (and bool)
  std::vector<double> get_float_array(const std::string& key) const;  // arrays of f32/f64 or integers

  // TensorSource
  const std::string& path() const override { return file_->path(); }
  std::vector<std::string> names() const override;  // file order
  bool has(const std::string& name) const override;
  const TensorInfo& info(const std::string& name) const override;
  void read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
            float* out) const override;
  const void* data(const std::string& name) const override;
  int64_t nbytes(const std::string& name) const override;
  // Offset of the tensor's bytes from the start of the file.
  uint64_t file_offset(const std::string& name) const;

 private:
  struct Kv {
    GgufType type;
    uint64_t value_offset;  // file offset of the value (for arrays: of the element type field)
    GgufType elem_type;     // arrays only
    uint64_t count;         // arrays only
  };
  struct Tensor {
    TensorInfo info;
    uint64_t offset;  // relative to data_offset_
    int64_t nbytes;
  };

  explicit GgufFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  void parse();
  const Kv& kv(const std::string& key) const;
  const Tensor& tensor(const std::string& name) const;
  [[noreturn]] void key_error(const std::string& key, const std::string& what) const;
  // Decodes the scalar at `offset` of integer/bool/float `type`.
  int64_t int_at(GgufType type, uint64_t offset, const std::string& key) const;
  double float_at(GgufType type, uint64_t offset) const;

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> key_order_;
  std::unordered_map<std::string, Kv> kvs_;
  std::vector<std::string> tensor_order_;
  std::unordered_map<std::string, Tensor> tensors_;
};

}  // namespace tessera::formats
