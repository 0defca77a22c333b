// monitoring/process_metrics.cpp — see process_metrics.h. Field positions from proc(5): /proc/self/stat fields
// 14-15 utime/stime and 22 starttime (clock ticks), 20 num_threads, 23 vsize (bytes), 24 rss (pages);
// /proc/stat "btime" is the boot time in seconds since the epoch.
#include "monitoring/process_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tessera::monitoring {
namespace {

prometheus::MetricFamily one(const std::string& name, const std::string& help, prometheus::MetricType type,
                             double value) {
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return {name, help, type, {m}};
}

// The fields of /proc/self/stat after the command name (which may hold spaces and parentheses: it ends at the
// last ')'), so that fields[0] is field 3 (state).
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

double boot_time_s() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return -1;
}

}  // namespace

std::vector<prometheus::MetricFamily> process_metric_families() {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const std::vector<std::string> f = stat_fields();
  // Field n of proc(5) is f[n - 3].
  if (f.size() >= 22 && ticks > 0) {
    const auto field = [&](int n) { return std::stod(f[static_cast<size_t>(n - 3)]); };
    out.push_back(one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                      MetricType::Counter, (field(14) + field(15)) / ticks));
    out.push_back(
        one("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, field(24) * page));
    out.push_back(one("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, field(23)));
    out.push_back(one("process_threads", "Number of OS threads in the process.", MetricType::Gauge, field(20)));
    if (const double boot = boot_time_s(); boot >= 0)
      out.push_back(one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                        MetricType::Gauge, boot + field(22) / ticks));
  }
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
       it.increment(ec))
    ++fds;
  if (!ec) out.push_back(one("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, fds));
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    out.push_back(one("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
                      static_cast<double>(rl.rlim_cur)));
  return out;
}

}  // namespace tessera::monitoring
