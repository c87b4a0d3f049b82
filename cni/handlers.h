// The CNI commands of weir-cni as a library: from the CNI_* environment and
// the stdin text to the one JSON document for stdout. Every side effect goes
// through KernelOps, so the whole CNI contract (decisions, error codes, the
// lenient DEL) is unit-tested with a fake, without root. cni/main.cc only
// reads the environment and stdin, calls run_cni(), logs and prints.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/config.h"
#include "kernel/ops.h"
#include "rules/error.h"
#include "rules/spec.h"

namespace weir::cni {

// What the handlers ask of the kernel. The real one (make_kernel_ops(), in
// kernel_ops.cc, outside weir_cni_core) calls kernel/ops.h, which opens the
// namespace once per call, refuses the plugin's own namespace (ErrorKind
// OwnNetns) and takes the namespace's lock for writers.
class KernelOps {
 public:
  virtual ~KernelOps() = default;
  // Opens the target the way apply() would, changing nothing: the namespace
  // must exist and be a network namespace, and may not be the plugin's own.
  // For pods weir skips, whose namespace ADD and CHECK still vouch for.
  virtual Status open_netns(const NetnsTarget& t) = 0;
  virtual Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec) = 0;
  virtual Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec) = 0;
  virtual Status clean(const NetnsTarget& t) = 0;
  // STATUS: can weir program the tables `spec` needs on this node? Never
  // touches the node's own namespace (see status_tables.h).
  virtual Status probe(const CaptureSpec& spec) = 0;
};

// kernel/ops.h and the STATUS probe; links weir_kernel.
std::unique_ptr<KernelOps> make_kernel_ops();

// What one invocation answered, and what main needs to log it.
struct CniAnswer {
  nlohmann::json document;  // the one JSON document for stdout
  bool ok = true;           // exit status 0, else 1 (document is an error)
  // Where and how to log, from the config once it is read.
  std::string log_level = "info";
  std::string log_file;
  // For the log: warnings to log before the invocation's one info line.
  std::vector<std::string> warnings;
  PodRef pod;
  std::string decision = "-";  // "captured", "skipped", "cleaned", ...
  std::string reason;
};

// Runs one invocation: `input` is stdin, already bounded by
// max_config_bytes(parse_command(env.command)) (one byte more is read, so a
// config over the limit is seen to be one).
//
// - VERSION answers {cniVersion, supportedVersions}.
// - ADD: needs prevResult (code 7, and validated before anything changes);
//   decides (pod_decision.h); a captured pod gets apply(), a skipped one
//   open_netns(); either way CNI_NETNS is opened once and a missing one is
//   code 100, the plugin's own 102, a non-namespace 4 — these before a bad
//   annotation's 7. Prints prevResult converted to the config's version.
// - CHECK (0.4.0+): as ADD, then check(); drift is 104 with the diff.
// - DEL: lenient (the config needs only valid JSON and a supported
//   cniVersion; other problems become warnings); empty CNI_NETNS succeeds;
//   clean() whatever the annotations say; a namespace that is gone (ENOENT,
//   ENOTDIR, a stale mount point that is no namespace) succeeds; any other
//   failure to open it (EMFILE, EACCES, ...) is reported.
// - STATUS (1.1.0): probe(); 50 when it fails. GC (1.1.0): lenient, succeeds.
// Never throws for bad input: every failure is an error document.
CniAnswer run_cni(const CniEnv& env, const std::string& input, KernelOps& kernel);

}  // namespace weir::cni
