#include "cni/result.h"

#include "cni/config.h"

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

namespace {

// A runtime must be able to read the answer, so never answer in a version weir
// does not speak (e.g. when the config's version was the problem).
std::string answer_version(const std::string& version) {
  return is_supported_version(version) ? version : supported_versions().back();
}

}  // namespace

nlohmann::json error_document(const std::string& version, const CniError& e) {
  // details is always there, empty or not: the spec lists all four keys.
  return {{"cniVersion", answer_version(version)}, {"code", e.code}, {"msg", e.msg}, {"details", e.details}};
}

nlohmann::json version_document(const std::string& version) {
  return {{"cniVersion", answer_version(version)}, {"supportedVersions", supported_versions()}};
}

}  // namespace weir::cni
