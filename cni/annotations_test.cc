#include "cni/annotations.h"

#include <doctest/doctest.h>

#include "rules/spec_fields.h"
#include "rules/spec_fields_samples.h"

using namespace weir;
using namespace weir::cni;
using Annotations = std::map<std::string, std::string>;

namespace {
CaptureSpec with(const Annotations& a, CaptureSpec spec = {}, std::vector<std::string>* warnings = nullptr) {
  std::vector<std::string> w;
  Status s = apply_annotations(spec, a, w);
  if (!s.ok()) FAIL(s.error().message);
  if (warnings) *warnings = w;
  return spec;
}
std::string error_of(const Annotations& a, CaptureSpec spec = {}) {
  std::vector<std::string> warnings;
  Status s = apply_annotations(spec, a, warnings);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::InvalidSpec);
  return s.error().message;
}
std::vector<PortRange> ports(std::initializer_list<uint16_t> ps) {
  std::vector<PortRange> out;
  for (auto p : ps) out.push_back({p, p});
  return out;
}
Cidr cidr(const char* text) { return parse_cidr(text).value(); }
}  // namespace

TEST_CASE("no annotations leave the spec as configured") {
  CHECK(with({}) == CaptureSpec{});
  CHECK(with({{"weir.dev/capture", "enabled"}, {"unrelated/x", "y"}}) == CaptureSpec{});
}

TEST_CASE("weir.dev/<jsonKey> replaces the field") {
  auto s = with({{"weir.dev/outboundPort", "16001"}, {"weir.dev/excludeOutboundPorts", "5432,8000-8100"},
                 {"weir.dev/inboundPorts", "8080"}, {"weir.dev/outboundCidrs", "198.18.0.0/15"},
                 {"weir.dev/proxyUids", "1000,1001"}, {"weir.dev/ipFamilies", "ipv4"},
                 {"weir.dev/excludeInterfaces", "eth1"}, {"weir.dev/dropInvalid", "true"},
                 {"weir.dev/dns", R"({"capture":true})"}, {"weir.dev/inboundTunnelPort", "0"}});
  CHECK(s.outbound_port == 16001);
  CHECK(s.exclude_outbound_ports == std::vector<PortRange>{{5432, 5432}, {8000, 8100}});
  REQUIRE(s.inbound_ports);
  CHECK(*s.inbound_ports == ports({8080}));
  REQUIRE(s.outbound_cidrs);
  CHECK(*s.outbound_cidrs == std::vector<Cidr>{cidr("198.18.0.0/15")});
  CHECK(s.proxy_uids == std::vector<uint32_t>{1000, 1001});
  CHECK(s.proxy_gids == std::vector<uint32_t>{1000, 1001});  // follow the UIDs
  CHECK(s.ip_families == IpFamilies::V4);
  CHECK(s.exclude_interfaces == std::vector<std::string>{"eth1"});
  CHECK(s.drop_invalid);
  CHECK(s.dns.capture);
  CHECK(s.inbound_tunnel_port == 0);
  auto g = with({{"weir.dev/proxyUids", "1000"}, {"weir.dev/proxyGids", "2000"}});
  CHECK(g.proxy_gids == std::vector<uint32_t>{2000});

  // GIDs the config set itself stay, even when they equal its UIDs.
  CaptureSpec configured;
  configured.proxy_uids = configured.proxy_gids = {1337};
  std::vector<std::string> warnings;
  REQUIRE(apply_annotations(configured, {{"weir.dev/proxyUids", "1500"}}, warnings, /*gids_explicit=*/true).ok());
  CHECK(configured.proxy_uids == std::vector<uint32_t>{1500});
  CHECK(configured.proxy_gids == std::vector<uint32_t>{1337});
}

