// coordinator/config.cpp — YAML + dotted overrides → a validated ServeConfig.
//
// Every key is one row of a table (dotted name → typed member), so the file, the overrides, the dump and
// the error messages all go through the same place and a new key cannot be half-added.
#include "coordinator/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <variant>

#include "common/check.h"

namespace tessera::coordinator {
namespace {

using Member = std::variant<std::string*, int*, int64_t*, double*, bool*, std::vector<std::string>*>;

struct Field {
  std::string key;  // "server.port"
  Member member;
};

std::vector<Field> fields_of(ServeConfig& c) {
  return {
      {"model.path", &c.model.path},
      {"model.name", &c.model.name},
      {"parallel.tp", &c.parallel.tp},
      {"parallel.step_timeout_s", &c.parallel.step_timeout_s},
      {"backend.kind", &c.backend.kind},
      {"backend.dtype", &c.backend.dtype},
      {"backend.kv_memory_fraction", &c.backend.kv_memory_fraction},
      {"backend.cpu_kv_dtype", &c.backend.cpu_kv_dtype},
      {"backend.cpu_activations", &c.backend.cpu_activations},
      {"backend.cpu_kv_memory_mb", &c.backend.cpu_kv_memory_mb},
      {"backend.cuda_graphs", &c.backend.cuda_graphs},
      {"server.host", &c.server.host},
      {"server.port", &c.server.port},
      {"server.threads", &c.server.threads},
      {"server.api_key", &c.server.api_key},
      {"server.public_routes", &c.server.public_routes},
      {"server.max_body_bytes", &c.server.max_body_bytes},
      {"server.request_timeout_s", &c.server.request_timeout_s},
      {"server.drain_timeout_s", &c.server.drain_timeout_s},
      {"server.idle_timeout_s", &c.server.idle_timeout_s},
      {"scheduler.max_waiting", &c.scheduler.max_waiting},
      {"scheduler.max_running", &c.scheduler.max_running},
      {"scheduler.max_ctx", &c.scheduler.max_ctx},
      {"scheduler.max_prompt_tokens", &c.scheduler.max_prompt_tokens},
      {"scheduler.max_tokens_limit", &c.scheduler.max_tokens_limit},
      {"scheduler.default_max_tokens", &c.scheduler.default_max_tokens},
      {"scheduler.max_n", &c.scheduler.max_n},
      {"scheduler.token_budget", &c.scheduler.token_budget},
      {"scheduler.max_pad_fraction", &c.scheduler.max_pad_fraction},
      {"scheduler.block_size", &c.scheduler.block_size},
      {"scheduler.enable_prefix_caching", &c.scheduler.enable_prefix_caching},
      {"metrics.enabled", &c.metrics.enabled},
      {"logging.level", &c.logging.level},
      {"logging.format", &c.logging.format},
      {"logging.stats_interval_s", &c.logging.stats_interval_s},
  };
}

// Shortest text that reads back to the same double.
std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

template <class Int>
bool parse_int(const std::string& s, Int* out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, *out);
  return b != e && r.ec == std::errc() && r.ptr == e;
}

bool parse_double(const std::string& s, double* out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, *out, std::chars_format::general);
  return b != e && r.ec == std::errc() && r.ptr == e && std::isfinite(*out);
}

bool parse_bool(std::string s, bool* out) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (s == "true" || s == "yes" || s == "on") {
    *out = true;
  } else if (s == "false" || s == "no" || s == "off") {
    *out = false;
  } else {
    return false;
  }
  return true;
}

// "[a, b]" (a YAML flow sequence) or "a,b"; "" and "[]" are the empty list.
bool parse_list(const std::string& s, std::vector<std::string>* out) {
  out->clear();
  if (!s.empty() && s.front() == '[') {
    try {
      const YAML::Node n = YAML::Load(s);
      if (!n.IsSequence()) return false;
      for (const auto& item : n) {
        if (!item.IsScalar()) return false;
        out->push_back(item.Scalar());
      }
    } catch (const YAML::Exception&) {
      return false;
    }
    return true;
  }
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    if (b == std::string::npos) return false;
    out->push_back(item.substr(b, e - b + 1));
  }
  return true;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Where a value came from, for messages: "cluster.yaml" (+ line), "--set", or the defaults.
