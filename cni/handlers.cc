#include "cni/handlers.h"

#include <cerrno>
#include <optional>

#include "cni/error_codes.h"
#include "cni/pod_decision.h"
#include "cni/result_document.h"
#include "rules/foreign.h"
#include "rules/diff.h"

namespace weir::cni {
namespace {

// One invocation: its input, and the answer it builds up.
struct Invocation {
  const CniEnv& env;
  KernelOps& kernel;
  PluginConfig config;
  CniAnswer answer;
};

CniError env_error(const std::string& msg) { return CniError{code::kInvalidEnvironment, msg, ""}; }

// The plain "nothing to report" answer of DEL, CHECK, STATUS and GC.
nlohmann::json empty_result(const Invocation& inv) { return {{"cniVersion", inv.config.cni_version}}; }

NetnsTarget pod_target(const Invocation& inv) {
  NetnsTarget t;
  t.netns_path = inv.env.netns;
  return t;  // allow_own_netns stays false: ops refuses the plugin's own namespace
}

// A failure of an operation on CNI_NETNS, as the runtime should read it:
// the namespace's own problems (missing, the plugin's own, not a namespace)
// get their codes whatever step met them; the rest is from_error().
CniError netns_failure(const Invocation& inv, const Error& e, const std::string& what) {
  const std::string& path = inv.env.netns;
  if (e.sys_errno != EPERM && e.sys_errno != EACCES) {
    switch (e.kind) {
      case ErrorKind::NetnsNotFound:
        return CniError{code::kNetnsMissing, "CNI_NETNS " + path + " does not exist", e.message};
      case ErrorKind::OwnNetns:
        return CniError{code::kOwnNetns, "CNI_NETNS " + path + " is the plugin's own network namespace; refusing to change it",
                        "rules there would capture the node's traffic"};
      case ErrorKind::InvalidArgument:
        return env_error("CNI_NETNS " + path + " is not a usable network namespace: " + e.message);
      default:
        break;
    }
  }
  return from_error(e, what);
}

// DEL: what says the namespace is gone (its rules with it). Only "no such
// file" (ENOENT, ENOTDIR) or a path that opens but is no namespace (the stale
// mount point a runtime leaves as a plain file). Anything else (EMFILE,
// EACCES, ...) says nothing about the namespace: DEL reports it, and the
// runtime retries.
bool netns_is_gone(const Error& e) {
  if (e.kind == ErrorKind::NetnsNotFound) return true;
  if (e.sys_errno == ENOENT || e.sys_errno == ENOTDIR) return true;
  return e.kind == ErrorKind::InvalidArgument && e.sys_errno == 0;
}

// Decides for this pod (pod_decision.h). On a bad annotation, the
// namespace's own problems are still reported first, as for any pod.
CniResult<std::optional<CaptureSpec>> decide_for(Invocation& inv) {
  std::vector<std::string> warnings;
  auto d = decide_pod(inv.config, inv.answer.pod.ns, inv.config.annotations, warnings);
  for (const auto& w : warnings) inv.answer.warnings.push_back("pod " + inv.answer.pod.display() + ": " + w);
  if (!d.ok()) {
    inv.answer.decision = "failed";
    if (Status s = inv.kernel.open_netns(pod_target(inv)); !s) return netns_failure(inv, s.error(), "open " + inv.env.netns);
    return d.error();
  }
  inv.answer.decision = d.value().captured() ? "captured" : "skipped";
  inv.answer.reason = d.value().reason;
  if (!d.value().captured()) {
    // The node's own namespace is refused even for a pod weir skips (a
    // runtime that sends it is broken), and a missing one is an error.
    if (Status s = inv.kernel.open_netns(pod_target(inv)); !s) return netns_failure(inv, s.error(), "open " + inv.env.netns);
  }
  return std::move(d.value().spec);
}

CniResult<nlohmann::json> cmd_add(Invocation& inv) {
  if (!inv.config.prev_result) {
    return CniError{code::kInvalidConfig, "prevResult is missing: weir-cni is a chained plugin and must follow an interface plugin", ""};
  }
  // Converted (and so validated) before anything changes: a prevResult weir
  // cannot pass on must not leave a captured pod behind an ADD that failed.
  auto result = convert_result(*inv.config.prev_result, inv.config.cni_version);
  if (!result.ok()) return result.error();
  auto spec = decide_for(inv);
  if (!spec.ok()) return spec.error();
  if (spec.value()) {
    auto report = inv.kernel.apply(pod_target(inv), *spec.value());
    if (!report.ok()) return netns_failure(inv, report.error(), "install capture rules in " + inv.env.netns);
    for (const auto& w : report->warnings) inv.answer.warnings.push_back(inv.env.netns + ": " + w);
  }
  return std::move(result.value());
}

// Needs no spec (clean removes all of weir's rules) and no annotations: the
// config may even be one parse_config refuses (see run_cni()).
CniResult<nlohmann::json> cmd_del(Invocation& inv) {
  inv.answer.decision = "cleaned";
  Status s = inv.kernel.clean(pod_target(inv));
  if (!s.ok()) {
    // A namespace that is gone has no rules left to remove: DEL succeeds,
    // as the spec requires.
    if (netns_is_gone(s.error())) {
      inv.answer.decision = "nothing to do";
      inv.answer.reason = "namespace is gone";
      return empty_result(inv);
    }
    return netns_failure(inv, s.error(), "remove capture rules from " + inv.env.netns);
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
  auto spec = decide_for(inv);
  if (!spec.ok()) return spec.error();
  if (!spec.value()) return empty_result(inv);
  auto report = inv.kernel.check(pod_target(inv), *spec.value());
  if (!report.ok()) return netns_failure(inv, report.error(), "read capture rules in " + inv.env.netns);
  if (!report->diff.empty()) {
    inv.answer.decision = "drifted";
    return CniError{code::kRulesDrifted, "weir's rules in " + inv.env.netns + " differ from what ADD installs for this pod",
                    render_diff(report->diff)};
  }
  if (!report->foreign.empty()) {
    // weir's rules are right, but another tool captures the pod too (weir
    // never removes its rules): the pod's networking is not as ADD left it.
    std::string details;
    for (const ForeignRules& f : report->foreign) details += describe(f) + "\n";
    inv.answer.decision = "captured twice";
    return CniError{code::kRulesDrifted, "another capture tool's rules are in " + inv.env.netns + " besides weir's",
                    details};
  }
  return empty_result(inv);
}

CniResult<nlohmann::json> cmd_status(Invocation& inv) {
  if (compare_versions(inv.config.cni_version, "1.1.0") < 0) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + inv.config.cni_version + " does not allow STATUS", "STATUS needs 1.1.0"};
  }
  if (auto e = check_agent_ready(inv.config.agent_readiness)) return *e;
  if (Status s = inv.kernel.probe(inv.config.spec); !s.ok()) {
    return CniError{code::kPluginNotAvailable, "weir cannot program netfilter rules on this node", s.error().message};
  }
  inv.answer.decision = "available";
  return empty_result(inv);
}

CniResult<nlohmann::json> cmd_gc(Invocation& inv) {
  if (compare_versions(inv.config.cni_version, "1.1.0") < 0) {
    return CniError{code::kIncompatibleVersion, "cniVersion " + inv.config.cni_version + " does not allow GC", "GC needs 1.1.0"};
  }
  // weir keeps no state outside the pod's namespace, which goes with the pod.
  inv.answer.decision = "nothing to collect";
  return empty_result(inv);
}

using Handler = CniResult<nlohmann::json> (*)(Invocation&);

Handler handler_for(CniCommand c) {
  switch (c) {
    case CniCommand::Add: return cmd_add;
    case CniCommand::Del: return cmd_del;
    case CniCommand::Check: return cmd_check;
    case CniCommand::Status: return cmd_status;
    case CniCommand::Gc: return cmd_gc;
    case CniCommand::Version: break;
  }
  return nullptr;
}

void fail(CniAnswer& answer, const std::string& version, const CniError& e) {
  answer.document = error_document(version, e);
  answer.ok = false;
}

CniAnswer run_command(Invocation& inv, const std::string& input) {
  const CniEnv& env = inv.env;
  CniAnswer& answer = inv.answer;
  auto command = parse_command(env.command);
  if (!command) {
    fail(answer, version_of(input),
         env_error("CNI_COMMAND \"" + env.command + "\" is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"));
    return answer;
  }
  if (*command == CniCommand::Version) {
    answer.document = version_document(version_of(input));
    return answer;
  }

  // DEL and GC need no more of the config than its version, and a DEL that
  // fails stops the chain's other DELs (the pod's IP leaks): a problem only
  // ADD and CHECK care about is a warning for them.
  const bool lenient = *command == CniCommand::Del || *command == CniCommand::Gc;
  std::string problem;
  auto config = lenient ? parse_config_lenient(input, problem) : parse_config(input);
  if (!config.ok()) {
    fail(answer, version_of(input), config.error());
    return answer;
  }
  inv.config = std::move(config.value());
  answer.log_level = inv.config.log_level;
  answer.log_file = inv.config.log_file;
  if (!problem.empty()) {
    answer.warnings.push_back(env.command + ": ignoring a config problem that matters only to ADD and CHECK: " + problem);
  }
  answer.pod = pod_from_args(parse_cni_args(env.args));
  if (*command == CniCommand::Del && env.netns.empty()) {
    // containerd's second DEL (RemovePodSandbox): the namespace is gone and
    // its rules with it; nothing else can make this DEL fail.
    answer.decision = "nothing to do";
    answer.reason = "CNI_NETNS is empty";
    answer.document = empty_result(inv);
    return answer;
  }
  if (auto e = check_env(*command, env)) {
    fail(answer, inv.config.cni_version, *e);
    return answer;
  }
  auto result = handler_for(*command)(inv);
  if (!result.ok()) {
    fail(answer, inv.config.cni_version, result.error());
    return answer;
  }
  answer.document = std::move(result.value());
  return answer;
}

}  // namespace

CniAnswer run_cni(const CniEnv& env, const std::string& input, KernelOps& kernel) {
  Invocation inv{env, kernel, {}, {}};
  try {
    return run_command(inv, input);
  } catch (const std::exception& e) {  // a bug in weir: bad input is never reported by an exception
    fail(inv.answer, inv.config.cni_version, CniError{code::kInternal, "internal error", e.what()});
    return inv.answer;
  }
}

}  // namespace weir::cni
