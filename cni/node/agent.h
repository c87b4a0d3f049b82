// `weir-node run`: install, then keep it so until SIGTERM/SIGINT. Watches the
// conf dir and the bin dirs with inotify and repairs within a second; keeps the
// readiness file fresh; reconciles pods on start, after each config repair and
// every interval; serves /readyz and /metrics.
#pragma once

#include <functional>
#include <string>

#include "cni/node/installer.h"
#include "cni/node/reconcile.h"
#include "rules/error.h"

namespace weir::node {

struct AgentOptions {
  NodeOptions node;
  std::string listen = "127.0.0.1:15081";  // host:port of /readyz and /metrics; empty: none
  bool keep_on_exit = false;                // leave entry and binary in place on exit (upgrades)
  RepairMode repair = RepairMode::Inplace;
  long long reconcile_interval_ms = 30000;
  long long retry_interval_ms = 2000;        // runtime not up yet
  long long heartbeat_interval_ms = 2000;    // readiness file refresh
  long long waiting_log_interval_ms = 60000; // "no primary yet" repeated this often
};

enum class LogLevel { Debug, Info, Warn, Error };
using AgentLog = std::function<void(LogLevel, const std::string&)>;

struct AgentDeps {
  Runtime* runtime = nullptr;  // may be null with RepairMode::Off
  PodCapture* capture = nullptr;
  AgentLog log;
};

// Runs until SIGTERM or SIGINT (the caller must have blocked both in every
// thread, so they arrive on the agent's signalfd), then uninstalls unless
// keep_on_exit. Error only for what makes running pointless from the start:
// a bad entry, a state dir or listen address that cannot be used.
Status run_agent(const AgentOptions& o, AgentDeps& deps);

// Prometheus text exposition of the agent's counters (for tests of format).
struct AgentMetrics {
  bool ready = false, installed = false;
  long long config_repairs = 0, reconcile_passes = 0, reconcile_errors = 0;
  long long pods_repaired_total = 0, pod_failures_total = 0;
  ReconcileSummary last;
};
std::string prometheus_text(const AgentMetrics& m);

}  // namespace weir::node
