#include "cni/result_document.h"

#include "cni/config.h"

namespace weir::cni {

namespace {

CniError malformed(const std::string& field, const std::string& problem) {
  return CniError{code::kInvalidConfig, "prevResult" + field + ": " + problem,
                  "the result of the plugins before weir-cni in the chain is malformed; nothing was changed"};
}

// Everything convert_result() reads or rewrites, checked first.
std::optional<CniError> validate_result(const nlohmann::json& prev) {
  if (!prev.is_object()) return malformed("", std::string("expected an object, got ") + prev.type_name());
  if (auto v = prev.find("cniVersion"); v != prev.end()) {
    if (!v->is_string()) return malformed(".cniVersion", std::string("expected a string, got ") + v->type_name());
    const std::string text = v->get<std::string>();
    if (!text.empty() && compare_versions(text, "0.3.0") < 0) {
      return malformed(".cniVersion", "\"" + text + "\" results (ip4/ip6) cannot be passed on; weir reads results of 0.3.0 and later");
    }
  }
  for (const char* old_key : {"ip4", "ip6"}) {
    if (prev.contains(old_key)) {
      return malformed(std::string(".") + old_key, "a result of CNI 0.2.0 and before (ip4/ip6 instead of ips) cannot be passed on; "
                                                   "weir reads results of 0.3.0 and later");
    }
  }
  auto ips = prev.find("ips");
  if (ips == prev.end() || ips->is_null()) return std::nullopt;
  if (!ips->is_array()) return malformed(".ips", std::string("expected an array, got ") + ips->type_name());
  for (size_t i = 0; i < ips->size(); ++i) {
    const nlohmann::json& ip = (*ips)[i];
    const std::string where = ".ips[" + std::to_string(i) + "]";
    if (!ip.is_object()) return malformed(where, std::string("expected an object, got ") + ip.type_name());
    auto addr = ip.find("address");
    if (addr == ip.end()) return malformed(where + ".address", "missing");
    if (!addr->is_string()) return malformed(where + ".address", std::string("expected a string, got ") + addr->type_name());
  }
  return std::nullopt;
}

}  // namespace

CniResult<nlohmann::json> convert_result(const nlohmann::json& prev, const std::string& version) {
  if (auto e = validate_result(prev)) return *e;
  nlohmann::json out = prev;
  out["cniVersion"] = version;
  const bool versioned_ips = compare_versions(version, "1.0.0") < 0;
  if (auto it = out.find("ips"); it != out.end() && it->is_array()) {
    for (auto& ip : *it) {
      if (!versioned_ips) {
        ip.erase("version");
      } else if (!ip.contains("version")) {
        const std::string& addr = ip["address"].get_ref<const std::string&>();
        ip["version"] = addr.find(':') == std::string::npos ? "4" : "6";
      }
    }
  }
  return out;
}

nlohmann::json error_document(const std::string& version, const CniError& e) {
  // A runtime must be able to read the answer, so never answer in a version
  // weir does not speak (e.g. when the config's version was the problem).
  if (is_supported_version(version)) {
    // details is always there, empty or not: the spec lists all four keys.
    return {{"cniVersion", version}, {"code", e.code}, {"msg", e.msg}, {"details", e.details}};
  }
  const std::string newest = supported_versions().back();
  const std::string why = version.empty() ? "the config's cniVersion could not be read"
                                          : "the config's cniVersion " + version + " is not one weir speaks";
  std::string details = e.details;
  details += (details.empty() ? "" : "; ") + std::string("answered in cniVersion ") + newest + ", the newest weir speaks: " + why;
  return {{"cniVersion", newest}, {"code", e.code}, {"msg", e.msg}, {"details", details}};
}

nlohmann::json version_document(const std::string& version) {
  return {{"cniVersion", is_supported_version(version) ? version : supported_versions().back()},
          {"supportedVersions", supported_versions()}};
}

}  // namespace weir::cni
