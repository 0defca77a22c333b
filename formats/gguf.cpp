// formats/gguf.cpp — GGUF parsing and validation; see gguf.h.
//
// Layout (all little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv × {string key, u32 type,
// value}, n_tensors × {string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset}, padding to
// `general.alignment` (default 32), tensor data. A string is u64 length + bytes; an array is u32 element type +
// u64 count + elements (arrays may nest).
#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/check.h"
#include "formats/dequant.h"

namespace tessera::formats {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are refused (bounded recursion)
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS

// Bounds-checked little-endian cursor over the mapping. Every error names the file and the current context.
class Reader {
 public:
  Reader(const MappedFile& file) : file_(file) {}

  uint64_t pos() const { return pos_; }
  void seek(uint64_t pos) { pos_ = pos; }
  void set_context(std::string ctx) { ctx_ = std::move(ctx); }
  const std::string& context() const { return ctx_; }

  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(file_.path() + ": " + msg + (ctx_.empty() ? "" : " (" + ctx_ + ")"));
  }

  void need(uint64_t n, const char* what) const {
    if (n > file_.size() || pos_ > file_.size() - n) {
      fail("truncated file: " + std::string(what) + " needs " + std::to_string(n) + " bytes at offset " +
           std::to_string(pos_) + ", file is " + std::to_string(file_.size()) + " bytes");
    }
  }
  void skip(uint64_t n, const char* what) {
    need(n, what);
    pos_ += n;
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, file_.data() + pos_, sizeof(T));  // little-endian host (checked in parse())
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(file_.data() + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  // Skips one string, checking its length.
  void skip_string(const char* what) { skip(read<uint64_t>(what), what); }

 private:
  const MappedFile& file_;
  uint64_t pos_ = 0;
  std::string ctx_;
};

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

// Bytes of a fixed-size scalar type; 0 for STRING and ARRAY.
uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
      return 8;
    case GgufType::STRING:
    case GgufType::ARRAY:
      return 0;
  }
  return 0;
}

// Smallest encoding of one value of `t` (for bounding counts before looping over them).
uint64_t min_size(GgufType t) {
  if (t == GgufType::STRING) return 8;
  if (t == GgufType::ARRAY) return 12;
  return scalar_size(t);
}

