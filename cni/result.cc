#include "result.h"

#include "config.h"

namespace weir::cni {

nlohmann::json convert_result(const nlohmann::json& prev, const std::string& version) {
  nlohmann::json out = prev;
  out["cniVersion"] = version;
  const bool versioned_ips = compare_versions(version, "1.0.0") < 0;
  if (auto it = out.find("ips"); it != out.end() && it->is_array()) {
    for (auto& ip : *it) {
      if (!ip.is_object()) continue;
      if (!versioned_ips) {
        ip.erase("version");
      } else if (!ip.contains("version")) {
        const auto addr = ip.value("address", std::string());
        ip["version"] = addr.find(':') == std::string::npos ? "4" : "6";
      }
    }
  }
  return out;
}

nlohmann::json error_document(const std::string& version, const CniError& e) {
  // A runtime must be able to read the error, so never answer in a version
  // weir does not speak (e.g. when the config's version was the problem).
  nlohmann::json j{{"cniVersion", is_supported_version(version) ? version : supported_versions().back()},
                   {"code", e.code},
                   {"msg", e.msg}};
  if (!e.details.empty()) j["details"] = e.details;
  return j;
}

nlohmann::json version_document(const std::string& version) {
  return {{"cniVersion", version.empty() ? supported_versions().back() : version},
          {"supportedVersions", supported_versions()}};
}

}  // namespace weir::cni
