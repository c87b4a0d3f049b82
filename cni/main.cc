// weir-cni: the CNI chained plugin. Thin on purpose: parse (env, stdin) →
// validate → require prevResult → decide → act through the rules library →
// print exactly one JSON document on stdout. Logs go to stderr or logFile.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "cni/config.h"
#include "cni/error_codes.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
#include "rules/xtables/render.h"
#include "cni/result.h"
#include "cni/pod_decision.h"
#include "cni/status.h"

namespace weir::cni {
namespace {

// What one invocation knows, for the handlers and the one log line.
struct Invocation {
  CniEnv env;
  PluginConfig config;
  PodRef pod;
  std::string decision = "-";  // "captured" / "skipped" / "cleaned" ...
  std::string reason;
};

using Handler = CniResult<nlohmann::json> (*)(Invocation&);

CniError env_error(const std::string& msg) { return CniError{code::kInvalidEnvironment, msg, ""}; }

// The plain "nothing to report" answer of DEL, CHECK, STATUS and GC.
nlohmann::json empty_result(const Invocation& inv) { return {{"cniVersion", inv.config.cni_version}}; }

// Opens CNI_NETNS and refuses the plugin's own namespace: rules there would
// capture the node's traffic.
CniResult<Netns> open_pod_netns(const std::string& path) {
  auto ns = Netns::open(path);
  if (!ns.ok()) {
    const Error& e = ns.error();
    if (e.kind == ErrorKind::NetnsNotFound) return CniError{code::kNetnsMissing, "CNI_NETNS " + path + " does not exist", e.message};
    return env_error("CNI_NETNS " + path + " is not a usable network namespace: " + e.message);
  }
  auto self = Netns::current();
  if (!self.ok()) return from_error(self.error(), "open the plugin's own network namespace");
  if (ns->same_as(*self)) {
    return CniError{code::kOwnNetns, "CNI_NETNS " + path + " is the plugin's own network namespace; refusing to change it",
                    "rules there would capture the node's traffic"};
  }
  return std::move(ns.value());
}

NetnsTarget target_for(const std::string& path) {
  NetnsTarget t;
  t.netns_path = path;
  return t;
}

// Decides for this pod (cni/pod_decision.h), logging its warnings.
CniResult<std::optional<CaptureSpec>> decide_for(Invocation& inv) {
  std::vector<std::string> warnings;
  auto d = decide_pod(inv.config, inv.pod.ns, inv.config.annotations, warnings);
  for (const auto& w : warnings) spdlog::warn("pod {}: {}", inv.pod.display(), w);
  if (!d.ok()) {
    inv.decision = "failed";
    return d.error();
  }
  inv.decision = d.value().captured() ? "captured" : "skipped";
  inv.reason = d.value().reason;
  return std::move(d.value().spec);
}

CniResult<nlohmann::json> cmd_add(Invocation& inv) {
  if (!inv.config.prev_result) {
    return CniError{code::kInvalidConfig, "prevResult is missing: weir-cni is a chained plugin and must follow an interface plugin", ""};
  }
  // Before deciding: the node's own namespace is refused even for a pod weir
  // would skip (a runtime that sends it is broken), and a namespace that does
  // not exist is an error on ADD whatever the pod.
  auto ns = open_pod_netns(inv.env.netns);
  if (!ns.ok()) return ns.error();
  auto spec = decide_for(inv);
  if (!spec.ok()) return spec.error();
  if (spec.value()) {
    auto report = apply(target_for(inv.env.netns), *spec.value());
    if (!report.ok()) return from_error(report.error(), "install capture rules in " + inv.env.netns);
    for (const auto& w : report->warnings) spdlog::warn("{}: {}", inv.env.netns, w);
  }
  return convert_result(*inv.config.prev_result, inv.config.cni_version);
}

// Needs no spec (clean removes all of weir's rules) and no annotations: the
// config may even be one parse_config refuses (see run()).
CniResult<nlohmann::json> cmd_del(Invocation& inv) {
  inv.decision = "cleaned";
  auto ns = open_pod_netns(inv.env.netns);
  if (!ns.ok()) {
    // A namespace that is gone (or whose mount point is left as a plain file)
    // has no rules left to remove: DEL succeeds, as the spec requires.
    if (ns.error().code == code::kNetnsMissing || ns.error().code == code::kInvalidEnvironment) {
      inv.decision = "nothing to do";
      inv.reason = "namespace is gone";
      return empty_result(inv);
    }
    return ns.error();
  }
  Status s = clean(target_for(inv.env.netns));
  if (!s.ok()) {
    if (s.error().kind == ErrorKind::NetnsNotFound) return empty_result(inv);
    return from_error(s.error(), "remove capture rules from " + inv.env.netns);
  }
  return empty_result(inv);
}

CniResult<nlohmann::json> cmd_check(Invocation& inv) {
  if (compare_versions(inv.config.cni_version, "0.4.0") < 0) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + inv.config.cni_version + " does not allow CHECK", "CHECK needs 0.4.0 or later"};
  }
  if (!inv.config.prev_result) {
    return CniError{code::kInvalidConfig, "prevResult is missing: CHECK needs the result of ADD", ""};
  }
  auto ns = open_pod_netns(inv.env.netns);  // before deciding, as on ADD
  if (!ns.ok()) return ns.error();
  auto spec = decide_for(inv);
  if (!spec.ok()) return spec.error();
  if (!spec.value()) return empty_result(inv);
  auto report = check(target_for(inv.env.netns), *spec.value());
  if (!report.ok()) return from_error(report.error(), "read capture rules in " + inv.env.netns);
  if (!report->diff.empty()) {
    inv.decision = "drifted";
    return CniError{code::kRulesDrifted, "weir's rules in " + inv.env.netns + " differ from what ADD installs for this pod",
                    render_diff(report->diff)};
  }
  return empty_result(inv);
}

