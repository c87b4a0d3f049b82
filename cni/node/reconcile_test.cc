#include "cni/node/reconcile.h"

#include <set>

#include <doctest/doctest.h>

#include "cni/node/agent.h"
#include "cni/node/cri_client.h"

using namespace weir;
using namespace weir::node;

namespace {

class FakeRuntime : public Runtime {
 public:
  std::vector<PodSandbox> pods;
  bool up = true;
  Result<std::string> version() override {
    if (!up) return Error{ErrorKind::Io, "connection refused", 0};
    return std::string("fake 1.0");
  }
  Result<std::vector<PodSandbox>> ready_pod_sandboxes() override {
    if (!up) return Error{ErrorKind::Io, "connection refused", 0};
    return pods;
  }
};

class FakeCapture : public PodCapture {
 public:
  std::map<std::string, State> states;  // by netns path; absent: gone
  std::map<std::string, CaptureSpec> applied;
  std::set<std::string> refuse;
  Result<State> check(const std::string& netns, const CaptureSpec&) override {
    auto it = states.find(netns);
    if (it == states.end()) return Error{ErrorKind::NetnsNotFound, netns + " does not exist", 0};
    return it->second;
  }
  Status apply(const std::string& netns, const CaptureSpec& spec) override {
    if (refuse.count(netns)) return Error{ErrorKind::Kernel, "commit nat: refused", 0};
    applied[netns] = spec;
    states[netns] = State::InPlace;
    return {};
  }
};

cni::PluginConfig entry() {
  auto c = cni::parse_config(R"({"cniVersion":"1.0.0","name":"n","type":"weir-cni","capture":{"outboundPort":15001}})");
  REQUIRE(c.ok());
  return c.value();
}

PodSandbox pod(const std::string& name, std::map<std::string, std::string> annotations, const std::string& ns = "default") {
  PodSandbox p;
  p.id = "id-" + name;
  p.name = name;
  p.ns = ns;
  p.annotations = std::move(annotations);
  p.netns_path = "/var/run/netns/cni-" + name;
  return p;
}

const std::map<std::string, std::string> kEnabled{{"weir.dev/capture", "enabled"}};

}  // namespace

TEST_CASE("reconcile: decides as weir-cni, repairs what should be captured and is not") {
  FakeRuntime rt;
  FakeCapture cap;
  rt.pods = {pod("early", kEnabled), pod("fine", kEnabled), pod("drifted", {{"sidecar.istio.io/status", "{}"}}),
             pod("plain", {}), pod("system", kEnabled, "kube-system"), pod("hostnet", kEnabled),
             pod("bad", {{"weir.dev/capture", "yes"}}), pod("vanished", kEnabled),
             pod("port", {{"weir.dev/capture", "enabled"}, {"weir.dev/outboundPort", "15011"}})};
  rt.pods[5].host_network = true;
  rt.pods[5].netns_path.clear();
  using S = PodCapture::State;
  cap.states = {{"/var/run/netns/cni-early", S::Missing}, {"/var/run/netns/cni-fine", S::InPlace},
                {"/var/run/netns/cni-drifted", S::Drifted}, {"/var/run/netns/cni-plain", S::Missing},
                {"/var/run/netns/cni-system", S::Missing}, {"/var/run/netns/cni-port", S::Missing}};
  std::vector<ReconcileEvent> events;
  auto r = reconcile_pass(rt, cap, entry(), RepairMode::Inplace, [&](const ReconcileEvent& e) { events.push_back(e); });
  REQUIRE(r.ok());
  CHECK(r->seen == 9);
  CHECK(r->repaired == 3);  // early, drifted, port
  CHECK(r->captured == 4);  // + fine
  CHECK(r->skipped == 3);   // plain, system, hostnet
  CHECK(r->failed == 1);    // bad annotation
  CHECK(r->gone == 1);      // vanished: not an error
  CHECK(cap.applied.count("/var/run/netns/cni-early"));
  CHECK_FALSE(cap.applied.count("/var/run/netns/cni-plain"));
  CHECK_FALSE(cap.applied.count("/var/run/netns/cni-system"));
  REQUIRE(cap.applied.count("/var/run/netns/cni-port"));
  CHECK(cap.applied["/var/run/netns/cni-port"].outbound_port == 15011);  // the pod's own override, as weir-cni applies it
  CHECK(cap.applied["/var/run/netns/cni-early"].outbound_port == 15001);  // the entry's capture
  // One line per pod changed or failed, none for the rest.
  CHECK(events.size() == 4);

  SUBCASE("the next pass changes nothing") {
    events.clear();
    auto again = reconcile_pass(rt, cap, entry(), RepairMode::Inplace, [&](const ReconcileEvent& e) { events.push_back(e); });
    REQUIRE(again.ok());
    CHECK(again->repaired == 0);
    CHECK(again->captured == 4);
    CHECK(events.size() == 1);  // the bad annotation, every pass
  }
}

