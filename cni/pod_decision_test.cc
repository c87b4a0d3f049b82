#include "cni/pod_decision.h"

#include <doctest/doctest.h>

using namespace weir;
using namespace weir::cni;
using Annotations = std::map<std::string, std::string>;

namespace {
PluginConfig config(const std::string& extra = "") {
  auto c = parse_config(R"({"cniVersion":"1.0.0","name":"k8s","type":"weir-cni")" + extra + "}");
  REQUIRE(c.ok());
  return std::move(c).value();
}
}  // namespace

TEST_CASE("decide_pod: skipped pods carry the reason and no spec") {
  std::vector<std::string> warnings;
  auto d = decide_pod(config(), "kube-system", Annotations{{"weir.dev/capture", "enabled"}}, warnings);
  REQUIRE(d.ok());
  CHECK_FALSE(d.value().captured());
  CHECK(d.value().reason.find("kube-system") != std::string::npos);

  auto none = decide_pod(config(), "shop", std::nullopt, warnings);
  REQUIRE(none.ok());
  CHECK_FALSE(none.value().captured());
  auto without = decide_pod(config(R"(,"captureWithoutAnnotations":true)"), "shop", std::nullopt, warnings);
  REQUIRE(without.ok());
  REQUIRE(without.value().captured());
  CHECK(*without.value().spec == CaptureSpec{});  // no annotations: the configured spec
  CHECK(warnings.empty());
}

TEST_CASE("decide_pod: a captured pod gets the configured spec with its overrides") {
  std::vector<std::string> warnings;
  auto c = config(R"(,"capture":{"excludeOutboundPorts":[5432],"proxyGids":[7]},"excludeNamespaces":["infra"])");
  auto d = decide_pod(c, "shop",
                      Annotations{{"sidecar.istio.io/status", "{}"}, {"weir.dev/outboundPort", "16001"},
                                  {"weir.dev/proxyUids", "1000"},
                                  {"traffic.sidecar.istio.io/excludeOutboundPorts", "6379"}},
                      warnings);
  REQUIRE(d.ok());
  REQUIRE(d.value().captured());
  const CaptureSpec& s = *d.value().spec;
  CHECK(s.outbound_port == 16001);
  CHECK(s.exclude_outbound_ports == std::vector<PortRange>{{5432, 5432}, {6379, 6379}});
  CHECK(s.proxy_uids == std::vector<uint32_t>{1000});
  CHECK(s.proxy_gids == std::vector<uint32_t>{7});  // the config set them: they do not follow the UIDs
  CHECK_FALSE(d.value().reason.empty());
  // kube-system is no longer excluded once the key is set.
  auto ks = decide_pod(c, "kube-system", Annotations{{"weir.dev/capture", "enabled"}}, warnings);
  REQUIRE(ks.ok());
  CHECK(ks.value().captured());
}

TEST_CASE("decide_pod: reads the annotations passed, not the config's own") {
  auto c = parse_config(R"({"cniVersion":"1.0.0","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"weir.dev/capture":"enabled"}}})");
  REQUIRE(c.ok());
  std::vector<std::string> warnings;
  auto d = decide_pod(c.value(), "shop", Annotations{}, warnings);
  REQUIRE(d.ok());
  CHECK_FALSE(d.value().captured());
  auto same = decide_pod(c.value(), "shop", c.value().annotations, warnings);
  REQUIRE(same.ok());
  CHECK(same.value().captured());
}

TEST_CASE("decide_pod: bad annotations are code 7 naming the annotation; warnings are kept") {
  std::vector<std::string> warnings;
  auto bad_capture = decide_pod(config(), "shop", Annotations{{"weir.dev/capture", "yes"}}, warnings);
  REQUIRE_FALSE(bad_capture.ok());
  CHECK(bad_capture.error().code == code::kInvalidConfig);
  CHECK(bad_capture.error().msg.find("weir.dev/capture") != std::string::npos);

  auto bad_port = decide_pod(config(), "shop",
                             Annotations{{"weir.dev/capture", "enabled"}, {"weir.dev/excludeOutboundPorts", "70000"},
                                         {"sidecar.istio.io/inject", "maybe"}},
                             warnings);
  REQUIRE_FALSE(bad_port.ok());
  CHECK(bad_port.error().code == code::kInvalidConfig);
  CHECK(bad_port.error().msg.find("weir.dev/excludeOutboundPorts") != std::string::npos);
  CHECK(bad_port.error().details.find("not captured") != std::string::npos);
  REQUIRE(warnings.size() == 1);  // the unreadable inject value, logged even though the pod fails
  CHECK(warnings[0].find("sidecar.istio.io/inject") != std::string::npos);

  // A same-port spec is refused as a whole, after the overrides.
  warnings.clear();
  auto same_port = decide_pod(config(), "shop",
                              Annotations{{"weir.dev/capture", "enabled"}, {"weir.dev/outboundPort", "15006"}}, warnings);
  REQUIRE_FALSE(same_port.ok());
  CHECK(same_port.error().code == code::kInvalidConfig);
}

TEST_CASE("decide_pod: Istio CIDRs with host bits are masked, with a warning") {
  std::vector<std::string> warnings;
  auto d = decide_pod(config(), "shop",
                      Annotations{{"weir.dev/capture", "enabled"},
                                  {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.1/8"}},
                      warnings);
  REQUIRE(d.ok());
  REQUIRE(d.value().captured());
  CHECK(d.value().spec->exclude_outbound_cidrs == std::vector<Cidr>{parse_cidr("10.0.0.0/8").value()});
  CHECK(warnings.size() == 1);
}