bool is_int(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}
bool is_float(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

// Validates (and skips) one value of type t at the reader's position.
void skip_value(Reader& r, GgufType t, int depth) {
  if (t == GgufType::STRING) {
    r.skip_string("a string value");
    return;
  }
  if (t != GgufType::ARRAY) {
    r.skip(scalar_size(t), "a scalar value");
    return;
  }
  if (depth >= kMaxArrayDepth) r.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  const uint32_t et = r.read<uint32_t>("an array element type");
  if (!valid_type(et)) r.fail("invalid array element type " + std::to_string(et));
  const uint64_t count = r.read<uint64_t>("an array length");
  const GgufType elem = static_cast<GgufType>(et);
  // Every element takes at least min_size bytes: a count the file cannot hold is refused before looping.
  if (count > std::numeric_limits<uint64_t>::max() / min_size(elem)) {
    r.fail("array length " + std::to_string(count) + " is absurd");
  }
  r.need(count * min_size(elem), "the array's elements");
  if (scalar_size(elem) > 0) {
    r.skip(count * scalar_size(elem), "the array's elements");
    return;
  }
  for (uint64_t i = 0; i < count; ++i) skip_value(r, elem, depth + 1);
}

struct GgmlType {
  uint32_t id;
  const char* name;
};
constexpr GgmlType kGgmlTypes[] = {
    {0, "F32"},      {1, "F16"},       {2, "Q4_0"},      {3, "Q4_1"},      {6, "Q5_0"},    {7, "Q5_1"},   {8, "Q8_0"},
    {9, "Q8_1"},     {10, "Q2_K"},     {11, "Q3_K"},     {12, "Q4_K"},     {13, "Q5_K"},   {14, "Q6_K"},  {15, "Q8_K"},
    {16, "IQ2_XXS"}, {17, "IQ2_XS"},   {18, "IQ3_XXS"},  {19, "IQ1_S"},    {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"},
    {23, "IQ4_XS"},  {24, "I8"},       {25, "I16"},      {26, "I32"},      {27, "I64"},    {28, "F64"},   {29, "IQ1_M"},
    {30, "BF16"},    {31, "Q4_0_4_4"}, {32, "Q4_0_4_8"}, {33, "Q4_0_8_8"}, {34, "TQ1_0"},  {35, "TQ2_0"},
};

bool dtype_from_ggml(uint32_t id, DType* out) {
  switch (id) {
    case 0:
      *out = DType::F32;
      return true;
    case 1:
      *out = DType::F16;
      return true;
    case 2:
      *out = DType::Q4_0;
      return true;
    case 3:
      *out = DType::Q4_1;
      return true;
    case 8:
      *out = DType::Q8_0;
      return true;
    case 12:
      *out = DType::Q4_K;
      return true;
    case 14:
      *out = DType::Q6_K;
      return true;
    case 30:
      *out = DType::BF16;
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UINT8:
      return "uint8";
    case GgufType::INT8:
      return "int8";
    case GgufType::UINT16:
      return "uint16";
    case GgufType::INT16:
      return "int16";
    case GgufType::UINT32:
      return "uint32";
    case GgufType::INT32:
      return "int32";
    case GgufType::FLOAT32:
      return "float32";
    case GgufType::BOOL:
      return "bool";
    case GgufType::STRING:
      return "string";
    case GgufType::ARRAY:
      return "array";
    case GgufType::UINT64:
      return "uint64";
    case GgufType::INT64:
      return "int64";
    case GgufType::FLOAT64:
      return "float64";
  }
  return "unknown";
}

const char* ggml_type_name(uint32_t type_id) {
  for (const GgmlType& t : kGgmlTypes) {
    if (t.id == type_id) return t.name;
  }
  return "unknown";
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile(MappedFile::open(path)));
  f->parse();
  return f;
}

void GgufFile::parse() {
  static_assert(std::endian::native == std::endian::little, "GGUF reader assumes a little-endian host");
  Reader r(*file_);
  r.set_context("header");
  const uint32_t magic = r.read<uint32_t>("the magic");
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    r.fail(std::string("not a GGUF file: bad magic ") + hex + " (expected \"GGUF\")");
  }
  version_ = r.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 1) r.fail("GGUF version 1 is not supported (expected 2 or 3)");
    // A byte-swapped version means a big-endian file.
    if ((version_ & 0xFFFF) == 0 && version_ != 0) r.fail("big-endian GGUF files are not supported");
    r.fail("unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
  }
  const uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  const uint64_t n_kv = r.read<uint64_t>("the metadata count");
  // Each key/value needs ≥ 8+4+1 bytes and each tensor info ≥ 8+4+4+8: counts the file cannot hold are absurd.
  const uint64_t rest = file_->size() - r.pos();
  if (n_kv > rest / 13) {
    r.fail("metadata count " + std::to_string(n_kv) + " is absurd for a file of " + std::to_string(file_->size()) +
           " bytes");
  }
  if (n_tensors > rest / 24) {
    r.fail("tensor count " + std::to_string(n_tensors) + " is absurd for a file of " + std::to_string(file_->size()) +
           " bytes");
  }

  // --- metadata ---
  key_order_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    r.set_context("metadata entry " + std::to_string(i));
    std::string key = r.read_string("a metadata key");
    r.set_context("metadata key '" + detail::printable(key) + "'");
    if (key.empty()) r.fail("empty metadata key");
    const uint32_t t = r.read<uint32_t>("the value type");
    if (!valid_type(t)) r.fail("invalid value type " + std::to_string(t));
    Kv kv{static_cast<GgufType>(t), r.pos(), GgufType::UINT8, 0};
    if (kv.type == GgufType::ARRAY) {
      const uint64_t start = r.pos();
      const uint32_t et = r.read<uint32_t>("an array element type");
      if (!valid_type(et)) r.fail("invalid array element type " + std::to_string(et));
      kv.elem_type = static_cast<GgufType>(et);
      kv.count = r.read<uint64_t>("an array length");
      r.seek(start);
    }
    skip_value(r, kv.type, 0);
    if (kvs_.count(key)) r.fail("duplicate metadata key");
    kvs_.emplace(key, kv);
    key_order_.push_back(std::move(key));
  }

  // --- alignment ---
  if (auto it = kvs_.find("general.alignment"); it != kvs_.end()) {
    r.set_context("metadata key 'general.alignment'");
    if (!is_int(it->second.type) || it->second.type == GgufType::BOOL) {
      r.fail(std::string("expected an unsigned integer, got ") + gguf_type_name(it->second.type));
    }
    const int64_t a = int_at(it->second.type, it->second.value_offset, "general.alignment");
    if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 30)) {
      r.fail("alignment " + std::to_string(a) + " is not a power of two in [1, 2^30]");
    }
    alignment_ = static_cast<uint64_t>(a);
  }

  // --- tensor infos ---
  tensor_order_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    r.set_context("tensor info " + std::to_string(i));
    Tensor t;
    t.info.name = r.read_string("a tensor name");
    r.set_context("tensor '" + detail::printable(t.info.name) + "'");
    if (t.info.name.empty()) r.fail("empty tensor name");
    const uint32_t n_dims = r.read<uint32_t>("the dimension count");
    if (n_dims > kMaxDims) {
      r.fail("dimension count " + std::to_string(n_dims) + " exceeds " + std::to_string(kMaxDims));
    }
    std::vector<int64_t> ne(n_dims);
    // The product of the nonzero dims must fit: then so does every partial product (numel(), cols() multiply
    // in PyTorch order), also for an empty tensor whose other dims are huge.
    int64_t nonzero = 1;
    bool empty = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t v = r.read<uint64_t>("a dimension");
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          !detail::mul_nonneg(nonzero, v == 0 ? 1 : static_cast<int64_t>(v), &nonzero)) {
        r.fail("dimension " + std::to_string(d) + " = " + std::to_string(v) + " makes the element count overflow");
      }
      empty = empty || v == 0;
      ne[d] = static_cast<int64_t>(v);
    }
    const int64_t numel = empty ? 0 : nonzero;
    const uint32_t type_id = r.read<uint32_t>("the tensor type");
    if (!dtype_from_ggml(type_id, &t.info.dtype)) {
      throw Error("unsupported tensor type " + std::to_string(type_id) + " (" + ggml_type_name(type_id) +
                  ") for tensor '" + detail::printable(t.info.name) + "' in " + file_->path() +
                  "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K");
    }
    t.offset = r.read<uint64_t>("the tensor data offset");
    t.info.shape.assign(ne.rbegin(), ne.rend());
    const int64_t bs = dtype_block_size(t.info.dtype);
    const int64_t ne0 = n_dims == 0 ? 1 : ne[0];
    if (ne0 % bs != 0) {
      r.fail(std::string("innermost dimension ") + std::to_string(ne0) + " of a " + dtype_name(t.info.dtype) +
             " tensor is not a multiple of its block size " + std::to_string(bs));
    }
    t.nbytes = dtype_nbytes(t.info.dtype, numel);
    if (t.nbytes < 0) r.fail("byte size of shape " + shape_string(t.info.shape) + " overflows");
    if (t.offset % alignment_ != 0) {
      r.fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(alignment_));
    }
    if (tensors_.count(t.info.name)) r.fail("duplicate tensor name");
    tensor_order_.push_back(t.info.name);
    std::string name = t.info.name;
    tensors_.emplace(std::move(name), std::move(t));
  }

  // --- data section ---
  r.set_context("");
  const uint64_t end_of_infos = r.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;  // end_of_infos ≤ size: no overflow
  std::vector<const Tensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& name : tensor_order_) {
    const Tensor& t = tensors_.at(name);
    const uint64_t avail = data_offset_ <= file_->size() ? file_->size() - data_offset_ : 0;
    if (t.offset > avail || static_cast<uint64_t>(t.nbytes) > avail - t.offset) {
      throw Error(file_->path() + ": tensor '" + detail::printable(name) + "' data [" + std::to_string(t.offset) +
                  ", +" + std::to_string(t.nbytes) + ") at data section offset " + std::to_string(data_offset_) +
                  " runs past the end of the file (" + std::to_string(file_->size()) + " bytes; truncated?)");
    }
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const Tensor* a, const Tensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Tensor& a = *by_offset[i - 1];
    const Tensor& b = *by_offset[i];
    if (a.nbytes > 0 && b.nbytes > 0 && a.offset + static_cast<uint64_t>(a.nbytes) > b.offset) {
      throw Error(file_->path() + ": tensor '" + detail::printable(a.info.name) + "' data overlaps tensor '" +
                  detail::printable(b.info.name) + "'");
    }
  }
}

