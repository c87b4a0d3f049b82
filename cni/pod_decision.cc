#include "cni/pod_decision.h"

#include "cni/annotations.h"
#include "cni/selection.h"

namespace weir::cni {

CniResult<PodDecision> decide_pod(const PluginConfig& config, const std::string& pod_namespace,
                                  const std::optional<std::map<std::string, std::string>>& annotations,
                                  std::vector<std::string>& warnings) {
  auto d = decide(SelectionPolicy{config.exclude_namespaces, config.capture_without_annotations}, pod_namespace, annotations);
  if (!d.ok()) return CniError{code::kInvalidConfig, d.error().message, ""};
  warnings.insert(warnings.end(), d->warnings.begin(), d->warnings.end());
  PodDecision out;
  out.reason = d->reason;
  if (!d->capture) return out;
  CaptureSpec spec = config.spec;
  if (annotations) {
    Status s = apply_annotations(spec, *annotations, warnings, config.proxy_gids_set);
    if (!s.ok()) {
      return CniError{code::kInvalidConfig, s.error().message, "the pod is not captured; fix the annotation and recreate the pod"};
    }
  }
  out.spec = std::move(spec);
  return out;
}

}  // namespace weir::cni
