#include "cni/node/cri_client.h"

#include <chrono>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "cri.grpc.pb.h"

namespace weir::node {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(5);

std::string target_of(const std::string& endpoint) {
  if (!endpoint.empty() && endpoint[0] == '/') return "unix://" + endpoint;
  return endpoint;
}

Error rpc_error(const std::string& what, const std::string& endpoint, const grpc::Status& s) {
  return Error{ErrorKind::Io, what + " on " + endpoint + ": " + s.error_message() + " (gRPC code " + std::to_string(s.error_code()) + ")", 0};
}

void set_deadline(grpc::ClientContext& ctx) { ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout); }

class CriRuntime : public Runtime {
 public:
  explicit CriRuntime(std::vector<std::string> endpoints) : endpoints_(std::move(endpoints)) {}

  Result<std::string> version() override {
    if (Status s = connect(); !s.ok()) return s.error();
    return version_;
  }

  Result<std::vector<PodSandbox>> ready_pod_sandboxes() override {
    if (Status s = connect(); !s.ok()) return s.error();
    runtime::v1::ListPodSandboxRequest req;
    req.mutable_filter()->mutable_state()->set_state(runtime::v1::SANDBOX_READY);
    runtime::v1::ListPodSandboxResponse resp;
    grpc::ClientContext ctx;
    set_deadline(ctx);
    grpc::Status st = stub_->ListPodSandbox(&ctx, req, &resp);
    if (!st.ok()) {
      Error e = rpc_error("ListPodSandbox", endpoint_, st);
      stub_.reset();  // ask the endpoints again next time
      return e;
    }
    std::vector<PodSandbox> out;
    for (const auto& item : resp.items()) {
      if (item.state() != runtime::v1::SANDBOX_READY) continue;
      PodSandbox p;
      p.id = item.id();
      p.name = item.metadata().name();
      p.ns = item.metadata().namespace_();
      p.uid = item.metadata().uid();
      for (const auto& [k, v] : item.annotations()) p.annotations[k] = v;
      runtime::v1::PodSandboxStatusRequest sreq;
      sreq.set_pod_sandbox_id(item.id());
      sreq.set_verbose(true);
      runtime::v1::PodSandboxStatusResponse sresp;
      grpc::ClientContext sctx;
      set_deadline(sctx);
      grpc::Status sst = stub_->PodSandboxStatus(&sctx, sreq, &sresp);
      if (!sst.ok()) {
        if (sst.error_code() == grpc::StatusCode::NOT_FOUND) continue;  // removed since the listing
        return rpc_error("PodSandboxStatus " + item.id(), endpoint_, sst);
      }
      if (sresp.status().state() != runtime::v1::SANDBOX_READY) continue;
      p.host_network = sresp.status().linux().namespaces().options().network() == runtime::v1::NODE;
      if (auto it = sresp.info().find("info"); it != sresp.info().end()) {
        if (auto path = netns_from_verbose_info(it->second)) p.netns_path = *path;
      }
      out.push_back(std::move(p));
    }
    return out;
  }

 private:
  Status connect() {
    if (stub_) return {};
    std::string problems;
    for (const auto& ep : endpoints_) {
      auto channel = grpc::CreateChannel(target_of(ep), grpc::InsecureChannelCredentials());
      auto stub = runtime::v1::RuntimeService::NewStub(channel);
      runtime::v1::VersionRequest req;
      req.set_version("v1");
      runtime::v1::VersionResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc::Status st = stub->Version(&ctx, req, &resp);
      if (!st.ok()) {
        problems += (problems.empty() ? "" : "; ") + ep + ": " + st.error_message();
        continue;
      }
      stub_ = std::move(stub);
      endpoint_ = ep;
      version_ = resp.runtime_name() + " " + resp.runtime_version();
      return {};
    }
    return Error{ErrorKind::Io, "no CRI runtime answers (" + problems + ")", 0};
  }

  std::vector<std::string> endpoints_;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> stub_;
  std::string endpoint_, version_;
};

}  // namespace

std::unique_ptr<Runtime> cri_runtime(std::vector<std::string> endpoints) { return std::make_unique<CriRuntime>(std::move(endpoints)); }

}  // namespace weir::node
