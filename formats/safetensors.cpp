// formats/safetensors.cpp — safetensors parsing/validation and the sharded-directory source; see
// safetensors.h. File layout: u64 little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data section
// (offsets are relative to its start).
#include "formats/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/check.h"

namespace tessera::formats {

namespace {

using nlohmann::json;

// Element sizes of the safetensors dtypes we know; 0 for an unknown dtype string.
int64_t st_dtype_size(const std::string& dtype) {
  static const std::unordered_map<std::string, int64_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8},
  };
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

bool st_dtype_supported(const std::string& dtype, DType* out) {
  if (dtype == "F32")
    *out = DType::F32;
  else if (dtype == "F16")
    *out = DType::F16;
  else if (dtype == "BF16")
    *out = DType::BF16;
  else
    return false;
  return true;
}

// A non-negative JSON integer that fits int64, or false.
bool json_index(const json& j, int64_t* out) {
  if (!j.is_number_unsigned()) return false;
  const uint64_t v = j.get<uint64_t>();
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string join(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// A checkpoint split over shards by model.safetensors.index.json.
class SafetensorsDir : public TensorSource {
 public:
  SafetensorsDir(std::string dir, std::vector<std::unique_ptr<SafetensorsFile>> shards,
                 std::map<std::string, const SafetensorsFile*> where)
      : dir_(std::move(dir)), shards_(std::move(shards)), where_(std::move(where)) {}

  const std::string& path() const override { return dir_; }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, shard] : where_) {
      if (shard->has(name)) out.push_back(name);
    }
    return out;
  }
  bool has(const std::string& name) const override {
    auto it = where_.find(name);
    return it != where_.end() && it->second->has(name);
  }
  const TensorInfo& info(const std::string& name) const override { return shard(name).info(name); }
  void read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin, int64_t col_end,
            float* out) const override {
    shard(name).read(name, row_begin, row_end, col_begin, col_end, out);
  }
  const void* data(const std::string& name) const override { return shard(name).data(name); }
  int64_t nbytes(const std::string& name) const override { return shard(name).nbytes(name); }

 private:
  const SafetensorsFile& shard(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) throw Error(dir_ + ": no tensor '" + detail::printable(name) + "'");
    return *it->second;
  }

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsFile*> where_;
};

std::unique_ptr<TensorSource> open_index(const std::string& dir, const std::string& index_path) {
  auto index_file = MappedFile::open(index_path);
  json index;
  try {
    const char* p = reinterpret_cast<const char*>(index_file->data());
    index = json::parse(p, p + index_file->size());
  } catch (const json::exception& e) {
    throw Error(index_path + ": invalid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw Error(index_path + ": expected an object with a \"weight_map\" object");
  }
  std::map<std::string, size_t> shard_ids;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  std::map<std::string, const SafetensorsFile*> where;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw Error(index_path + ": weight_map entry for tensor '" + detail::printable(name) + "' is not a string");
    const std::string shard_name = file.get<std::string>();
    if (shard_name.empty() || shard_name[0] == '/' || shard_name.find("..") != std::string::npos) {
      throw Error(index_path + ": tensor '" + detail::printable(name) + "' names shard '" +
                  detail::printable(shard_name) + "', which is not a file name inside the directory");
    }
    auto it = shard_ids.find(shard_name);
    if (it == shard_ids.end()) {
      const std::string shard_path = join(dir, shard_name);
      if (!exists(shard_path)) {
        throw Error(index_path + ": shard '" + detail::printable(shard_name) + "' (for tensor '" +
                    detail::printable(name) + "') not found: " + shard_path);
      }
      shards.push_back(SafetensorsFile::open(shard_path));
      it = shard_ids.emplace(shard_name, shards.size() - 1).first;
    }
    const SafetensorsFile* shard = shards[it->second].get();
    if (!shard->contains(name)) {
      throw Error(index_path + ": tensor '" + detail::printable(name) + "' is mapped to shard '" +
                  detail::printable(shard_name) + "', which lacks it");
    }
    where.emplace(name, shard);
  }
  return std::make_unique<SafetensorsDir>(dir, std::move(shards), std::move(where));
}

}  // namespace

// --- one file --------------------------------------------------------------------------------------------------

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile(MappedFile::open(path)));
  f->parse();
  return f;
}