struct Origin {
  std::string source;  // file path or "--set"
  int line = 0;        // 1-based; 0 for overrides
  std::string prefix() const { return source + ": "; }
  std::string suffix() const { return line > 0 ? " (line " + std::to_string(line) + ")" : ""; }
};

class Loader {
 public:
  Loader() : fields_(fields_of(config_)) {}

  void set(const std::string& key, const std::string& value, bool is_null, const Origin& origin) {
    const Field* f = find(key);
    if (f == nullptr) fail_unknown(key, origin);
    origins_[key] = origin;
    auto bad = [&](const char* what) {
      throw Error(origin.prefix() + key + ": must be " + what + ", got " + (is_null ? "nothing" : "'" + value + "'") +
                  origin.suffix());
    };
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, std::string>) {
            *p = is_null ? "" : value;
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            if (!is_null && !parse_list(value, p)) bad("a list such as [/health, /ready]");
            if (is_null) p->clear();
          } else if constexpr (std::is_same_v<T, bool>) {
            if (is_null || !parse_bool(value, p)) bad("true or false");
          } else if constexpr (std::is_same_v<T, double>) {
            if (is_null || !parse_double(value, p)) bad("a number");
          } else {
            if (is_null || !parse_int(value, p)) bad("an integer");
          }
        },
        f->member);
  }

  // A YAML sequence from the file.
  void set_list(const std::string& key, const YAML::Node& seq, const Origin& origin) {
    const Field* f = find(key);
    if (f == nullptr) fail_unknown(key, origin);
    auto* p = std::get_if<std::vector<std::string>*>(&f->member);
    if (p == nullptr)
      throw Error(origin.prefix() + key + ": must be a single value, not a list or a mapping" + origin.suffix());
    origins_[key] = origin;
    (*p)->clear();
    for (const auto& item : seq) {
      if (!item.IsScalar()) throw Error(origin.prefix() + key + ": must be a list of strings" + origin.suffix());
      (*p)->push_back(item.Scalar());
    }
  }

  [[noreturn]] void fail_unknown(const std::string& key, const Origin& origin) const {
    std::string best;
    size_t best_d = 4;  // suggest only near misses
    for (const auto& f : fields_) {
      const size_t d = edit_distance(key, f.key);
      if (d < best_d) best_d = d, best = f.key;
    }
    throw Error(origin.prefix() + "unknown key '" + key + "'" + origin.suffix() +
                (best.empty() ? "" : "; did you mean '" + best + "'?"));
  }

  void check_known(const std::string& key, const Origin& origin) const {
    if (find(key) == nullptr) fail_unknown(key, origin);
  }

  bool is_section(const std::string& name) const {
    return std::any_of(fields_.begin(), fields_.end(),
                       [&](const Field& f) { return f.key.compare(0, name.size() + 1, name + ".") == 0; });
  }

  void validate() const {
    const auto& c = config_;
    auto fail = [&](const std::string& key, const std::string& msg) {
      auto it = origins_.find(key);
      const Origin o = it != origins_.end() ? it->second : Origin{"defaults", 0};
      throw Error(o.prefix() + key + ": " + msg + o.suffix());
    };
    auto in_range = [&](const std::string& key, auto v, auto lo, auto hi) {
      if (v < lo || v > hi) {
        std::ostringstream os;
        os << "must be in [" << lo << ", " << hi << "], got " << v;
        fail(key, os.str());
      }
    };
    auto positive = [&](const std::string& key, double v) {
      if (!(v > 0)) fail(key, "must be > 0, got " + format_double(v));
    };
    auto one_of = [&](const std::string& key, const std::string& v, std::initializer_list<const char*> allowed) {
      std::string list;
      for (const char* a : allowed) {
        if (v == a) return;
        list += std::string(list.empty() ? "" : ", ") + a;
      }
      fail(key, "must be one of " + list + ", got '" + v + "'");
    };
    if (c.model.path.empty()) fail("model.path", "must not be empty");
    in_range("parallel.tp", c.parallel.tp, 0, 1024);
    positive("parallel.step_timeout_s", c.parallel.step_timeout_s);
    one_of("backend.kind", c.backend.kind, {"auto", "cpu", "cuda"});
    one_of("backend.dtype", c.backend.dtype, {"bf16", "fp16", "fp32"});
    one_of("backend.cpu_kv_dtype", c.backend.cpu_kv_dtype, {"fp32", "bf16", "fp16"});
    one_of("backend.cpu_activations", c.backend.cpu_activations, {"fp32", "int8"});
    if (!(c.backend.kv_memory_fraction > 0 && c.backend.kv_memory_fraction <= 1))
      fail("backend.kv_memory_fraction", "must be in (0, 1], got " + format_double(c.backend.kv_memory_fraction));
    if (c.server.host.empty()) fail("server.host", "must not be empty");
    in_range("server.port", c.server.port, 1, 65535);
    in_range("server.threads", c.server.threads, 1, 256);
    in_range("server.max_body_bytes", c.server.max_body_bytes, int64_t{1024}, int64_t{1} << 30);
    positive("server.request_timeout_s", c.server.request_timeout_s);
    for (const std::string& r : c.server.public_routes)
      one_of("server.public_routes", r,
             {"/health", "/ready", "/metrics", "/version", "/v1/models", "/tokenize", "/detokenize"});
    positive("server.idle_timeout_s", c.server.idle_timeout_s);
    if (c.server.drain_timeout_s < 0)
      fail("server.drain_timeout_s", "must be >= 0, got " + format_double(c.server.drain_timeout_s));
    in_range("scheduler.max_waiting", c.scheduler.max_waiting, 1, 1000000);
    in_range("scheduler.max_running", c.scheduler.max_running, 1, 65536);
    in_range("scheduler.max_ctx", c.scheduler.max_ctx, 2, 1 << 24);
    in_range("scheduler.max_prompt_tokens", c.scheduler.max_prompt_tokens, 1, 1 << 24);
    if (c.scheduler.max_prompt_tokens > c.scheduler.max_ctx)
      fail("scheduler.max_prompt_tokens", "must be <= scheduler.max_ctx (" + std::to_string(c.scheduler.max_ctx) +
                                              "), got " + std::to_string(c.scheduler.max_prompt_tokens));
    in_range("scheduler.max_tokens_limit", c.scheduler.max_tokens_limit, 1, 1 << 24);
    if (c.scheduler.max_tokens_limit > c.scheduler.max_ctx)
      fail("scheduler.max_tokens_limit", "must be <= scheduler.max_ctx (" + std::to_string(c.scheduler.max_ctx) +
                                             "), got " + std::to_string(c.scheduler.max_tokens_limit));
    in_range("scheduler.default_max_tokens", c.scheduler.default_max_tokens, 1, 1 << 24);
    if (c.scheduler.default_max_tokens > c.scheduler.max_tokens_limit)
      fail("scheduler.default_max_tokens", "must be <= scheduler.max_tokens_limit (" +
                                               std::to_string(c.scheduler.max_tokens_limit) + "), got " +
                                               std::to_string(c.scheduler.default_max_tokens));
    in_range("scheduler.max_n", c.scheduler.max_n, 1, 1024);
    in_range("scheduler.token_budget", c.scheduler.token_budget, 1, 1 << 26);
    if (!(c.scheduler.max_pad_fraction >= 0 && c.scheduler.max_pad_fraction < 1))
      fail("scheduler.max_pad_fraction", "must be in [0, 1), got " + format_double(c.scheduler.max_pad_fraction));
    in_range("scheduler.block_size", c.scheduler.block_size, 1, 65536);
    if (!(c.backend.cpu_kv_memory_mb >= 0 && c.backend.cpu_kv_memory_mb <= 1 << 30))
      fail("backend.cpu_kv_memory_mb", "must be in [0, 2^30] MiB, got " + format_double(c.backend.cpu_kv_memory_mb));
    if (!(c.logging.stats_interval_s >= 0 && c.logging.stats_interval_s <= 86400))
      fail("logging.stats_interval_s", "must be in [0, 86400], got " + format_double(c.logging.stats_interval_s));
    one_of("logging.level", c.logging.level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
    one_of("logging.format", c.logging.format, {"text", "json"});
  }

  const ServeConfig& config() const { return config_; }

 private:
  const Field* find(const std::string& key) const {
    for (const auto& f : fields_)
      if (f.key == key) return &f;
    return nullptr;
  }

  ServeConfig config_;
  std::vector<Field> fields_;
  std::map<std::string, Origin> origins_;
};