// --- metadata access -------------------------------------------------------------------------------------------

void GgufFile::key_error(const std::string& key, const std::string& what) const {
  throw Error(path() + ": metadata key '" + detail::printable(key) + "': " + what);
}

const GgufFile::Kv& GgufFile::kv(const std::string& key) const {
  auto it = kvs_.find(key);
  if (it == kvs_.end()) throw Error(path() + ": missing metadata key '" + detail::printable(key) + "'");
  return it->second;
}

bool GgufFile::has_key(const std::string& key) const { return kvs_.count(key) != 0; }
std::vector<std::string> GgufFile::keys() const { return key_order_; }
GgufType GgufFile::key_type(const std::string& key) const { return kv(key).type; }

GgufType GgufFile::array_type(const std::string& key) const {
  const Kv& v = kv(key);
  if (v.type != GgufType::ARRAY) key_error(key, std::string("expected an array, got ") + gguf_type_name(v.type));
  return v.elem_type;
}

int64_t GgufFile::array_size(const std::string& key) const {
  array_type(key);
  return static_cast<int64_t>(kv(key).count);  // bounded by the file size at parse
}

int64_t GgufFile::int_at(GgufType type, uint64_t offset, const std::string& key) const {
  const uint8_t* p = file_->data() + offset;
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (type) {
    case GgufType::UINT8:
      return load(uint8_t{});
    case GgufType::INT8:
      return load(int8_t{});
    case GgufType::UINT16:
      return load(uint16_t{});
    case GgufType::INT16:
      return load(int16_t{});
    case GgufType::UINT32:
      return load(uint32_t{});
    case GgufType::INT32:
      return load(int32_t{});
    case GgufType::INT64:
      return load(int64_t{});
    case GgufType::BOOL:
      return load(uint8_t{}) != 0;
    case GgufType::UINT64: {
      const uint64_t v = load(uint64_t{});
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        key_error(key, "uint64 value " + std::to_string(v) + " does not fit in int64");
      }
      return static_cast<int64_t>(v);
    }
    default:
      break;
  }
  key_error(key, std::string("expected an integer, got ") + gguf_type_name(type));
}

