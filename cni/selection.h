// Which pods weir captures: a pure decision from the plugin config, the pod's
// namespace and its annotations. Tested without root.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rules/error.h"

namespace weir::cni {

inline constexpr const char* kCaptureAnnotation = "weir.dev/capture";           // "enabled" | "disabled"
inline constexpr const char* kIstioStatusAnnotation = "sidecar.istio.io/status";  // set by Istio's injector
inline constexpr const char* kIstioInjectAnnotation = "sidecar.istio.io/inject";  // false (Go's ParseBool) opts out
// The init container with which Istio installs the capture itself, when the
// mesh runs without a CNI plugin; its name in sidecar.istio.io/status.
inline constexpr const char* kIstioInitContainer = "istio-init";

struct SelectionPolicy {
  std::vector<std::string> exclude_namespaces;
  bool capture_without_annotations = false;
};

struct Decision {
  bool capture = false;
  std::string reason;  // for the log line, e.g. "annotation weir.dev/capture=enabled"
  std::vector<std::string> warnings;  // annotations read differently than they may look
};

// In order: an excluded namespace skips; no annotations from the runtime
// follows capture_without_annotations; weir.dev/capture=disabled or
// sidecar.istio.io/inject false skips; sidecar.istio.io/status listing
// istio-init among its initContainers skips (Istio's init container does the
// capture, and Istio's own CNI plugin skips such pods too); weir.dev/capture=enabled
// or the presence of sidecar.istio.io/status captures; anything else skips.
// sidecar.istio.io/inject is read as Istio reads it, with Go's strconv.ParseBool
// ("0", "f", "F", "false", "FALSE", "False" are false); a value that is not a
// boolean is ignored with a warning, as Istio ignores it. InvalidSpec when
// weir.dev/capture is neither "enabled" nor "disabled".
Result<Decision> decide(const SelectionPolicy& policy, const std::string& pod_namespace,
                        const std::optional<std::map<std::string, std::string>>& annotations);

// Go's strconv.ParseBool: nullopt for anything but its twelve spellings.
std::optional<bool> parse_go_bool(const std::string& text);

}  // namespace weir::cni
