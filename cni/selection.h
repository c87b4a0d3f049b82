// Which pods weir captures: a pure decision from the plugin config, the pod's
// namespace and its annotations. Tested without root.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "error.h"

namespace weir::cni {

inline constexpr const char* kCaptureAnnotation = "weir.dev/capture";           // "enabled" | "disabled"
inline constexpr const char* kIstioStatusAnnotation = "sidecar.istio.io/status";  // set by Istio's injector
inline constexpr const char* kIstioInjectAnnotation = "sidecar.istio.io/inject";  // "false" opts out

struct SelectionPolicy {
  std::vector<std::string> exclude_namespaces;
  bool capture_without_annotations = false;
};

struct Decision {
  bool capture = false;
  std::string reason;  // for the log line, e.g. "annotation weir.dev/capture=enabled"
};

// In order: an excluded namespace skips; no annotations from the runtime
// follows capture_without_annotations; weir.dev/capture=disabled or
// sidecar.istio.io/inject=false skips; weir.dev/capture=enabled or the
// presence of sidecar.istio.io/status captures; anything else skips.
// InvalidSpec when weir.dev/capture has another value.
Result<Decision> decide(const SelectionPolicy& policy, const std::string& pod_namespace,
                        const std::optional<std::map<std::string, std::string>>& annotations);

}  // namespace weir::cni