double GgufFile::float_at(GgufType type, uint64_t offset) const {
  const uint8_t* p = file_->data() + offset;
  if (type == GgufType::FLOAT32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  double d;
  std::memcpy(&d, p, 8);
  return d;
}

std::string GgufFile::get_string(const std::string& key) const {
  const Kv& v = kv(key);
  if (v.type != GgufType::STRING) key_error(key, std::string("expected a string, got ") + gguf_type_name(v.type));
  uint64_t len;
  std::memcpy(&len, file_->data() + v.value_offset, 8);
  return std::string(reinterpret_cast<const char*>(file_->data() + v.value_offset + 8), static_cast<size_t>(len));
}

int64_t GgufFile::get_int(const std::string& key) const {
  const Kv& v = kv(key);
  if (!is_int(v.type)) key_error(key, std::string("expected an integer, got ") + gguf_type_name(v.type));
  return int_at(v.type, v.value_offset, key);
}

double GgufFile::get_float(const std::string& key) const {
  const Kv& v = kv(key);
  if (is_float(v.type)) return float_at(v.type, v.value_offset);
  if (is_int(v.type) && v.type != GgufType::BOOL) {
    if (v.type == GgufType::UINT64) {
      uint64_t u;
      std::memcpy(&u, file_->data() + v.value_offset, 8);
      return static_cast<double>(u);
    }
    return static_cast<double>(int_at(v.type, v.value_offset, key));
  }
  key_error(key, std::string("expected a number, got ") + gguf_type_name(v.type));
}

bool GgufFile::get_bool(const std::string& key) const {
  const Kv& v = kv(key);
  if (v.type != GgufType::BOOL) key_error(key, std::string("expected a bool, got ") + gguf_type_name(v.type));
  return file_->data()[v.value_offset] != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const Kv& v = kv(key);
  if (v.type != GgufType::ARRAY || v.elem_type != GgufType::STRING) {
    key_error(key, std::string("expected an array of strings, got ") + gguf_type_name(v.type) +
                       (v.type == GgufType::ARRAY ? std::string(" of ") + gguf_type_name(v.elem_type) : ""));
  }
  std::vector<std::string> out;
  out.reserve(v.count);
  uint64_t pos = v.value_offset + 12;  // validated at parse
  for (uint64_t i = 0; i < v.count; ++i) {
    uint64_t len;
    std::memcpy(&len, file_->data() + pos, 8);
    out.emplace_back(reinterpret_cast<const char*>(file_->data() + pos + 8), static_cast<size_t>(len));
    pos += 8 + len;
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const Kv& v = kv(key);
  if (v.type != GgufType::ARRAY || !is_int(v.elem_type)) {
    key_error(key, std::string("expected an array of integers, got ") + gguf_type_name(v.type) +
                       (v.type == GgufType::ARRAY ? std::string(" of ") + gguf_type_name(v.elem_type) : ""));
  }
  std::vector<int64_t> out(v.count);
  const uint64_t es = scalar_size(v.elem_type);
  for (uint64_t i = 0; i < v.count; ++i) out[i] = int_at(v.elem_type, v.value_offset + 12 + i * es, key);
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const Kv& v = kv(key);
  const bool ok =
      v.type == GgufType::ARRAY && (is_float(v.elem_type) || (is_int(v.elem_type) && v.elem_type != GgufType::BOOL));
  if (!ok) {
    key_error(key, std::string("expected an array of numbers, got ") + gguf_type_name(v.type) +
                       (v.type == GgufType::ARRAY ? std::string(" of ") + gguf_type_name(v.elem_type) : ""));
  }
  std::vector<double> out(v.count);
  const uint64_t es = scalar_size(v.elem_type);
  for (uint64_t i = 0; i < v.count; ++i) {
    const uint64_t off = v.value_offset + 12 + i * es;
    if (is_float(v.elem_type)) {
      out[i] = float_at(v.elem_type, off);
    } else if (v.elem_type == GgufType::UINT64) {
      uint64_t u;
      std::memcpy(&u, file_->data() + off, 8);
      out[i] = static_cast<double>(u);
    } else {
      out[i] = static_cast<double>(int_at(v.elem_type, off, key));
    }
  }
  return out;
}

// --- tensors ---------------------------------------------------------------------------------------------------

const GgufFile::Tensor& GgufFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path() + ": no tensor '" + detail::printable(name) + "'");
  return it->second;
}

std::vector<std::string> GgufFile::names() const { return tensor_order_; }
bool GgufFile::has(const std::string& name) const { return tensors_.count(name) != 0; }
const TensorInfo& GgufFile::info(const std::string& name) const { return tensor(name).info; }

const void* GgufFile::data(const std::string& name) const {
  const Tensor& t = tensor(name);
  if (t.nbytes == 0) return file_->data();  // may be null for a file with no data at all
  return file_->data() + data_offset_ + t.offset;
}

int64_t GgufFile::nbytes(const std::string& name) const { return tensor(name).nbytes; }

uint64_t GgufFile::file_offset(const std::string& name) const { return data_offset_ + tensor(name).offset; }

void GgufFile::read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
                    float* out) const {
  const Tensor& t = tensor(name);
  detail::check_read_range(path(), t.info, row_begin, row_end, col_begin, col_end, out);
  if (row_end == row_begin || col_end == col_begin) return;
  detail::read_block(t.info, file_->data() + data_offset_ + t.offset, row_begin, row_end, col_begin, col_end, out);
}

}  // namespace tessera::formats
