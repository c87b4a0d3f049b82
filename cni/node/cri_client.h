// The Runtime of reconcile.h over the CRI (gRPC, runtime.v1.RuntimeService).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cni/node/reconcile.h"

namespace weir::node {

// Tries `endpoints` in order ("unix:///run/containerd/containerd.sock", or a
// plain socket path) on each call until one answers Version; keeps it while it
// answers. A runtime that is not up is an error of the call, not of this.
std::unique_ptr<Runtime> cri_runtime(std::vector<std::string> endpoints);

// From PodSandboxStatus's verbose info["info"] (containerd, CRI-O): the path
// of the "network" entry of runtimeSpec.linux.namespaces; nullopt when there
// is none (host network) or the document is not one. Pure, unit-tested.
std::optional<std::string> netns_from_verbose_info(const std::string& info_json);

}  // namespace weir::node
