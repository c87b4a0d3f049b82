#include "cni/node/installer.h"

#include <doctest/doctest.h>

using namespace weir;
using namespace weir::node;
using ojson = nlohmann::ordered_json;

TEST_CASE("weir_entry: the default entry") {
  NodeOptions o;
  o.state_dir = "/run/weir-test";
  auto e = weir_entry(o);
  REQUIRE(e.ok());
  CHECK(e.value()["type"] == "weir-cni");
  CHECK(e.value()["capabilities"]["io.kubernetes.cri.pod-annotations"] == true);
  CHECK(e.value()["agentReadiness"]["file"] == "/run/weir-test/node-ready");
  CHECK(readiness_file(o) == "/run/weir-test/node-ready");
}

TEST_CASE("weir_entry: --plugin-config keys kept in order, the capability added, the list's keys dropped") {
  NodeOptions o;
  o.plugin_config = ojson::parse(R"({"excludeNamespaces": ["kube-system", "mesh"], "capture": {"outboundPort": 15011},
                                     "name": "ignored", "cniVersion": "9.9.9", "capabilities": {"portMappings": true}})");
  auto e = weir_entry(o);
  REQUIRE(e.ok());
  CHECK(e.value()["excludeNamespaces"] == ojson::parse(R"(["kube-system", "mesh"])"));
  CHECK(e.value()["capture"]["outboundPort"] == 15011);
  CHECK_FALSE(e.value().contains("name"));
  CHECK_FALSE(e.value().contains("cniVersion"));
  CHECK(e.value()["capabilities"]["portMappings"] == true);
  CHECK(e.value()["capabilities"]["io.kubernetes.cri.pod-annotations"] == true);
}

TEST_CASE("weir_entry: refuses what weir-cni would refuse, before anything is written") {
  NodeOptions o;
  o.plugin_config = ojson::parse(R"({"capture": {"outbondPort": 1}})");
  auto e = weir_entry(o);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message.find("outbondPort") != std::string::npos);
  o.plugin_config = ojson::parse(R"({"type": "bridge"})");
  CHECK_FALSE(weir_entry(o).ok());
  o.plugin_config = ojson::parse("[1]");
  CHECK_FALSE(weir_entry(o).ok());
}
