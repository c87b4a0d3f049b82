// What a runtime hands weir-cni: the CNI_* environment, CNI_ARGS and the
// plugin's entry of the network config list on stdin (with prevResult and
// runtimeConfig injected). Pure parsing: no syscalls, tested without root.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/agent_readiness.h"
#include "cni/error_codes.h"
#include "rules/spec.h"

namespace weir::cni {

enum class CniCommand { Add, Del, Check, Version, Status, Gc };
// nullopt for anything else (the caller answers with code 4).
std::optional<CniCommand> parse_command(const std::string& text);
const char* to_string(CniCommand c);

struct CniEnv {
  std::string command;       // CNI_COMMAND
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS (a path; may be empty on DEL)
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS
  std::string path;          // CNI_PATH
};
// Reads CNI_* through `getenv` (injectable for tests); unset reads as empty.
CniEnv read_env(const std::function<const char*(const char*)>& getenv);

// Code 4 naming the variable when a variable `command` needs is missing:
// ADD and CHECK need CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME; DEL needs
// CNI_CONTAINERID and CNI_IFNAME (CNI_NETNS may be empty: the pod is gone).
std::optional<CniError> check_env(CniCommand command, const CniEnv& env);

// CNI_ARGS "K=V;K=V": any order, unknown keys kept but ignored by callers,
// items without '=' skipped (permissive: runtimes add keys of their own).
std::map<std::string, std::string> parse_cni_args(const std::string& text);

struct PodRef {
  std::string ns;    // K8S_POD_NAMESPACE, empty when not given
  std::string name;  // K8S_POD_NAME
  std::string uid;   // K8S_POD_UID
  // "ns/name", or "-" when the runtime named no pod.
  std::string display() const;
};
PodRef pod_from_args(const std::map<std::string, std::string>& args);

// CNI spec versions.
const std::vector<std::string>& supported_versions();  // 0.3.0 .. 1.1.0
bool is_supported_version(const std::string& v);
// Compares dotted versions numerically: <0, 0, >0. Malformed parts read as 0.
int compare_versions(const std::string& a, const std::string& b);

// The annotation key in runtimeConfig (containerd 1.5+, CRI-O 1.29+).
inline constexpr const char* kPodAnnotationsCapability = "io.kubernetes.cri.pod-annotations";

// The stdin config can never legitimately be this large (Kubernetes caps a
// pod's annotations at 256 KiB); refusing early bounds memory and time.
inline constexpr size_t kMaxConfigBytes = 512 * 1024;
// DEL and GC read more: they must not fail on a config they do not need (a
// failing DEL stops the rest of the chain's DEL and leaks the pod's IPs), so
// they read any config a runtime could send, bounded only to bound memory.
inline constexpr size_t kMaxLenientConfigBytes = 64 * 1024 * 1024;

// How much of stdin `command` reads (nullopt: an unknown command).
size_t max_config_bytes(std::optional<CniCommand> command);

struct PluginConfig {
  std::string cni_version;  // the config's cniVersion, used for output
  std::string name;
  CaptureSpec spec;  // defaults, then the "capture" object
  bool proxy_gids_set = false;  // the capture object gave proxyGids itself
  std::vector<std::string> exclude_namespaces{"kube-system"};
  bool capture_without_annotations = false;
  std::string log_level = "info";  // trace|debug|info|warn|error|off
  std::string log_file;            // empty = stderr
  std::optional<nlohmann::json> prev_result;
  // The pod's annotations; nullopt when the runtime passed none.
  std::optional<std::map<std::string, std::string>> annotations;
  // Set by weir-node in the entry it writes: STATUS fails while it is not ready.
  std::optional<AgentReadiness> agent_readiness;
  // TODO(issue: Kubernetes API look-up): a "kubernetes" object (kubeconfig,
  // timeout) so pods whose runtime passes no annotations can be looked up.
  // Documented in README.md as reserved; today its presence is an error so a
  // user never believes a look-up happens when it does not.
};

// Parses the stdin text. Codes: 6 when it is not a JSON object, 1 when
// cniVersion is unsupported, 7 for wrong types, unknown values, an invalid
// capture spec or a config over kMaxConfigBytes. Messages name the key.
CniResult<PluginConfig> parse_config(const std::string& text);

// For DEL and GC, which need only cniVersion (and where to log): parse_config,
// but where it fails with code 7 the answer is the minimal config (cniVersion,
// name, and logLevel/logFile when they are valid) and `problem` says what the
// strict parse refused. Still code 6 when the text is not a JSON object, 1 for
// an unsupported cniVersion, and 7 over kMaxLenientConfigBytes.
CniResult<PluginConfig> parse_config_lenient(const std::string& text, std::string& problem);

// Only cniVersion, for VERSION (whose stdin is {"cniVersion": ...} at most).
std::string version_of(const std::string& text);

}  // namespace weir::cni