CniResult<nlohmann::json> cmd_status(Invocation& inv) {
  if (compare_versions(inv.config.cni_version, "1.1.0") < 0) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + inv.config.cni_version + " does not allow STATUS", "STATUS needs 1.1.0"};
  }
  if (auto e = check_agent_ready(inv.config.agent_readiness)) return *e;
  if (Status s = probe_kernel(inv.config.spec); !s.ok()) {
    return CniError{code::kPluginNotAvailable, "weir cannot program netfilter rules on this node", s.error().message};
  }
  inv.decision = "available";
  return empty_result(inv);
}

CniResult<nlohmann::json> cmd_gc(Invocation& inv) {
  if (compare_versions(inv.config.cni_version, "1.1.0") < 0) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + inv.config.cni_version + " does not allow GC", "GC needs 1.1.0"};
  }
  // weir keeps no state outside the pod's namespace, which goes with the pod.
  inv.decision = "nothing to collect";
  return empty_result(inv);
}

Handler handler_for(Command c) {
  switch (c) {
    case Command::Add: return cmd_add;
    case Command::Del: return cmd_del;
    case Command::Check: return cmd_check;
    case Command::Status: return cmd_status;
    case Command::Gc: return cmd_gc;
    case Command::Version: break;
  }
  return nullptr;
}

