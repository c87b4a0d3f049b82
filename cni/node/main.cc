// weir-node: the node agent. main only reads flags, builds the options and
// calls the library (installer.h, agent.h, reconcile.h); errors become one line
// on stderr and exit code 1 (2 for a usage error).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "cni/node/agent.h"
#include "cni/node/cri_client.h"
#include "cni/node/installer.h"
#include "cni/node/reconcile.h"

namespace {

using namespace weir;
using namespace weir::node;

struct Flags {
  std::vector<std::string> bin_dirs;
  std::string conf_dir = "/etc/cni/net.d";
  std::string plugin_binary;
  std::string plugin_config;
  std::string conflist_mode = "insert";
  std::string state_dir = "/var/run/weir";
  std::string output = "text";
  std::string listen = "127.0.0.1:15081";
  bool keep_on_exit = false;
  std::string repair = "inplace";
  std::string reconcile_interval = "30s";
  std::string wait_timeout = "0s";
  std::vector<std::string> cri_endpoints;
  std::string log_level = "info";
};

void add_node_flags(CLI::App& sub, Flags& f) {
  sub.add_option("--cni-bin-dir", f.bin_dirs, "CNI bin dir to install weir-cni into (repeatable; default /opt/cni/bin)");
  sub.add_option("--cni-conf-dir", f.conf_dir, "the runtime's CNI conf dir")->capture_default_str();
  sub.add_option("--plugin-binary", f.plugin_binary, "the weir-cni to install (default: the weir-cni beside weir-node)");
  sub.add_option("--plugin-config", f.plugin_config, "JSON file: the keys of weir's entry (default: the pod-annotations capability, default capture)");
  sub.add_option("--conflist-mode", f.conflist_mode, "insert: weir's entry as the last plugin of the primary; own: a file of weir's own, 00-weir.conflist")
      ->check(CLI::IsMember({"insert", "own"}))
      ->capture_default_str();
  sub.add_option("--state-dir", f.state_dir, "where weir-node keeps its readiness file and last reconcile")->capture_default_str();
  sub.add_option("--log-level", f.log_level, "debug, info, warn, error")->check(CLI::IsMember({"debug", "info", "warn", "error"}));
}

void add_reconcile_flags(CLI::App& sub, Flags& f) {
  sub.add_option("--repair", f.repair, "inplace: capture pods that should be and are not; report: only log and count; off: no pass")
      ->check(CLI::IsMember({"inplace", "report", "off"}))
      ->capture_default_str();
  sub.add_option("--cri-endpoint", f.cri_endpoints,
                 "CRI socket (repeatable; default unix:///run/containerd/containerd.sock, then unix:///var/run/crio/crio.sock)");
}

std::string self_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

// Paths are logged and the readiness file's is written into the entry: absolute.
std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char buf[4096];
  if (!::getcwd(buf, sizeof buf)) return p;
  return std::string(buf) + "/" + p;
}

Result<NodeOptions> node_options(const Flags& f) {
  NodeOptions o;
  if (!f.bin_dirs.empty()) o.cni_bin_dirs.clear();
  for (const auto& d : f.bin_dirs) o.cni_bin_dirs.push_back(absolute(d));
  o.cni_conf_dir = absolute(f.conf_dir);
  o.plugin_binary = f.plugin_binary.empty() ? self_dir() + "/weir-cni" : absolute(f.plugin_binary);
  o.mode = f.conflist_mode == "own" ? ConflistMode::Own : ConflistMode::Insert;
  o.state_dir = absolute(f.state_dir);
  if (!f.plugin_config.empty()) {
    std::ifstream in(f.plugin_config);
    if (!in) return Error{ErrorKind::Io, "--plugin-config " + f.plugin_config + ": cannot be read", 0};
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      o.plugin_config = nlohmann::ordered_json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
      return Error{ErrorKind::InvalidArgument, "--plugin-config " + f.plugin_config + ": not JSON: " + e.what(), 0};
    }
  }
  return o;
}