TEST_CASE("reconcile: report counts and changes nothing; off does nothing") {
  FakeRuntime rt;
  FakeCapture cap;
  rt.pods = {pod("early", kEnabled)};
  cap.states = {{"/var/run/netns/cni-early", PodCapture::State::Missing}};
  auto r = reconcile_pass(rt, cap, entry(), RepairMode::Report, nullptr);
  REQUIRE(r.ok());
  CHECK(r->needs_repair == 1);
  CHECK(r->repaired == 0);
  CHECK(cap.applied.empty());
  auto off = reconcile_pass(rt, cap, entry(), RepairMode::Off, nullptr);
  REQUIRE(off.ok());
  CHECK(off->seen == 0);
}

TEST_CASE("reconcile: a runtime that is not up is an error of the pass; a failed repair is counted") {
  FakeRuntime rt;
  FakeCapture cap;
  rt.up = false;
  CHECK_FALSE(reconcile_pass(rt, cap, entry(), RepairMode::Inplace, nullptr).ok());
  rt.up = true;
  rt.pods = {pod("stuck", kEnabled)};
  cap.states = {{"/var/run/netns/cni-stuck", PodCapture::State::Missing}};
  cap.refuse = {"/var/run/netns/cni-stuck"};
  auto r = reconcile_pass(rt, cap, entry(), RepairMode::Inplace, nullptr);
  REQUIRE(r.ok());
  CHECK(r->failed == 1);
}

TEST_CASE("parse_repair_mode") {
  CHECK(parse_repair_mode("inplace").value() == RepairMode::Inplace);
  CHECK(parse_repair_mode("report").value() == RepairMode::Report);
  CHECK(parse_repair_mode("off").value() == RepairMode::Off);
  CHECK_FALSE(parse_repair_mode("delete").ok());
}

TEST_CASE("netns_from_verbose_info reads containerd's runtimeSpec") {
  CHECK(netns_from_verbose_info(R"({"pid":1,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}})") ==
        std::optional<std::string>("/var/run/netns/cni-1"));
  CHECK_FALSE(netns_from_verbose_info(R"({"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"}]}}})"));  // host network
  CHECK_FALSE(netns_from_verbose_info("not json"));
  CHECK_FALSE(netns_from_verbose_info("{}"));
}

TEST_CASE("prometheus_text") {
  AgentMetrics m;
  m.ready = true;
  m.config_repairs = 3;
  m.last.seen = 5;
  m.last.duration_ms = 12.5;
  const std::string t = prometheus_text(m);
  CHECK(t.find("# TYPE weir_node_ready gauge\nweir_node_ready 1\n") != std::string::npos);
  CHECK(t.find("weir_node_config_repairs_total 3\n") != std::string::npos);
  CHECK(t.find("weir_node_pods{state=\"seen\"} 5\n") != std::string::npos);
  CHECK(t.find("weir_node_reconcile_duration_seconds 0.0125\n") != std::string::npos);
}
