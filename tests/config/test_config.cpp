// tests/config/test_config.cpp — load_serve_config: defaults, the deploy example, errors that name the key,
// overrides that beat the file, and a dump that reads back to the same configuration.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "common/check.h"
#include "coordinator/config.h"

namespace tc = tessera::coordinator;

namespace {

class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    static int counter = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("tessera_cfg_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".yaml"))
                .string();
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The message of the tessera::Error that load throws; fails the test when none is thrown.
std::string error_of(const std::string& yaml, const std::vector<std::pair<std::string, std::string>>& over = {}) {
  ConfigFile f(yaml);
  try {
    tc::load_serve_config(f.path(), over);
  } catch (const tessera::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << yaml;
  return "";
}

}  // namespace

TEST(Config, DefaultsWithoutAFile) {
  const tc::ServeConfig c = tc::load_serve_config("", {});
  EXPECT_EQ(c.model.path, "default");
  EXPECT_EQ(c.model.name, "");
  EXPECT_EQ(c.parallel.tp, 0);
  EXPECT_DOUBLE_EQ(c.parallel.step_timeout_s, 60);
  EXPECT_EQ(c.backend.kind, "auto");
  EXPECT_EQ(c.backend.dtype, "bf16");
  EXPECT_EQ(c.backend.cpu_kv_dtype, "fp32");
  EXPECT_EQ(c.backend.cpu_activations, "fp32");
  EXPECT_DOUBLE_EQ(c.backend.kv_memory_fraction, 0.9);
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8000);
  EXPECT_EQ(c.server.threads, 4);
  EXPECT_EQ(c.server.api_key, "");
  EXPECT_EQ(c.server.max_body_bytes, 1 << 20);
  EXPECT_DOUBLE_EQ(c.server.request_timeout_s, 600);
  EXPECT_DOUBLE_EQ(c.server.drain_timeout_s, 30);
  EXPECT_EQ(c.scheduler.max_waiting, 256);
  EXPECT_EQ(c.scheduler.max_running, 16);
  EXPECT_EQ(c.scheduler.max_ctx, 2048);
  EXPECT_EQ(c.scheduler.max_prompt_tokens, 2048);
  EXPECT_EQ(c.scheduler.max_tokens_limit, 2048);
  EXPECT_EQ(c.scheduler.default_max_tokens, 16);
  EXPECT_EQ(c.scheduler.max_n, 8);
  EXPECT_EQ(c.scheduler.token_budget, 4096);
  EXPECT_DOUBLE_EQ(c.scheduler.max_pad_fraction, 0.25);
  EXPECT_TRUE(c.metrics.enabled);
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_TRUE(c == tc::ServeConfig{});
}

TEST(Config, EmptyFileAndEmptySectionsAreDefaults) {
  ConfigFile empty("");
  EXPECT_TRUE(tc::load_serve_config(empty.path(), {}) == tc::ServeConfig{});
  ConfigFile sections("model:\nserver:\n# only comments\n");
  EXPECT_TRUE(tc::load_serve_config(sections.path(), {}) == tc::ServeConfig{});
}

TEST(Config, FileValues) {
  ConfigFile f(
      "model:\n  path: /models/x.gguf\n  name: my-model\nparallel:\n  tp: 3\nserver:\n  port: 9000\n"
      "  api_key: secret\n  drain_timeout_s: 2.5\nscheduler:\n  max_ctx: 4096\n  max_pad_fraction: 0.5\n"
      "metrics:\n  enabled: false\nlogging:\n  level: debug\n");
  const tc::ServeConfig c = tc::load_serve_config(f.path(), {});
  EXPECT_EQ(c.model.path, "/models/x.gguf");
  EXPECT_EQ(c.model.name, "my-model");
  EXPECT_EQ(c.parallel.tp, 3);
  EXPECT_EQ(c.server.port, 9000);
  EXPECT_EQ(c.server.api_key, "secret");
  EXPECT_DOUBLE_EQ(c.server.drain_timeout_s, 2.5);
  EXPECT_EQ(c.scheduler.max_ctx, 4096);
  EXPECT_DOUBLE_EQ(c.scheduler.max_pad_fraction, 0.5);
  EXPECT_FALSE(c.metrics.enabled);
  EXPECT_EQ(c.logging.level, "debug");
  EXPECT_EQ(c.server.threads, 4);  // untouched keys keep their defaults
}

// deploy/examples/cluster.yaml documents every key: it must set each one, load, and survive a round trip.
TEST(Config, ExampleFileSetsEveryKeyAndRoundTrips) {
  const tc::ServeConfig c = tc::load_serve_config(TESSERA_EXAMPLE_CONFIG, {});
  std::ifstream in(TESSERA_EXAMPLE_CONFIG);
  std::string line, section;
  std::set<std::string> present;
  const std::regex section_re(R"(^([a-z_]+):\s*(#.*)?$)"), key_re(R"(^  ([a-z_]+):.*$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, section_re)) section = m[1];
    if (std::regex_match(line, m, key_re)) present.insert(section + "." + m[1].str());
  }
  for (const auto& key : tc::serve_config_keys()) EXPECT_TRUE(present.count(key)) << key << " is not in the example";
  // The example documents the defaults.
  EXPECT_TRUE(c == tc::ServeConfig{}) << tc::dump_serve_config(c);

  ConfigFile again(tc::dump_serve_config(c));
  EXPECT_TRUE(tc::load_serve_config(again.path(), {}) == c);
}

TEST(Config, DumpRoundTripsNonDefaultValues) {
  tc::ServeConfig c;
  c.model.name = "a \"quoted\" name: with colon";
  c.server.api_key = "true";  // a string that looks like a bool stays a string
  c.server.port = 1234;
  c.server.request_timeout_s = 0.1;
  c.backend.kv_memory_fraction = 1.0 / 3.0;
  c.metrics.enabled = false;
  ConfigFile f(tc::dump_serve_config(c));
  const tc::ServeConfig back = tc::load_serve_config(f.path(), {});
  EXPECT_TRUE(back == c) << tc::dump_serve_config(back);
  EXPECT_EQ(back.model.name, c.model.name);
  EXPECT_EQ(back.backend.kv_memory_fraction, c.backend.kv_memory_fraction);
}

TEST(Config, OverridesBeatTheFile) {
  ConfigFile f("server:\n  port: 9000\n  host: 0.0.0.0\n");
  const tc::ServeConfig c =
      tc::load_serve_config(f.path(), {{"server.port", "9100"}, {"model.path", "/m.gguf"}, {"metrics.enabled", "no"}});
  EXPECT_EQ(c.server.port, 9100);
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.model.path, "/m.gguf");
  EXPECT_FALSE(c.metrics.enabled);
  // The last override of a key wins.
  EXPECT_EQ(tc::load_serve_config("", {{"server.port", "1"}, {"server.port", "2"}}).server.port, 2);
}

