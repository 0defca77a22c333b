// monitoring/log_format.cpp — see log_format.h. The json formatter writes the time in UTC (RFC 3339, ms), the
// level name, and either the message as an escaped string or, for log_fields' records (marked by a leading
// ASCII record separator, which no other message carries: log_token and the tokenizer's logs strip control
// bytes), the record's own object spliced in.
#include "monitoring/log_format.h"

#include <spdlog/pattern_formatter.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>

#include "common/check.h"

namespace tessera::monitoring {
namespace {

constexpr char kFieldsMark = '\x1e';
constexpr const char* kTextPattern = "[%H:%M:%S.%e] [%^%l%$] %v";
std::atomic<bool> g_json{false};

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = msg.time;
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char when[40];
    const size_t n = std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &utc);
    std::string line = "{\"time\":\"" + std::string(when, n) + fmt::format(".{:03d}Z\"", static_cast<int>(ms));
    const auto level = spdlog::level::to_string_view(msg.level);
    line += ",\"level\":\"" + std::string(level.data(), level.size()) + "\"";
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!payload.empty() && payload.front() == kFieldsMark && payload.size() > 2 && payload[1] == '{') {
      const std::string_view object = payload.substr(2);  // after the mark and '{'
      if (object != "}") line += ",";
      line += object;
    } else {
      line += ",\"logger\":" + json_string(std::string_view(msg.logger_name.data(), msg.logger_name.size()));
      line += ",\"msg\":" + json_string(payload) + "}";
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

LogFormat parse_log_format(const std::string& name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  throw Error("logging.format: must be one of text, json; got '" + name + "'");
}

void set_log_format(LogFormat format) {
  g_json.store(format == LogFormat::kJson);
  if (format == LogFormat::kJson)
    spdlog::default_logger()->set_formatter(std::make_unique<JsonFormatter>());
  else
    spdlog::default_logger()->set_formatter(std::make_unique<spdlog::pattern_formatter>(kTextPattern));
}

bool log_format_is_json() { return g_json.load(); }

void log_fields(spdlog::level::level_enum level, const nlohmann::ordered_json& fields) {
  const std::string body = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (g_json.load() && !body.empty() && body.front() == '{')
    spdlog::log(level, "{}{}", kFieldsMark, body);
  else
    spdlog::log(level, "{}", body);
}

}  // namespace tessera::monitoring
