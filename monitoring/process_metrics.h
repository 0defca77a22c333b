// monitoring/process_metrics.h — the standard process_* families (what Prometheus' own client libraries export),
// read from /proc at scrape time: CPU seconds, resident and virtual memory, open and maximum file descriptors,
// start time, threads. Internal to monitoring/: Metrics::exposition() appends them to the registry's families.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace tessera::monitoring {

// The calling process's families. A file that cannot be read (not Linux, a locked-down /proc) leaves its
// families out rather than exporting zeros.
std::vector<prometheus::MetricFamily> process_metric_families();

}  // namespace tessera::monitoring