std::string scalar_of(const YAML::Node& n) { return n.IsScalar() ? n.Scalar() : std::string(); }

void load_file(Loader& loader, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Error(path + ": cannot read the configuration file");
  } catch (const YAML::Exception& e) {
    throw Error(path + ": not valid YAML: " + e.what());
  }
  if (!root || root.IsNull()) return;  // an empty file: all defaults
  if (!root.IsMap()) throw Error(path + ": the top level must be a mapping of sections (model, server, ...)");
  std::set<std::string> seen_sections;
  for (const auto& section : root) {
    const std::string name = scalar_of(section.first);
    const Origin at{path, section.first.Mark().line + 1};
    if (!loader.is_section(name)) loader.fail_unknown(name, at);
    if (!seen_sections.insert(name).second) throw Error(at.prefix() + "duplicate key '" + name + "'" + at.suffix());
    if (section.second.IsNull()) continue;
    if (!section.second.IsMap()) throw Error(at.prefix() + name + ": must be a mapping of keys" + at.suffix());
    std::set<std::string> seen;
    for (const auto& kv : section.second) {
      const std::string key = name + "." + scalar_of(kv.first);
      const Origin here{path, kv.first.Mark().line + 1};
      if (!seen.insert(key).second) throw Error(here.prefix() + "duplicate key '" + key + "'" + here.suffix());
      if (kv.second.IsSequence()) {
        loader.set_list(key, kv.second, here);
        continue;
      }
      if (kv.second.IsMap()) {
        // An unknown key is the likelier mistake; report that first.
        loader.check_known(key, here);
        throw Error(here.prefix() + key + ": must be a single value, not a list or a mapping" + here.suffix());
      }
      loader.set(key, kv.second.IsNull() ? "" : kv.second.Scalar(), kv.second.IsNull(), here);
    }
  }
}

}  // namespace

