// The pure part of the CRI client, apart so that its test needs no gRPC.
#include <nlohmann/json.hpp>

#include "cni/node/cri_client.h"

namespace weir::node {

std::optional<std::string> netns_from_verbose_info(const std::string& info_json) {
  try {
    auto doc = nlohmann::json::parse(info_json);
    const auto& ns = doc.at("runtimeSpec").at("linux").at("namespaces");
    for (const auto& n : ns) {
      if (n.value("type", "") == "network") {
        std::string path = n.value("path", "");
        if (path.empty()) return std::nullopt;  // a new namespace without a path: not one we can enter
        return path;
      }
    }
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

}  // namespace weir::node
