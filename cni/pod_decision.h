// The whole per-pod decision of weir-cni, as a library function: whether a pod
// is captured, and with which capture spec. Pure: no syscalls, no logging (the
// caller logs `warnings`), tested without root. weir-cni calls it on ADD and
// CHECK; the node agent calls it to decide pods exactly as weir-cni does.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cni/config.h"
#include "rules/error.h"
#include "rules/spec.h"

namespace weir::cni {

struct PodDecision {
  // Set when the pod is captured: the config's `capture` spec with the pod's
  // annotation overrides applied and validated. nullopt when skipped.
  std::optional<CaptureSpec> spec;
  // Why, for the log line: e.g. "annotation weir.dev/capture=enabled",
  // "namespace kube-system is excluded".
  std::string reason;

  bool captured() const { return spec.has_value(); }
};

// Decides for one pod from the plugin's config entry and the pod's annotations.
//
// Inputs:
//  - `config`: the parsed weir-cni entry (parse_config). Read from it:
//    `excludeNamespaces`, `captureWithoutAnnotations`, `capture` (the spec)
//    and whether `capture` set `proxyGids` itself. Its own `annotations`
//    field is NOT read: the annotations are passed explicitly.
//  - `pod_namespace`: K8S_POD_NAMESPACE ("" when the runtime named none).
//  - `annotations`: the pod's annotations; nullopt when none are known (the
//    runtime passed none), which is not the same as an empty map.
//    weir-cni passes `config.annotations` (from runtimeConfig).
//  - `warnings` (appended to, on success and on error): annotations read
//    differently than they may look (a non-boolean sidecar.istio.io/inject,
//    an Istio CIDR with host bits). The caller logs them.
//
// Output: the PodDecision (skipped with its reason, or captured with its
// spec), or a CniError with code 7 (kInvalidConfig) naming the annotation
// when weir.dev/capture is neither enabled nor disabled, or when an override
// annotation is malformed or makes the spec invalid (details then say the pod
// is not captured). On error the pod must not be captured.
//
// The selection order is selection.h's decide(); the overrides are
// annotations.h's apply_annotations() (weir.dev/* first, then Istio's), applied
// only to captured pods.
CniResult<PodDecision> decide_pod(const PluginConfig& config, const std::string& pod_namespace,
                                  const std::optional<std::map<std::string, std::string>>& annotations,
                                  std::vector<std::string>& warnings);

}  // namespace weir::cni
