// monitoring/log_format.h — the two shapes of tessera's log lines (config `logging.format`):
//   text  "[20:01:02.123] [info] access: POST /v1/completions 200 ..."   (the default; for a terminal)
//   json  {"time":"2026-12-04T20:01:02.123Z","level":"info","logger":"tessera","msg":"..."}
//         one object per line, for log collectors (Loki, Elasticsearch, Cloud Logging); events that carry fields
//         (the access log) put them at the top level: {"time":...,"level":"info","event":"access","status":200,...}.
// Every line goes through spdlog's default logger; set_log_format swaps its formatter.
#pragma once

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <string>

namespace tessera::monitoring {

enum class LogFormat { kText, kJson };

// "text" | "json" (anything else throws tessera::Error naming the key logging.format).
LogFormat parse_log_format(const std::string& name);

// Installs the formatter on the default logger's sinks. Call once at start, before other threads log.
void set_log_format(LogFormat format);
bool log_format_is_json();

// One json line whose top-level fields are `fields` (after time and level). Only meaningful in json mode; in
// text mode it logs the fields' dump, so nothing is lost if a caller forgets to check.
void log_fields(spdlog::level::level_enum level, const nlohmann::ordered_json& fields);

}  // namespace tessera::monitoring