// Reads stdin up to one byte past `limit`, so the parser can refuse a config
// that is too large without reading all of it.
std::string read_stdin(size_t limit) {
  std::string text;
  char buf[65536];
  while (text.size() <= limit) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

// Logs to logFile (created 0600) when configured, else to stderr. A log file
// that cannot be opened must not fail the pod: fall back to stderr and say so.
void setup_logging(const PluginConfig& c = PluginConfig{}) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  std::string problem;
  if (!c.log_file.empty()) {
    int fd = ::open(c.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      try {
        sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(c.log_file, false);
      } catch (const spdlog::spdlog_ex& e) {
        problem = e.what();
      }
    } else {
      problem = std::string("open ") + c.log_file + ": " + std::strerror(errno);
    }
  }
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("weir-cni", std::move(sink));
  // UTC: no /etc/localtime to read on every invocation, and node logs compare.
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %L weir-cni[%P] %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(c.log_level));
  spdlog::set_default_logger(std::move(logger));
  if (!problem.empty()) spdlog::warn("logFile: {}; logging to stderr", problem);
}

struct Output {
  nlohmann::json doc;
  bool ok = true;
};

Output run(Invocation& inv, const std::string& input) {
  auto command = parse_command(inv.env.command);
  if (!command) {
    return {error_document(version_of(input), env_error("CNI_COMMAND \"" + inv.env.command +
                                                        "\" is not one of ADD, DEL, CHECK, VERSION, STATUS, GC")), false};
  }
  if (*command == Command::Version) return {version_document(version_of(input)), true};

  // DEL and GC need no more of the config than its version, and a DEL that
  // fails stops the chain's other DELs (the pod's IP leaks): a problem only
  // ADD and CHECK care about is a warning for them.
  const bool lenient = *command == Command::Del || *command == Command::Gc;
  std::string problem;
  auto config = lenient ? parse_config_lenient(input, problem) : parse_config(input);
  if (!config.ok()) return {error_document(version_of(input), config.error()), false};
  inv.config = std::move(config.value());
  setup_logging(inv.config);
  if (!problem.empty()) spdlog::warn("{}: ignoring a config problem that matters only to ADD and CHECK: {}", inv.env.command, problem);
  inv.pod = pod_from_args(parse_cni_args(inv.env.args));
  if (*command == Command::Del && inv.env.netns.empty()) {
    // containerd's second DEL (RemovePodSandbox): the namespace is gone and
    // its rules with it; nothing else can make this DEL fail.
    inv.decision = "nothing to do";
    inv.reason = "CNI_NETNS is empty";
    return {empty_result(inv), true};
  }
  if (auto e = check_env(*command, inv.env)) return {error_document(inv.config.cni_version, *e), false};

  auto result = handler_for(*command)(inv);
  if (!result.ok()) return {error_document(inv.config.cni_version, result.error()), false};
  return {std::move(result.value()), true};
}

}  // namespace
}  // namespace weir::cni

int main() {
  using namespace weir::cni;
  // spdlog's default logger writes to stdout, which belongs to the result.
  setup_logging();
  Invocation inv;
  inv.env = read_env([](const char* name) { return std::getenv(name); });
  const size_t stdin_limit = max_config_bytes(parse_command(inv.env.command));
  Output out;
  // The duration logged is weir's own work: it starts once the runtime has
  // written stdin, whose timing is the runtime's.
  auto start = std::chrono::steady_clock::now();
  try {
    std::string input = read_stdin(stdin_limit);
    start = std::chrono::steady_clock::now();
    out = run(inv, input);
  } catch (const std::exception& e) {
    out = {error_document(inv.config.cni_version, CniError{code::kInternal, "internal error", e.what()}), false};
  }
  const std::string text = out.doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      spdlog::error("write result: {}", std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }

  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::string outcome = out.ok ? "ok" : "error " + std::to_string(out.doc.value("code", 0)) + ": " + out.doc.value("msg", "");
  spdlog::info("{} container={} pod={} netns={} decision={}{} result={} duration={:.2f}ms",
               inv.env.command.empty() ? "-" : inv.env.command,
               inv.env.container_id.empty() ? "-" : inv.env.container_id, inv.pod.display(),
               inv.env.netns.empty() ? "-" : inv.env.netns, inv.decision, inv.reason.empty() ? "" : " (" + inv.reason + ")",
               outcome, ms);
  return out.ok ? 0 : 1;
}
