#include "selection.h"

#include <algorithm>

namespace weir::cni {

Result<Decision> decide(const SelectionPolicy& policy, const std::string& pod_namespace,
                        const std::optional<std::map<std::string, std::string>>& annotations) {
  const auto& ex = policy.exclude_namespaces;
  if (!pod_namespace.empty() && std::find(ex.begin(), ex.end(), pod_namespace) != ex.end()) {
    return Decision{false, "namespace " + pod_namespace + " is excluded"};
  }
  if (!annotations) {
    if (policy.capture_without_annotations) {
      return Decision{true, "runtime passed no annotations and captureWithoutAnnotations is true"};
    }
    return Decision{false, "runtime passed no annotations and captureWithoutAnnotations is false"};
  }
  auto get = [&](const char* key) -> std::optional<std::string> {
    auto it = annotations->find(key);
    if (it == annotations->end()) return std::nullopt;
    return it->second;
  };
  auto capture = get(kCaptureAnnotation);
  if (capture && *capture != "enabled" && *capture != "disabled") {
    return Error{ErrorKind::InvalidSpec, std::string("annotation ") + kCaptureAnnotation + ": \"" + *capture +
                                             "\" is neither \"enabled\" nor \"disabled\""};
  }
  if (capture == "disabled") return Decision{false, std::string("annotation ") + kCaptureAnnotation + "=disabled"};
  if (get(kIstioInjectAnnotation) == "false") {
    return Decision{false, std::string("annotation ") + kIstioInjectAnnotation + "=false"};
  }
  if (capture == "enabled") return Decision{true, std::string("annotation ") + kCaptureAnnotation + "=enabled"};
  if (get(kIstioStatusAnnotation)) return Decision{true, std::string("annotation ") + kIstioStatusAnnotation + " present"};
  return Decision{false, "no capture annotation"};
}

}  // namespace weir::cni
