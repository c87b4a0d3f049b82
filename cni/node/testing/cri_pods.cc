// weir-cri-pods: a test helper that starts, stops and removes pod sandboxes
// over the CRI, as kubelet would. One request per line on stdin, one JSON
// answer per line on stdout, so a test drives many pods through one process:
//   {"op": "run", "name": .., "namespace": .., "uid": .., "annotations": {..},
//    "hostNetwork": false, "cgroupParent": ".."}  -> {"id": ..}
//   {"op": "stop", "id": ..} / {"op": "remove", "id": ..}  -> {}
// Errors: {"error": ".."}.
#include <chrono>
#include <iostream>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "cri.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: weir-cri-pods unix:///path/to/cri.sock < requests\n";
    return 2;
  }
  auto stub = runtime::v1::RuntimeService::NewStub(grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  std::string line;
  while (std::getline(std::cin, line)) {
    nlohmann::json out = nlohmann::json::object();
    try {
      auto req = nlohmann::json::parse(line);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      grpc::Status st;
      const std::string op = req.value("op", "");
      if (op == "run") {
        runtime::v1::RunPodSandboxRequest r;
        auto* c = r.mutable_config();
        c->mutable_metadata()->set_name(req.value("name", ""));
        c->mutable_metadata()->set_namespace_(req.value("namespace", "default"));
        c->mutable_metadata()->set_uid(req.value("uid", req.value("name", "")));
        if (!req.value("hostNetwork", false)) c->set_hostname(req.value("name", ""));  // kubelet sets none with the node's UTS
        c->set_log_directory(req.value("logDirectory", ""));
        if (auto a = req.find("annotations"); a != req.end() && a->is_object()) {
          for (auto it = a->begin(); it != a->end(); ++it) (*c->mutable_annotations())[it.key()] = it.value().get<std::string>();
        }
        c->mutable_linux()->set_cgroup_parent(req.value("cgroupParent", ""));
        if (req.value("hostNetwork", false)) {
          c->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(runtime::v1::NODE);
        }
        runtime::v1::RunPodSandboxResponse resp;
        st = stub->RunPodSandbox(&ctx, r, &resp);
        if (st.ok()) out["id"] = resp.pod_sandbox_id();
      } else if (op == "stop") {
        runtime::v1::StopPodSandboxRequest r;
        r.set_pod_sandbox_id(req.value("id", ""));
        runtime::v1::StopPodSandboxResponse resp;
        st = stub->StopPodSandbox(&ctx, r, &resp);
      } else if (op == "remove") {
        runtime::v1::RemovePodSandboxRequest r;
        r.set_pod_sandbox_id(req.value("id", ""));
        runtime::v1::RemovePodSandboxResponse resp;
        st = stub->RemovePodSandbox(&ctx, r, &resp);
      } else {
        out["error"] = "unknown op " + op;
      }
      if (!st.ok()) out["error"] = st.error_message();
    } catch (const std::exception& e) {
      out["error"] = e.what();
    }
    std::cout << out.dump() << std::endl;
  }
  return 0;
}
