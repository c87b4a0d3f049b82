// reconcile: the pods already running on the node, decided exactly as
// weir-cni decides them (cni/pod_decision.h), checked, and repaired in place.
// The runtime (CRI) and the capture (kernel/ops.h) sit behind small
// interfaces, so the pass is tested against fakes without root.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cni/config.h"
#include "rules/error.h"
#include "rules/spec.h"

namespace weir::node {

// A ready pod sandbox as the runtime reports it.
struct PodSandbox {
  std::string id;
  std::string name, ns, uid;  // metadata
  std::map<std::string, std::string> annotations;
  std::string netns_path;     // empty when the runtime gives none
  bool host_network = false;  // the node's own namespace: never touched
  std::string display() const { return ns + "/" + name; }
};

// The container runtime, over the CRI (cri_client.h) or a fake.
class Runtime {
 public:
  virtual ~Runtime() = default;
  // "containerd 1.6.20": a cheap liveness call.
  virtual Result<std::string> version() = 0;
  // Every sandbox in state SANDBOX_READY, with its network namespace.
  virtual Result<std::vector<PodSandbox>> ready_pod_sandboxes() = 0;
};

// The capture in a pod's namespace, through kernel/ops.h or a fake.
class PodCapture {
 public:
  virtual ~PodCapture() = default;
  enum class State { InPlace, Missing, Drifted };
  // NetnsNotFound when the namespace is gone.
  virtual Result<State> check(const std::string& netns_path, const CaptureSpec& spec) = 0;
  virtual Status apply(const std::string& netns_path, const CaptureSpec& spec) = 0;
};

enum class RepairMode { Inplace, Report, Off };
Result<RepairMode> parse_repair_mode(const std::string& text);
const char* to_string(RepairMode m);

// Counts of one pass (all zero for --repair off).
struct ReconcileSummary {
  int seen = 0;            // ready sandboxes listed
  int skipped = 0;         // host network, not selected, no namespace
  int captured = 0;        // should be captured and are (after the pass)
  int repaired = 0;        // capture applied by this pass
  int needs_repair = 0;    // --repair report: should be captured and are not, or drifted
  int failed = 0;          // decision error (bad annotation) or apply/check failed
  int gone = 0;            // the namespace vanished mid-pass (not an error)
  double duration_ms = 0;
  std::string to_line() const;  // the summary log line's counts
};

struct ReconcileEvent {
  enum class Level { Info, Warn, Error } level = Level::Info;
  std::string message;
};
using ReconcileLog = std::function<void(const ReconcileEvent&)>;

// One pass. `entry` is weir's entry as weir-cni parses it (parse_config).
// One log line per pod changed, failed or needing repair; none for pods in
// place or skipped. Error only when the runtime cannot be asked (the caller
// retries); per-pod failures are counted.
Result<ReconcileSummary> reconcile_pass(Runtime& runtime, PodCapture& capture, const cni::PluginConfig& entry, RepairMode mode,
                                        const ReconcileLog& log);

// The capture through kernel/ops.h (root, CAP_SYS_ADMIN, CAP_NET_ADMIN).
std::unique_ptr<PodCapture> kernel_pod_capture();

}  // namespace weir::node
