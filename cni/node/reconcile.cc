#include "cni/node/reconcile.h"

#include <chrono>

#include "cni/pod_decision.h"

namespace weir::node {

Result<RepairMode> parse_repair_mode(const std::string& text) {
  if (text == "inplace") return RepairMode::Inplace;
  if (text == "report") return RepairMode::Report;
  if (text == "off") return RepairMode::Off;
  return Error{ErrorKind::InvalidArgument, "--repair \"" + text + "\": expected inplace, report or off", 0};
}

const char* to_string(RepairMode m) {
  switch (m) {
    case RepairMode::Inplace: return "inplace";
    case RepairMode::Report: return "report";
    case RepairMode::Off: return "off";
  }
  return "?";
}

std::string ReconcileSummary::to_line() const {
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.1f", duration_ms);
  return "pods=" + std::to_string(seen) + " captured=" + std::to_string(captured) + " repaired=" + std::to_string(repaired) +
         " needs_repair=" + std::to_string(needs_repair) + " skipped=" + std::to_string(skipped) + " failed=" + std::to_string(failed) +
         " gone=" + std::to_string(gone) + " duration=" + ms + "ms";
}

Result<ReconcileSummary> reconcile_pass(Runtime& runtime, PodCapture& capture, const cni::PluginConfig& entry, RepairMode mode,
                                        const ReconcileLog& log) {
  ReconcileSummary sum;
  if (mode == RepairMode::Off) return sum;
  const auto start = std::chrono::steady_clock::now();
  auto pods = runtime.ready_pod_sandboxes();
  if (!pods.ok()) return pods.error().wrap("list pod sandboxes");
  auto say = [&](ReconcileEvent::Level l, const std::string& m) {
    if (log) log({l, m});
  };
  using L = ReconcileEvent::Level;
  for (const auto& pod : pods.value()) {
    ++sum.seen;
    if (pod.host_network) {
      ++sum.skipped;
      continue;
    }
    std::vector<std::string> warnings;
    auto d = cni::decide_pod(entry, pod.ns, pod.annotations, warnings);
    for (const auto& w : warnings) say(L::Warn, "pod " + pod.display() + ": " + w);
    if (!d.ok()) {
      ++sum.failed;
      say(L::Error, "pod " + pod.display() + ": not captured: " + d.error().msg);
      continue;
    }
    const cni::PodDecision& decision = d.value();
    if (!decision.captured()) {
      ++sum.skipped;
      continue;
    }
    if (pod.netns_path.empty()) {
      ++sum.failed;
      say(L::Error, "pod " + pod.display() + ": should be captured (" + decision.reason + ") but the runtime reports no network namespace");
      continue;
    }
    auto state = capture.check(pod.netns_path, *decision.spec);
    if (!state.ok()) {
      if (state.error().kind == ErrorKind::NetnsNotFound) {
        ++sum.gone;
        continue;
      }
      ++sum.failed;
      say(L::Error, "pod " + pod.display() + ": check " + pod.netns_path + ": " + state.error().message);
      continue;
    }
    if (state.value() == PodCapture::State::InPlace) {
      ++sum.captured;
      continue;
    }
    const std::string what = state.value() == PodCapture::State::Missing ? "not captured" : "capture drifted";
    if (mode == RepairMode::Report) {
      ++sum.needs_repair;
      say(L::Warn, "pod " + pod.display() + ": " + what + " (" + decision.reason + "); --repair report: left as it is");
      continue;
    }
    Status s = capture.apply(pod.netns_path, *decision.spec);
    if (!s.ok()) {
      if (s.error().kind == ErrorKind::NetnsNotFound) {
        ++sum.gone;
        continue;
      }
      ++sum.failed;
      say(L::Error, "pod " + pod.display() + ": " + what + "; repair failed: " + s.error().message);
      continue;
    }
    ++sum.repaired;
    ++sum.captured;
    say(L::Info, "pod " + pod.display() + ": " + what + " (" + decision.reason + "); repaired in place in " + pod.netns_path);
  }
  sum.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return sum;
}

}  // namespace weir::node
