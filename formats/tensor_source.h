// formats/tensor_source.h — uniform, read-only access to the tensors of a checkpoint.
//
// In:  a GGUF file (gguf.h) or a Hugging Face safetensors file/directory (safetensors.h).
// Out: per tensor a TensorInfo (name, dtype, PyTorch-order shape) and fp32 values of any 2-D block of the tensor
//      viewed as [rows(), cols()] — which is how a tensor-parallel worker reads only its shard (a row range or a
//      column range) straight from the memory-mapped file.
// Guarantees: every reader validates the whole file at open (sizes, offsets, overlaps, dtypes) and reports a bad
//      file as tessera::Error naming the file and the tensor or key; after a successful open no read can touch
//      memory outside the mapping.
// Thread-safety: thread-compatible. Readers are immutable after open; concurrent const calls are safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessera::formats {

// Storage types the readers understand (see dequant.h for the block layouts): Q8_0, Q4_0, Q4_1 are GGML blocks of
// 32 values; Q4_K and Q6_K are GGML K-quant super-blocks of 256 values. New types are appended: the existing
// values keep their meaning.
enum class DType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K };

const char* dtype_name(DType type);
// Values per block (1 for F32/F16/BF16, 32 for Q8_0/Q4_0/Q4_1, 256 for Q4_K/Q6_K) and bytes per block
// (Q8_0 34, Q4_0 18, Q4_1 20, Q4_K 144, Q6_K 210).
int64_t dtype_block_size(DType type);
int64_t dtype_block_bytes(DType type);
// Bytes that n values of `type` occupy; -1 when n is negative, not a multiple of the block size, or overflows.
int64_t dtype_nbytes(DType type, int64_t n);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // PyTorch order, outermost first (GGUF's ne[] reversed)

  int64_t numel() const;
  int64_t rows() const;  // shape[0] (1 for a 0-d/1-d tensor: a 1-d tensor is one row)
  int64_t cols() const;  // product of the remaining dims (shape[0] for 1-d, 1 for 0-d)
};

// "[a, b, c]" — how shapes appear in every message.
std::string shape_string(const std::vector<int64_t>& shape);

// Uniform access to the tensors of a checkpoint (one GGUF file, or a HF directory of safetensors shards).
// Thread-compatible: concurrent const calls are safe.
class TensorSource {
 public:
  virtual ~TensorSource() = default;

  virtual const std::string& path() const = 0;  // file or directory, for messages
  virtual std::vector<std::string> names() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // Throws tessera::Error "<path>: no tensor '<name>'".
  virtual const TensorInfo& info(const std::string& name) const = 0;
  // Dequantize the 2-D block [row_begin,row_end) x [col_begin,col_end) of the tensor viewed as [rows(), cols()]
  // into out (fp32, dense, (row_end-row_begin)*(col_end-col_begin) floats). Range errors throw tessera::Error.
  virtual void read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
                    float* out) const = 0;

  // The 0-copy path: the tensor's raw bytes in the file mapping (layout given by info().dtype, row-major in
  // PyTorch order), valid while the source lives. Sources without a mapping throw tessera::Error.
  virtual const void* data(const std::string& name) const;
  virtual int64_t nbytes(const std::string& name) const;
  // Drops this process's resident pages of the tensor's bytes (madvise DONTNEED on the whole pages inside them):
  // after a loader has copied or converted a tensor, the file's pages no longer count in its RSS. The bytes stay
  // readable (a later read faults them in again from the page cache). Advice only: failures are ignored.
  void release(const std::string& name) const;

  // Whole tensor as fp32.
  std::vector<float> read_all(const std::string& name) const;
  // Shape check helper: throws tessera::Error "<path>: tensor '<name>' has shape [a, b], expected [c, d]"
  // (or "<path>: no tensor '<name>'").
  const TensorInfo& expect(const std::string& name, const std::vector<int64_t>& shape) const;
};

// Opens by what the path is: a directory → open_safetensors_dir, "*.gguf" → GgufFile::open,
// "*.safetensors" → open_safetensors_file; anything else is an Error naming the path.
std::unique_ptr<TensorSource> open_tensor_source(const std::string& path);

namespace detail {
// Validates a read() range against `info` and the output pointer; throws tessera::Error naming path and tensor.
void check_read_range(const std::string& path, const TensorInfo& info, int64_t row_begin, int64_t row_end,
                      int64_t col_begin, int64_t col_end, const float* out);
// read() for a tensor stored densely, row-major, at `base` (the common part of both readers).
void read_block(const TensorInfo& info, const void* base, int64_t row_begin, int64_t row_end, int64_t col_begin,
                int64_t col_end, float* out);
// A name or key as it appears in messages: control bytes escaped as \xNN (a NUL would cut what() short), and
// names past 256 bytes shortened with "...".
std::string printable(const std::string& name);
// Overflow-checked helpers for size arithmetic: false on overflow or negative inputs.
bool mul_nonneg(int64_t a, int64_t b, int64_t* result);
bool add_nonneg(int64_t a, int64_t b, int64_t* result);
}  // namespace detail

}  // namespace tessera::formats