ServeConfig load_serve_config(const std::string& yaml_path,
                              const std::vector<std::pair<std::string, std::string>>& overrides) {
  Loader loader;
  if (!yaml_path.empty()) load_file(loader, yaml_path);
  for (const auto& [key, value] : overrides) loader.set(key, value, false, Origin{"--set", 0});
  loader.validate();
  return loader.config();
}

std::pair<std::string, std::string> parse_override(const std::string& key_equals_value) {
  const size_t eq = key_equals_value.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set: expected key=value (e.g. server.port=9000), got '" + key_equals_value + "'");
  return {key_equals_value.substr(0, eq), key_equals_value.substr(eq + 1)};
}

std::vector<std::string> serve_config_keys() {
  ServeConfig c;
  std::vector<std::string> keys;
  for (const auto& f : fields_of(c)) keys.push_back(f.key);
  return keys;
}

std::string dump_serve_config(const ServeConfig& config) {
  ServeConfig c = config;
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  for (const auto& f : fields_of(c)) {
    const size_t dot = f.key.find('.');
    const std::string s = f.key.substr(0, dot);
    if (s != section) {
      if (!section.empty()) out << YAML::EndMap;
      out << YAML::Key << s << YAML::Value << YAML::BeginMap;
      section = s;
    }
    out << YAML::Key << f.key.substr(dot + 1) << YAML::Value;
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out << YAML::DoubleQuoted << *p;
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            out << YAML::Flow << YAML::BeginSeq;
            for (const auto& item : *p) out << YAML::DoubleQuoted << item;
            out << YAML::EndSeq;
          } else if constexpr (std::is_same_v<T, bool>) {
            out << (*p ? "true" : "false");
          } else if constexpr (std::is_same_v<T, double>) {
            out << format_double(*p);
          } else {
            out << std::to_string(*p);
          }
        },
        f.member);
  }
  if (!section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

bool operator==(const ServeConfig& a, const ServeConfig& b) { return dump_serve_config(a) == dump_serve_config(b); }

}  // namespace tessera::coordinator
