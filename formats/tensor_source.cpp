// formats/tensor_source.cpp — DType tables, TensorInfo, the shared read path, open_tensor_source.
#include "formats/tensor_source.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <limits>

#include "common/check.h"
#include "formats/dequant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace tessera::formats {

const char* dtype_name(DType type) {
  switch (type) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::Q8_0:
      return "Q8_0";
    case DType::Q4_0:
      return "Q4_0";
    case DType::Q4_1:
      return "Q4_1";
    case DType::Q4_K:
      return "Q4_K";
    case DType::Q6_K:
      return "Q6_K";
  }
  return "?";
}

int64_t dtype_block_size(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return 1;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
      return 32;
    case DType::Q4_K:
    case DType::Q6_K:
      return 256;
  }
  return 1;
}

int64_t dtype_block_bytes(DType type) {
  switch (type) {
    case DType::F32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::Q8_0:
      return 34;
    case DType::Q4_0:
      return 18;
    case DType::Q4_1:
      return 20;
    case DType::Q4_K:
      return 144;
    case DType::Q6_K:
      return 210;
  }
  return 4;
}

int64_t dtype_nbytes(DType type, int64_t n) {
  const int64_t bs = dtype_block_size(type);
  if (n < 0 || n % bs != 0) return -1;
  int64_t bytes = 0;
  if (!detail::mul_nonneg(n / bs, dtype_block_bytes(type), &bytes)) return -1;
  return bytes;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // readers reject shapes whose product overflows
  return n;
}

int64_t TensorInfo::rows() const { return shape.size() <= 1 ? 1 : shape[0]; }

int64_t TensorInfo::cols() const {
  if (shape.empty()) return 1;
  if (shape.size() == 1) return shape[0];
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

const void* TensorSource::data(const std::string& name) const {
  info(name);  // "no tensor" comes first
  throw Error(path() + ": tensor '" + detail::printable(name) + "' has no memory-mapped bytes in this source");
}

int64_t TensorSource::nbytes(const std::string& name) const {
  const TensorInfo& ti = info(name);
  return dtype_nbytes(ti.dtype, ti.numel());
}

void TensorSource::release(const std::string& name) const {
  const auto addr = reinterpret_cast<uintptr_t>(data(name));
  const auto n = static_cast<uintptr_t>(nbytes(name));
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (addr + page - 1) / page * page, end = (addr + n) / page * page;
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::vector<float> TensorSource::read_all(const std::string& name) const {
  const TensorInfo& ti = info(name);
  std::vector<float> out(static_cast<size_t>(ti.numel()));
  read(name, 0, ti.rows(), 0, ti.cols(), out.data());
  return out;
}

const TensorInfo& TensorSource::expect(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& ti = info(name);
  if (ti.shape != shape) {
    throw Error(path() + ": tensor '" + detail::printable(name) + "' has shape " + shape_string(ti.shape) +
                ", expected " + shape_string(shape));
  }
  return ti;
}

std::unique_ptr<TensorSource> open_tensor_source(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return open_safetensors_dir(path);
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".gguf")) return GgufFile::open(path);
  if (ends_with(".safetensors")) return open_safetensors_file(path);
  throw Error(path +
              ": not a model checkpoint: expected a .gguf file, a .safetensors file or a Hugging Face "
              "directory");
}

namespace detail {

std::string printable(const std::string& name) {
  constexpr size_t kMax = 256;
  std::string out;
  for (size_t i = 0; i < name.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (name.size() > kMax) out += "...";
  return out;
}

bool mul_nonneg(int64_t a, int64_t b, int64_t* result) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return false;
  *result = a * b;
  return true;
}

bool add_nonneg(int64_t a, int64_t b, int64_t* result) {
  if (a < 0 || b < 0) return false;
  if (a > std::numeric_limits<int64_t>::max() - b) return false;
  *result = a + b;
  return true;
}

void check_read_range(const std::string& path, const TensorInfo& info, int64_t row_begin, int64_t row_end,
                      int64_t col_begin, int64_t col_end, const float* out) {
  const int64_t rows = info.rows(), cols = info.cols();
  if (!(0 <= row_begin && row_begin <= row_end && row_end <= rows && 0 <= col_begin && col_begin <= col_end &&
        col_end <= cols)) {
    throw Error(path + ": read of tensor '" + printable(info.name) + "' (viewed as [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "]): block rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                ") x cols [" + std::to_string(col_begin) + ", " + std::to_string(col_end) + ") is out of range");
  }
  if (out == nullptr && row_end > row_begin && col_end > col_begin) {
    throw Error(path + ": read of tensor '" + printable(info.name) + "' into a null output buffer");
  }
}

void read_block(const TensorInfo& info, const void* base, int64_t row_begin, int64_t row_end, int64_t col_begin,
                int64_t col_end, float* out) {
  const int64_t cols = info.cols();
  const int64_t width = col_end - col_begin;
  if (width == 0) return;
  for (int64_t r = row_begin; r < row_end; ++r) {
    dequantize_range(info.dtype, base, r * cols + col_begin, r * cols + col_end, out);
    out += width;
  }
}

}  // namespace detail

}  // namespace tessera::formats