TEST(Config, ParseOverride) {
  EXPECT_EQ(tc::parse_override("server.port=9000"), std::make_pair(std::string("server.port"), std::string("9000")));
  EXPECT_EQ(tc::parse_override("server.api_key=a=b").second, "a=b");
  EXPECT_EQ(tc::parse_override("model.name=").second, "");
  EXPECT_THROW(tc::parse_override("server.port"), tessera::Error);
  EXPECT_THROW(tc::parse_override("=1"), tessera::Error);
}

TEST(Config, UnknownKeysAtEveryLevel) {
  std::string e = error_of("server:\n  prot: 9000\n");
  EXPECT_NE(e.find(": unknown key 'server.prot'"), std::string::npos) << e;
  EXPECT_NE(e.find("tessera_cfg_"), std::string::npos) << e;  // the file
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'server.port'"), std::string::npos) << e;

  e = error_of("servr:\n  port: 9000\n");
  EXPECT_NE(e.find("unknown key 'servr'"), std::string::npos) << e;
  e = error_of("server:\n  port:\n    nested: 1\n");
  EXPECT_NE(e.find("server.port: must be a single value"), std::string::npos) << e;
  e = error_of("server:\n  extra:\n    nested: 1\n");
  EXPECT_NE(e.find("unknown key 'server.extra'"), std::string::npos) << e;
  e = error_of("- a\n- b\n");
  EXPECT_NE(e.find("top level must be a mapping"), std::string::npos) << e;
  e = error_of("server: 8000\n");
  EXPECT_NE(e.find("server: must be a mapping"), std::string::npos) << e;
  e = error_of("server:\n  port: 1\n  port: 2\n");
  EXPECT_NE(e.find("duplicate key 'server.port'"), std::string::npos) << e;

  try {
    tc::load_serve_config("", {{"scheduler.max_runing", "3"}});
    FAIL();
  } catch (const tessera::Error& err) {
    EXPECT_NE(std::string(err.what()).find("--set: unknown key 'scheduler.max_runing'"), std::string::npos)
        << err.what();
  }
}

TEST(Config, WrongTypesNameTheKey) {
  struct Case {
    const char* yaml;
    const char* expect;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"server:\n  port: eighty\n", "server.port: must be an integer, got 'eighty'"},
           {"server:\n  port: 80.5\n", "server.port: must be an integer, got '80.5'"},
           {"server:\n  port:\n", "server.port: must be an integer, got nothing"},
           {"server:\n  max_body_bytes: 1e6\n", "server.max_body_bytes: must be an integer"},
           {"parallel:\n  step_timeout_s: soon\n", "parallel.step_timeout_s: must be a number, got 'soon'"},
           {"parallel:\n  step_timeout_s: .inf\n", "parallel.step_timeout_s: must be a number"},
           {"metrics:\n  enabled: maybe\n", "metrics.enabled: must be true or false, got 'maybe'"},
           {"server:\n  port: [1, 2]\n", "server.port: must be a single value"},
       }) {
    const std::string e = error_of(c.yaml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "yaml:\n" << c.yaml << "error: " << e;
  }
}

