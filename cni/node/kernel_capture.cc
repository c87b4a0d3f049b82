// PodCapture through the rules library: the same apply and check weir-cni
// runs on ADD and CHECK.
#include "cni/node/reconcile.h"
#include "kernel/ops.h"

namespace weir::node {
namespace {

bool has_rules(const CapturePolicy& p) {
  for (const auto& fp : p.families) {
    for (const auto& sp : fp.stages) {
      if (!sp.chains.empty()) return true;
    }
  }
  return !p.routes.empty();
}

class KernelPodCapture : public PodCapture {
 public:
  Result<State> check(const std::string& netns_path, const CaptureSpec& spec) override {
    NetnsTarget t;
    t.netns_path = netns_path;
    auto r = weir::check(t, spec);
    if (!r.ok()) return r.error();
    if (r->diff.empty()) return State::InPlace;
    return has_rules(r->live) ? State::Drifted : State::Missing;
  }
  Status apply(const std::string& netns_path, const CaptureSpec& spec) override {
    NetnsTarget t;
    t.netns_path = netns_path;
    auto r = weir::apply(t, spec);
    if (!r.ok()) return r.error();
    return {};
  }
};

}  // namespace

std::unique_ptr<PodCapture> kernel_pod_capture() { return std::make_unique<KernelPodCapture>(); }

}  // namespace weir::node
