#include "cni/selection.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "cni/bounded_json.h"

namespace weir::cni {

namespace {

// Whether Istio's injector added its own capture init container. The status
// annotation is Istio's JSON ({"initContainers": [...], "containers": [...]});
// text weir cannot read lists no init container, so the pod stays captured.
bool lists_istio_init(const std::string& status, std::vector<std::string>& warnings) {
  auto parsed = parse_bounded_json(status);
  if (!parsed.ok()) {
    warnings.push_back(std::string("annotation ") + kIstioStatusAnnotation + " is not valid JSON; its init containers are unknown");
    return false;
  }
  const nlohmann::json& j = parsed->value;
  if (!j.is_object()) return false;
  auto it = j.find("initContainers");
  if (it == j.end() || !it->is_array()) return false;
  return std::any_of(it->begin(), it->end(), [](const nlohmann::json& c) { return c.is_string() && c == kIstioInitContainer; });
}

}  // namespace

std::optional<bool> parse_go_bool(const std::string& text) {
  static const char* kTrue[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char* kFalse[] = {"0", "f", "F", "FALSE", "false", "False"};
  auto is = [&](const auto& spellings) {
    return std::any_of(std::begin(spellings), std::end(spellings), [&](const char* s) { return text == s; });
  };
  if (is(kTrue)) return true;
  if (is(kFalse)) return false;
  return std::nullopt;
}

Result<Decision> decide(const SelectionPolicy& policy, const std::string& pod_namespace,
                        const std::optional<std::map<std::string, std::string>>& annotations) {
  const auto& ex = policy.exclude_namespaces;
  if (!pod_namespace.empty() && std::find(ex.begin(), ex.end(), pod_namespace) != ex.end()) {
    return Decision{false, "namespace " + pod_namespace + " is excluded", {}};
  }
  if (!annotations) {
    if (policy.capture_without_annotations) {
      return Decision{true, "runtime passed no annotations and captureWithoutAnnotations is true", {}};
    }
    return Decision{false, "runtime passed no annotations and captureWithoutAnnotations is false", {}};
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
  Decision d;
  if (capture == "disabled") {
    d.reason = std::string("annotation ") + kCaptureAnnotation + "=disabled";
    return d;
  }
  if (auto inject = get(kIstioInjectAnnotation)) {
    auto value = parse_go_bool(*inject);
    if (value == false) {
      d.reason = std::string("annotation ") + kIstioInjectAnnotation + "=" + *inject;
      return d;
    }
    if (!value) {
      d.warnings.push_back(std::string("annotation ") + kIstioInjectAnnotation + ": \"" + *inject +
                           "\" is not a boolean; ignored, as Istio ignores it");
    }
  }
  // weir's own "enabled" is the user's explicit word; the rest is inferred
  // from Istio's injection, which weir leaves to Istio's init container when
  // the injector added one.
  if (capture == "enabled") {
    d.capture = true;
    d.reason = std::string("annotation ") + kCaptureAnnotation + "=enabled";
    return d;
  }
  auto status = get(kIstioStatusAnnotation);
  if (status && lists_istio_init(*status, d.warnings)) {
    d.reason = std::string("annotation ") + kIstioStatusAnnotation + " lists the " + kIstioInitContainer +
               " init container, which installs Istio's own capture";
    return d;
  }
  d.capture = status.has_value();
  d.reason = status ? std::string("annotation ") + kIstioStatusAnnotation + " present" : "no capture annotation";
  return d;
}

}  // namespace weir::cni
