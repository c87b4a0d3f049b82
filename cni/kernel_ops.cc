// The real KernelOps of the CNI handlers (handlers.h): kernel/ops.h and the
// STATUS probe. Outside weir_cni_core, so the handlers' tests need no root.
#include "cni/handlers.h"
#include "cni/status_probe.h"
#include "kernel/ops.h"

#include <spdlog/spdlog.h>

namespace weir::cni {
namespace {

class OpsKernel final : public KernelOps {
 public:
  Status open_netns(const NetnsTarget& t) override { return open_target(t); }
  Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec) override { return weir::apply(t, spec); }
  Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec) override { return weir::check(t, spec); }
  Status clean(const NetnsTarget& t) override { return weir::clean(t); }
  Status probe(const CaptureSpec& spec) override {
    std::string backend;
    Status s = probe_kernel(spec, &backend);
    if (s)
      spdlog::info("STATUS: the {} backend takes weir's rules on this node (nftables backend: {})", backend,
                   nftables_backend());
    return s;
  }
};

}  // namespace

std::unique_ptr<KernelOps> make_kernel_ops() { return std::make_unique<OpsKernel>(); }

}  // namespace weir::cni