TEST_CASE("Istio's annotations with Istio's meanings") {
  const std::string p = "traffic.sidecar.istio.io/";
  CHECK_FALSE(with({{p + "includeOutboundIPRanges", "*"}}).outbound_cidrs);
  CHECK(with({{p + "includeOutboundIPRanges", ""}}).outbound_cidrs == std::vector<Cidr>{});
  CHECK(with({{p + "includeOutboundIPRanges", "198.18.0.0/24, fd00::/8"}}).outbound_cidrs ==
        std::vector<Cidr>{cidr("198.18.0.0/24"), cidr("fd00::/8")});
  CHECK_FALSE(with({{p + "includeInboundPorts", "*"}}).inbound_ports);
  CHECK(with({{p + "includeInboundPorts", ""}}).inbound_ports == std::vector<PortRange>{});
  CHECK(with({{p + "includeInboundPorts", "80,443"}}).inbound_ports == ports({80, 443}));

  // Exclude lists add to the configured ones.
  CaptureSpec configured;
  configured.exclude_outbound_ports = ports({5432});
  configured.exclude_outbound_cidrs = {cidr("198.19.0.0/16")};
  auto s = with({{p + "excludeOutboundPorts", "6379"}, {p + "excludeOutboundIPRanges", "198.18.5.0/24"},
                 {p + "excludeInboundPorts", "9000"}, {p + "excludeInterfaces", "eth9"}},
                configured);
  CHECK(s.exclude_outbound_ports == ports({5432, 6379}));
  CHECK(s.exclude_outbound_cidrs == std::vector<Cidr>{cidr("198.19.0.0/16"), cidr("198.18.5.0/24")});
  CHECK(s.exclude_inbound_ports == ports({15020, 15021, 15090, 9000}));
  CHECK(s.exclude_interfaces == std::vector<std::string>{"eth9"});

  // includeOutboundPorts: nothing to add when all addresses are captured;
  // "only these ports" when no address range is.
  CHECK(with({{p + "includeOutboundPorts", "80"}}) == CaptureSpec{});
  auto only = with({{p + "includeOutboundIPRanges", ""}, {p + "includeOutboundPorts", "80,8080"}});
  CHECK_FALSE(only.outbound_cidrs);
  CHECK(only.outbound_ports == ports({80, 8080}));
  auto mixed = error_of({{p + "includeOutboundIPRanges", "198.18.0.0/24"}, {p + "includeOutboundPorts", "80"}});
  CHECK(mixed.find("includeOutboundPorts") != std::string::npos);
}

TEST_CASE("Istio's kubevirtInterfaces: the VM's TCP is redirected whatever the excludes, as istio-iptables -k") {
  const std::string p = "traffic.sidecar.istio.io/";
  CHECK(CaptureSpec{}.kube_virt_excludes == KubeVirtExcludes::Apply);
  auto s = with({{p + "kubevirtInterfaces", "vif0"}, {p + "excludeOutboundIPRanges", "198.18.5.0/24"}});
  CHECK(s.kube_virt_interfaces == std::vector<std::string>{"vif0"});
  CHECK(s.kube_virt_excludes == KubeVirtExcludes::Ignore);
  // The pod's own weir.dev/kubeVirtExcludes wins over Istio's meaning.
  auto kept = with({{p + "kubevirtInterfaces", "vif0"}, {"weir.dev/kubeVirtExcludes", "apply"}});
  CHECK(kept.kube_virt_excludes == KubeVirtExcludes::Apply);
  // weir.dev/kubeVirtInterfaces alone keeps the configured choice.
  CHECK(with({{"weir.dev/kubeVirtInterfaces", "vif0"}}).kube_virt_excludes == KubeVirtExcludes::Apply);
}

TEST_CASE("malformed annotations name the annotation") {
  const std::string p = "traffic.sidecar.istio.io/";
  CHECK(error_of({{p + "excludeOutboundPorts", "70000"}}).find(p + "excludeOutboundPorts") != std::string::npos);
  CHECK(error_of({{p + "excludeInboundPorts", "abc"}}).find(p + "excludeInboundPorts") != std::string::npos);
  CHECK(error_of({{p + "includeOutboundIPRanges", "198.18.0.0/40"}}).find(p + "includeOutboundIPRanges") != std::string::npos);
  CHECK(error_of({{p + "excludeOutboundIPRanges", "not-a-cidr"}}).find(p + "excludeOutboundIPRanges") != std::string::npos);
  CHECK(error_of({{p + "excludeInterfaces", "a-very-long-interface-name"}}).find(p + "excludeInterfaces") != std::string::npos);
  CHECK(error_of({{"weir.dev/outboundPort", "0"}}).find("weir.dev/outboundPort") != std::string::npos);
  CHECK(error_of({{"weir.dev/outbondPort", "1"}}).find("weir.dev/outbondPort") != std::string::npos);
  CHECK(error_of({{"weir.dev/dropInvalid", "yes"}}).find("weir.dev/dropInvalid") != std::string::npos);
  CHECK(error_of({{"weir.dev/dns", "{"}}).find("weir.dev/dns") != std::string::npos);
  CHECK(error_of({{"weir.dev/ipFamilies", "ipv5"}}).find("weir.dev/ipFamilies") != std::string::npos);
  // Valid one by one, invalid together: the whole spec is validated.
  CHECK(error_of({{"weir.dev/outboundPort", "15006"}}).find("annotations") != std::string::npos);
}