void SafetensorsFile::parse() {
  const std::string& p = file_->path();
  const uint64_t size = file_->size();
  if (size < 8) {
    throw Error(p + ": truncated safetensors file: " + std::to_string(size) + " bytes, the header length needs 8");
  }
  uint64_t header_len;
  std::memcpy(&header_len, file_->data(), 8);  // little-endian host
  if (header_len > size - 8) {
    throw Error(p + ": safetensors header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(size) + " bytes; truncated or not a safetensors file?)");
  }
  data_offset_ = 8 + header_len;
  const uint64_t data_size = size - data_offset_;

  json header;
  try {
    const char* h = reinterpret_cast<const char*>(file_->data() + 8);
    header = json::parse(h, h + header_len);
  } catch (const json::exception& e) {
    throw Error(p + ": invalid safetensors header JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(p + ": safetensors header is not a JSON object");

  struct Extent {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(p + ": \"__metadata__\" is not an object");
      for (const auto& [k, v] : entry.items()) metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    const std::string where = p + ": tensor '" + detail::printable(name) + "': ";
    if (name.empty()) throw Error(p + ": a tensor has an empty name");
    if (!entry.is_object()) throw Error(where + "header entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw Error(where + "missing or non-string \"dtype\"");
    if (!entry.contains("shape") || !entry["shape"].is_array()) throw Error(where + "missing or non-array \"shape\"");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
      throw Error(where + "\"data_offsets\" must be an array [begin, end]");
    }
    const std::string dtype = entry["dtype"].get<std::string>();
    std::vector<int64_t> shape;
    // The product of the nonzero dims must fit, so that cols() of an empty tensor ([0, 2^40, 2^40]) fits too.
    int64_t nonzero = 1;
    bool empty = false;
    for (const json& d : entry["shape"]) {
      int64_t v;
      if (!json_index(d, &v)) throw Error(where + "shape " + entry["shape"].dump() + " has an invalid dimension");
      if (!detail::mul_nonneg(nonzero, v == 0 ? 1 : v, &nonzero)) {
        throw Error(where + "shape " + entry["shape"].dump() + " overflows the element count");
      }
      empty = empty || v == 0;
      shape.push_back(v);
    }
    const int64_t numel = empty ? 0 : nonzero;
    int64_t begin, end;
    if (!json_index(entry["data_offsets"][0], &begin) || !json_index(entry["data_offsets"][1], &end) || begin > end) {
      throw Error(where + "invalid data_offsets " + entry["data_offsets"].dump());
    }
    if (static_cast<uint64_t>(end) > data_size) {
      throw Error(where + "data_offsets " + entry["data_offsets"].dump() + " run past the end of the data section (" +
                  std::to_string(data_size) + " bytes; truncated?)");
    }
    const int64_t elem = st_dtype_size(dtype);
    int64_t nbytes = -1;
    if (elem > 0 && (!detail::mul_nonneg(numel, elem, &nbytes) || nbytes != end - begin)) {
      throw Error(where + "data_offsets " + entry["data_offsets"].dump() + " hold " + std::to_string(end - begin) +
                  " bytes, but shape " + shape_string(shape) + " of " + dtype + " needs " +
                  (nbytes < 0 ? std::string("more than 2^63") : std::to_string(nbytes)));
    }
    DType dt;
    if (!st_dtype_supported(dtype, &dt)) {
      auto [it, _] = unsupported_.emplace(name, dtype);
      extents.push_back({static_cast<uint64_t>(begin), static_cast<uint64_t>(end), &it->first});
      continue;
    }
    Tensor t{TensorInfo{name, dt, std::move(shape)}, static_cast<uint64_t>(begin), nbytes};
    auto [it, _] = tensors_.emplace(name, std::move(t));
    extents.push_back({static_cast<uint64_t>(begin), static_cast<uint64_t>(end), &it->first});
  }
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i) {
    const Extent& a = extents[i - 1];
    const Extent& b = extents[i];
    if (a.end > b.begin && a.end > a.begin && b.end > b.begin) {
      throw Error(p + ": tensor '" + detail::printable(*a.name) + "' data overlaps tensor '" +
                  detail::printable(*b.name) + "'");
    }
  }
}

const SafetensorsFile::Tensor& SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  if (auto u = unsupported_.find(name); u != unsupported_.end()) {
    throw Error(path() + ": tensor '" + detail::printable(name) + "' has unsupported dtype " +
                detail::printable(u->second) + "; supported: F32, F16, BF16");
  }
  throw Error(path() + ": no tensor '" + detail::printable(name) + "'");
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

bool SafetensorsFile::has(const std::string& name) const { return tensors_.count(name) != 0; }
const TensorInfo& SafetensorsFile::info(const std::string& name) const { return tensor(name).info; }

const void* SafetensorsFile::data(const std::string& name) const {
  const Tensor& t = tensor(name);
  return file_->data() + data_offset_ + t.begin;  // in range: begin ≤ data size (may be unaligned)
}

int64_t SafetensorsFile::nbytes(const std::string& name) const { return tensor(name).nbytes; }

void SafetensorsFile::read(const std::string& name, int64_t row_begin, int64_t row_end, int64_t col_begin,
                           int64_t col_end, float* out) const {
  const Tensor& t = tensor(name);
  detail::check_read_range(path(), t.info, row_begin, row_end, col_begin, col_end, out);
  if (row_end == row_begin || col_end == col_begin) return;
  detail::read_block(t.info, file_->data() + data_offset_ + t.begin, row_begin, row_end, col_begin, col_end, out);
}

// --- entry points ----------------------------------------------------------------------------------------------

std::unique_ptr<TensorSource> open_safetensors_file(const std::string& path) { return SafetensorsFile::open(path); }

std::unique_ptr<TensorSource> open_safetensors_dir(const std::string& dir) {
  if (!is_directory(dir)) {
    if (exists(dir)) return open_safetensors_file(dir);
    throw Error(dir + ": no such directory");
  }
  const std::string index = join(dir, "model.safetensors.index.json");
  if (exists(index)) return open_index(dir, index);
  const std::string single = join(dir, "model.safetensors");
  if (exists(single)) return open_safetensors_file(single);
  throw Error(dir + ": no model.safetensors or model.safetensors.index.json in this directory");
}

}  // namespace tessera::formats