TEST(Config, BadValuesNameTheKey) {
  struct Case {
    const char* key;
    const char* value;
    const char* expect;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"server.port", "70000", "server.port: must be in [1, 65535], got 70000"},
           {"server.port", "0", "server.port: must be in [1, 65535], got 0"},
           {"server.threads", "0", "server.threads: must be in [1, 256]"},
           {"server.host", "", "server.host: must not be empty"},
           {"server.max_body_bytes", "10", "server.max_body_bytes: must be in [1024, 1073741824], got 10"},
           {"server.request_timeout_s", "0", "server.request_timeout_s: must be > 0"},
           {"server.drain_timeout_s", "-1", "server.drain_timeout_s: must be >= 0"},
           {"model.path", "", "model.path: must not be empty"},
           {"parallel.tp", "-1", "parallel.tp: must be in [0, 1024], got -1"},
           {"parallel.step_timeout_s", "-5", "parallel.step_timeout_s: must be > 0"},
           {"backend.kind", "tpu", "backend.kind: must be one of auto, cpu, cuda, got 'tpu'"},
           {"backend.dtype", "int8", "backend.dtype: must be one of bf16, fp16, fp32"},
           {"backend.cpu_kv_dtype", "q8", "backend.cpu_kv_dtype: must be one of fp32, bf16, fp16"},
           {"backend.cpu_activations", "int4", "backend.cpu_activations: must be one of fp32, int8"},
           {"backend.kv_memory_fraction", "1.5", "backend.kv_memory_fraction: must be in (0, 1], got 1.5"},
           {"backend.kv_memory_fraction", "0", "backend.kv_memory_fraction: must be in (0, 1]"},
           {"scheduler.max_waiting", "0", "scheduler.max_waiting: must be in [1, 1000000]"},
           {"scheduler.max_running", "0", "scheduler.max_running: must be in [1, 65536]"},
           {"scheduler.max_prompt_tokens", "4096", "scheduler.max_prompt_tokens: must be <= scheduler.max_ctx (2048)"},
           {"scheduler.max_tokens_limit", "3000", "scheduler.max_tokens_limit: must be <= scheduler.max_ctx (2048)"},
           {"scheduler.default_max_tokens", "0", "scheduler.default_max_tokens: must be in [1, 16777216]"},
           {"scheduler.max_n", "0", "scheduler.max_n: must be in [1, 1024]"},
           {"scheduler.token_budget", "0", "scheduler.token_budget: must be in [1, 67108864]"},
           {"scheduler.max_pad_fraction", "1", "scheduler.max_pad_fraction: must be in [0, 1), got 1"},
           {"logging.level", "loud", "logging.level: must be one of trace, debug, info"},
       }) {
    // From an override...
    std::string e;
    try {
      tc::load_serve_config("", {{c.key, c.value}});
    } catch (const tessera::Error& err) {
      e = err.what();
    }
    EXPECT_NE(e.find(std::string("--set: ") + c.expect), std::string::npos) << c.key << "=" << c.value << ": " << e;
    // ...and from a file, which the message names with the line.
    const std::string key(c.key);
    const std::string yaml =
        key.substr(0, key.find('.')) + ":\n  " + key.substr(key.find('.') + 1) + ": \"" + c.value + "\"\n";
    e = error_of(yaml);
    EXPECT_NE(e.find(c.expect), std::string::npos) << yaml << e;
    EXPECT_NE(e.find("tessera_cfg_"), std::string::npos) << e;
    EXPECT_NE(e.find("(line 2)"), std::string::npos) << e;
  }
}

TEST(Config, CrossChecksUseTheFinalValues) {
  // Raising max_ctx makes a larger max_prompt_tokens valid, whichever order they come in.
  const tc::ServeConfig c =
      tc::load_serve_config("", {{"scheduler.max_prompt_tokens", "4096"}, {"scheduler.max_ctx", "8192"}});
  EXPECT_EQ(c.scheduler.max_prompt_tokens, 4096);
  const std::string e = error_of("scheduler:\n  default_max_tokens: 100\n  max_tokens_limit: 50\n");
  EXPECT_NE(e.find("scheduler.default_max_tokens: must be <= scheduler.max_tokens_limit (50), got 100"),
            std::string::npos)
      << e;
}

TEST(Config, MissingAndMalformedFiles) {
  std::string e;
  try {
    tc::load_serve_config("/nonexistent/cluster.yaml", {});
  } catch (const tessera::Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("/nonexistent/cluster.yaml: cannot read"), std::string::npos) << e;
  e = error_of("server:\n  port: [1, 2\n");
  EXPECT_NE(e.find("not valid YAML"), std::string::npos) << e;
}