TEST_CASE("Istio's CIDR annotations accept host bits as Istio does, with a warning") {
  const std::string p = "traffic.sidecar.istio.io/";
  std::vector<std::string> warnings;
  auto s = with({{p + "includeOutboundIPRanges", "10.0.0.1/8, 198.18.0.0/24,fd00::1/8"}}, {}, &warnings);
  CHECK(s.outbound_cidrs == std::vector<Cidr>{cidr("10.0.0.0/8"), cidr("198.18.0.0/24"), cidr("fd00::/8")});
  REQUIRE(warnings.size() == 2);
  CHECK(warnings[0].find(p + "includeOutboundIPRanges") != std::string::npos);
  CHECK(warnings[0].find("10.0.0.1/8") != std::string::npos);
  CHECK(warnings[0].find("10.0.0.0/8") != std::string::npos);
  CHECK(warnings[1].find("fd00::/8") != std::string::npos);

  auto e = with({{p + "excludeOutboundIPRanges", "198.18.0.11/31,169.254.169.254"}}, {}, &warnings);
  CHECK(e.exclude_outbound_cidrs == std::vector<Cidr>{cidr("198.18.0.10/31"), cidr("169.254.169.254/32")});
  CHECK(warnings.size() == 1);
  auto odd = with({{p + "excludeOutboundIPRanges", "198.18.7.255/21"}, {p + "includeOutboundIPRanges", "*"}}, {}, &warnings);
  CHECK(odd.exclude_outbound_cidrs == std::vector<Cidr>{cidr("198.18.0.0/21")});
  CHECK_FALSE(odd.outbound_cidrs);

  // No host bits: no warning. Still errors: a bad prefix, not an address.
  with({{p + "excludeOutboundIPRanges", "198.18.0.0/15"}}, {}, &warnings);
  CHECK(warnings.empty());
  CHECK(error_of({{p + "excludeOutboundIPRanges", "198.18.0.1/33"}}).find("/33") != std::string::npos);
  CHECK(error_of({{p + "includeOutboundIPRanges", "nope/8"}}).find("nope") != std::string::npos);
  // weir's own annotations stay strict.
  CHECK(error_of({{"weir.dev/excludeOutboundCidrs", "10.0.0.1/8"}}).find("host bits") != std::string::npos);
}

TEST_CASE("every field: weir.dev/<key> gives what its text gives everywhere, or the same error") {
  for (const auto& sample : weir::testing::field_samples()) {
    CAPTURE(sample.key);
    const SpecField* f = find_spec_field(sample.key);
    REQUIRE(f != nullptr);
    const std::string name = field_annotation(*f);
    for (const std::string& text : sample.texts) {
      CAPTURE(text);
      CHECK(f->get_json(with({{name, text}})) == sample.value);
    }
    const std::string message = error_of({{name, sample.bad}});
    const std::string what = "annotation " + name + ": ";
    REQUIRE(message.rfind(what, 0) == 0);
    CHECK(message.substr(what.size()) == sample.error);
  }
  // The DNS object as one annotation still works beside weir.dev/dns.<key>.
  auto s = with({{"weir.dev/dns", R"({"capture": true, "port": 5353})"}, {"weir.dev/dns.captureAll", "false"}});
  CHECK(s.dns.capture);
  CHECK(s.dns.port == 5353);
  CHECK_FALSE(s.dns.capture_all);
}

TEST_CASE("weir.dev/tproxyMark takes hex, as --tproxy-mark does; weir.dev/backend") {
  CHECK(with({{"weir.dev/tproxyMark", "0x539"}}).tproxy_mark == 0x539);
  CHECK(with({{"weir.dev/backend", "iptables"}}).backend == FilterBackend::Iptables);
  CHECK(error_of({{"weir.dev/backend", "bogus"}}).find("annotation weir.dev/backend") == 0);
}

TEST_CASE("long Istio and weir.dev lists: errors stay short, host-bit warnings are capped") {
  const std::string p = "traffic.sidecar.istio.io/";
  std::string cidrs;
  for (int i = 0; i < 10000; ++i) cidrs += (i ? "," : "") + std::string("198.18.") + std::to_string(i / 250) + "." + std::to_string(i % 250);
  const std::string msg = error_of({{p + "excludeOutboundIPRanges", cidrs + ",nope"}});
  CHECK(msg.size() < 200);
  CHECK(msg.find("item 10001 of 10001") != std::string::npos);
  CHECK(msg.find("nope") != std::string::npos);
  CHECK(error_of({{"weir.dev/excludeOutboundCidrs", cidrs + ",nope"}}).size() < 200);

  std::string host_bits;
  for (int i = 0; i < 1000; ++i) host_bits += (i ? "," : "") + std::string("10.") + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".1/24";
  std::vector<std::string> warnings;
  auto s = with({{p + "excludeOutboundIPRanges", host_bits}}, {}, &warnings);
  CHECK(s.exclude_outbound_cidrs.size() == 1000);
  REQUIRE(warnings.size() == 6);
  CHECK(warnings.back().find("995 more") != std::string::npos);
}

TEST_CASE("Istio's exclude lists add without repeats, in order") {
  const std::string p = "traffic.sidecar.istio.io/";
  CaptureSpec configured;
  configured.exclude_outbound_cidrs = {cidr("198.18.0.0/24")};
  auto s = with({{p + "excludeOutboundIPRanges", "198.18.1.0/24,198.18.0.0/24,198.18.1.0/24"}}, configured);
  CHECK(s.exclude_outbound_cidrs == std::vector<Cidr>{cidr("198.18.0.0/24"), cidr("198.18.1.0/24")});
}