std::vector<std::string> cri_endpoints(const Flags& f) {
  if (!f.cri_endpoints.empty()) return f.cri_endpoints;
  return {"unix:///run/containerd/containerd.sock", "unix:///var/run/crio/crio.sock"};
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("weir-node");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %L weir-node %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

void log_line(LogLevel l, const std::string& m) {
  switch (l) {
    case LogLevel::Debug: spdlog::debug("{}", m); break;
    case LogLevel::Info: spdlog::info("{}", m); break;
    case LogLevel::Warn: spdlog::warn("{}", m); break;
    case LogLevel::Error: spdlog::error("{}", m); break;
  }
}

int fail(const std::string& cmd, const std::string& msg) {
  spdlog::error("{}: {}", cmd, msg);
  return 1;
}

int cmd_install(const Flags& f) {
  auto o = node_options(f);
  if (!o.ok()) return fail("install", o.error().message);
  auto entry = weir_entry(o.value());
  if (!entry.ok()) return fail("install", entry.error().message);
  auto timeout = parse_duration_ms(f.wait_timeout);
  if (!timeout.ok()) return fail("install", "--wait-timeout: " + timeout.error().message);
  const auto start = std::chrono::steady_clock::now();
  auto last_log = start - std::chrono::hours(1);
  for (;;) {
    auto r = install_once(o.value(), entry.value());
    if (!r.ok()) return fail("install", r.error().message);
    for (const auto& s : r->skipped) spdlog::warn("skipping config {}", s);
    for (const auto& c : r->changes) spdlog::info("install: {}", c);
    if (!r->waiting) {
      spdlog::info("installed: primary {}, weir's entry in {}", r->primary, r->config_file);
      return 0;
    }
    const auto now = std::chrono::steady_clock::now();
    if (timeout.value() > 0 && now - start > std::chrono::milliseconds(timeout.value())) {
      return fail("install", "no primary CNI config appeared in " + f.conf_dir + " within " + f.wait_timeout);
    }
    if (now - last_log > std::chrono::minutes(1)) {
      spdlog::warn("no primary CNI config in {} yet; waiting (weir never writes a standalone config)", f.conf_dir);
      last_log = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

int cmd_uninstall(const Flags& f) {
  auto o = node_options(f);
  if (!o.ok()) return fail("uninstall", o.error().message);
  auto r = uninstall(o.value());
  if (!r.ok()) return fail("uninstall", r.error().message);
  for (const auto& c : r->changes) spdlog::info("uninstall: {}", c);
  for (const auto& n : r->kept_binary_for) spdlog::warn("uninstall: kept weir-cni: {} still names it", n);
  return 0;
}

int cmd_status(const Flags& f) {
  auto o = node_options(f);
  if (!o.ok()) return fail("status", o.error().message);
  auto st = node_status(o.value());
  if (f.output == "json") {
    std::cout << st.dump(2) << "\n";
    return 0;
  }
  for (const auto& b : st["binaries"]) {
    std::cout << "binary  " << b["dir"].get<std::string>() << "/weir-cni: " << (b["installed"].get<bool>() ? "installed" : "missing");
    if (b.contains("sameAsPluginBinary")) std::cout << (b["sameAsPluginBinary"].get<bool>() ? " (same as the plugin binary)" : " (differs from the plugin binary)");
    std::cout << "\n";
  }
  std::cout << "conf    " << st["confDir"].get<std::string>() << "\n";
  if (st.contains("confDirError")) std::cout << "  error: " << st["confDirError"].get<std::string>() << "\n";
  if (st.contains("primary")) {
    std::cout << "primary " << (st["primary"].is_null() ? "none yet" : st["primary"].get<std::string>()) << "\n";
    std::cout << "entry   " << (st["entryInUse"].get<bool>() ? "in use" : "not in use") << (st["ownFile"].get<bool>() ? " (own file 00-weir.conflist)" : "") << "\n";
  }
  std::cout << "ready   " << (st["readiness"]["ready"].get<bool>() ? "yes" : "no");
  if (st["readiness"]["document"].is_object()) std::cout << " (" << st["readiness"]["document"].value("reason", "") << ")";
  std::cout << "\n";
  if (!st["lastReconcile"].is_null()) std::cout << "reconcile " << st["lastReconcile"].dump() << "\n";
  return 0;
}

Result<AgentOptions> agent_options(const Flags& f) {
  auto o = node_options(f);
  if (!o.ok()) return o.error();
  AgentOptions a;
  a.node = std::move(o.value());
  a.listen = f.listen == "off" ? "" : f.listen;
  a.keep_on_exit = f.keep_on_exit;
  auto repair = parse_repair_mode(f.repair);
  if (!repair.ok()) return repair.error();
  a.repair = repair.value();
  auto interval = parse_duration_ms(f.reconcile_interval);
  if (!interval.ok()) return interval.error().wrap("--reconcile-interval");
  if (interval.value() < 100) return Error{ErrorKind::InvalidArgument, "--reconcile-interval must be at least 100ms", 0};
  a.reconcile_interval_ms = interval.value();
  return a;
}

int cmd_run(const Flags& f) {
  auto a = agent_options(f);
  if (!a.ok()) return fail("run", a.error().message);
  std::unique_ptr<Runtime> runtime;
  std::unique_ptr<PodCapture> capture;
  if (a->repair != RepairMode::Off) {
    runtime = cri_runtime(cri_endpoints(f));
    capture = kernel_pod_capture();
  }
  AgentDeps deps{runtime.get(), capture.get(), log_line};
  Status s = run_agent(a.value(), deps);
  if (!s.ok()) return fail("run", s.error().message);
  return 0;
}

int cmd_reconcile(const Flags& f) {
  auto a = agent_options(f);
  if (!a.ok()) return fail("reconcile", a.error().message);
  auto entry = weir_entry(a->node);
  if (!entry.ok()) return fail("reconcile", entry.error().message);
  nlohmann::ordered_json probe = entry.value();
  probe["cniVersion"] = "1.0.0";
  probe["name"] = "weir-node";
  auto config = cni::parse_config(probe.dump());
  if (!config.ok()) return fail("reconcile", config.error().msg);
  if (a->repair == RepairMode::Off) {
    spdlog::info("reconcile: --repair off, nothing to do");
    return 0;
  }
  auto runtime = cri_runtime(cri_endpoints(f));
  auto capture = kernel_pod_capture();
  auto r = reconcile_pass(*runtime, *capture, config.value(), a->repair, [](const ReconcileEvent& e) {
    log_line(e.level == ReconcileEvent::Level::Info ? LogLevel::Info : e.level == ReconcileEvent::Level::Warn ? LogLevel::Warn : LogLevel::Error,
             "reconcile: " + e.message);
  });
  if (!r.ok()) return fail("reconcile", r.error().message);
  spdlog::info("reconcile (--repair {}): {}", to_string(a->repair), r->to_line());
  return r->failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"weir-node: puts weir-cni on this node, keeps it in the CNI chain, and repairs running pods in place"};
  app.name("weir-node");
  app.require_subcommand(1);
  Flags f;
  CLI::App* install = app.add_subcommand("install", "Copy weir-cni into the bin dirs and put weir's entry into the primary CNI config (waits for one)");
  CLI::App* run = app.add_subcommand("run", "install, keep it so (inotify), reconcile pods, serve /readyz and /metrics; uninstall on SIGTERM");
  CLI::App* uninstall_cmd = app.add_subcommand("uninstall", "Take weir's entry out, then remove the binary if no config names it");
  CLI::App* status = app.add_subcommand("status", "What is installed where, the primary config, readiness, the last reconcile");
  CLI::App* reconcile = app.add_subcommand("reconcile", "One pass over the runtime's ready pods: decide, check, repair");
  for (CLI::App* sub : {install, run, uninstall_cmd, status, reconcile}) add_node_flags(*sub, f);
  install->add_option("--wait-timeout", f.wait_timeout, "give up when no primary config appears within this (0s: wait forever)")->capture_default_str();
  status->add_option("--output", f.output, "text or json")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
  for (CLI::App* sub : {run, reconcile}) add_reconcile_flags(*sub, f);
  run->add_option("--listen", f.listen, "host:port for /readyz and /metrics (off: none)")->capture_default_str();
  run->add_flag("--keep-on-exit", f.keep_on_exit, "leave weir's entry and binary in place on exit (upgrades)");
  run->add_option("--reconcile-interval", f.reconcile_interval, "time between reconcile passes (500ms, 2s, 1m)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  setup_logging(f.log_level);
  // A plugin binary that exits before reading its VERSION stdin must not kill the agent.
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (install->parsed()) return cmd_install(f);
    if (uninstall_cmd->parsed()) return cmd_uninstall(f);
    if (status->parsed()) return cmd_status(f);
    if (reconcile->parsed()) return cmd_reconcile(f);
    if (run->parsed()) {
      // Before any thread starts: SIGTERM and SIGINT arrive on the agent's signalfd.
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGTERM);
      sigaddset(&set, SIGINT);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
      return cmd_run(f);
    }
  } catch (const std::exception& e) {
    return fail("weir-node", std::string("internal error: ") + e.what());
  }
  return 2;
}
