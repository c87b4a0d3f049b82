// Plans are checked by what they do: each flow is walked through the planned
// rules with explain() and its verdict asserted. Structural properties (one
// jump per built-in chain, every jump target exists, multiport sizes) are
// checked for every spec here too.
#include "rules/plan.h"

#include <doctest/doctest.h>

#include <set>

#include "rules/explain.h"
#include "rules/xtables/lower.h"

namespace weir {
namespace {

Cidr addr(const std::string& s) {
  auto c = parse_cidr(s);
  REQUIRE_MESSAGE(c.ok(), s);
  return *c;
}

Family family_of(const std::string& a) { return a.find(':') != std::string::npos ? Family::V6 : Family::V4; }

// A TCP (or UDP) packet an application in the pod sends.
ExplainVerdict out(const RulePlan& p, const std::string& dst, uint16_t dport, uint32_t uid = 1000,
                   std::string oif = "eth0", Proto proto = Proto::Tcp, std::string src = "") {
  Packet k;
  k.family = family_of(dst);
  k.hook = Packet::Hook::Output;
  k.proto = proto;
  k.src = addr(src.empty() ? (k.family == Family::V4 ? "198.18.0.2" : "fd00::2") : src);
  k.dst = addr(dst);
  k.sport = 40000;
  k.dport = dport;
  k.uid = uid;
  k.gid = uid;
  k.out_iface = std::move(oif);
  return explain(xtables::raise(p), k).verdict;
}

// A packet arriving at the pod.
ExplainVerdict in(const RulePlan& p, const std::string& dst, uint16_t dport, std::string iif = "eth0",
                  Packet::CtState st = Packet::CtState::New, std::string src = "") {
  Packet k;
  k.family = family_of(dst);
  k.hook = Packet::Hook::Prerouting;
  k.proto = Proto::Tcp;
  k.src = addr(src.empty() ? (k.family == Family::V4 ? "198.18.0.9" : "fd00::9") : src);
  k.dst = addr(dst);
  k.sport = 40000;
  k.dport = dport;
  k.in_iface = std::move(iif);
  k.ct_state = st;
  return explain(xtables::raise(p), k).verdict;
}

bool redirected_to(const ExplainVerdict& v, uint16_t port) {
  return v.kind == ExplainVerdict::Redirected && v.port == port;
}
bool untouched(const ExplainVerdict& v) { return v.kind == ExplainVerdict::Untouched; }

void check_structure(const RulePlan& p) {
  for (const auto& rs : p.rulesets) {
    for (const auto& t : rs.tables) {
      std::set<std::string> defined;
      for (const auto& c : t.chains)
        if (!is_builtin_chain(t.name, c.name)) defined.insert(c.name);
      for (const auto& c : t.chains) {
        const bool builtin = is_builtin_chain(t.name, c.name);
        INFO(to_string(rs.family), " ", t.name, " ", c.name);
        if (builtin) {
          CHECK(c.rules.size() == 1);
          CHECK(is_weir_jump(c.rules.at(0)));
        } else {
          CHECK(is_weir_chain(c.name));
        }
        for (const auto& r : c.rules) {
          CHECK_FALSE(r.comment.empty());
          if (auto* j = std::get_if<Jump>(&r.target)) CHECK(defined.count(j->chain) == 1);
          if (r.multiport) {
            int n = 0;
            for (const auto& pr : r.multiport->ports) n += pr.first == pr.last ? 1 : 2;
            CHECK(n <= kMultiportMaxPorts);
            CHECK(r.proto != Proto::Any);
          }
          if (std::holds_alternative<Redirect>(r.target) || std::holds_alternative<Tproxy>(r.target))
            CHECK(r.proto != Proto::Any);
        }
      }
    }
  }
}

RulePlan planned(const CaptureSpec& s) {
  REQUIRE_MESSAGE(validate(s).ok(), (validate(s).ok() ? "" : validate(s).error().message));
  RulePlan p = plan(s);
  check_structure(p);
  return p;
}

}  // namespace

TEST_CASE("default spec captures like the reference sidecar, IPv4 and IPv6") {
  RulePlan p = planned(CaptureSpec{});
  REQUIRE(p.rulesets.size() == 2);
  CHECK(p.rulesets[0].family == Family::V4);
  CHECK(p.rulesets[1].family == Family::V6);
  CHECK(p.routes.empty());

  for (const char* pod : {"198.18.0.2", "fd00::2"}) {
    const bool v6 = family_of(pod) == Family::V6;
    const std::string peer = v6 ? "fd00::9" : "198.18.0.9";
    const std::string lo = v6 ? "::1" : "127.0.0.1";
    INFO(pod);
    // Inbound.
    CHECK(redirected_to(in(p, pod, 8080), 15006));
    for (uint16_t port : {15008, 15020, 15021, 15090}) CHECK(untouched(in(p, pod, port)));
    // Outbound from the app.
    CHECK(redirected_to(out(p, peer, 80), 15001));
    CHECK(untouched(out(p, peer, 53, 1000, "eth0", Proto::Udp)));
    // The proxy's own traffic.
    CHECK(untouched(out(p, peer, 80, 1337)));
    // App talking to itself.
    CHECK(untouched(out(p, lo, 8080, 1000, "lo")));
    CHECK(untouched(out(p, pod, 8080, 1000, "lo")));
    // Proxy calling the pod's own address over lo: inbound.
    CHECK(redirected_to(out(p, pod, 8080, 1337, "lo"), 15006));
    CHECK(untouched(out(p, pod, 15008, 1337, "lo")));
    CHECK(untouched(out(p, lo, 8080, 1337, "lo")));
    // The passthrough source address.
    CHECK(untouched(out(p, pod, 8080, 1337, "lo", Proto::Tcp, v6 ? "::6" : "127.0.0.6")));
  }
}

TEST_CASE("a proxy GID alone bypasses capture") {
  CaptureSpec s;
  s.proxy_uids = {1337};
  s.proxy_gids = {2000};
  RulePlan p = planned(s);
  Packet k;
  k.family = Family::V4;
  k.hook = Packet::Hook::Output;
  k.src = addr("198.18.0.2");
  k.dst = addr("198.18.0.9");
  k.dport = 80;
  k.uid = 1000;
  k.gid = 2000;
  k.out_iface = "eth0";
  CHECK(untouched(explain(xtables::raise(p), k).verdict));
  k.gid = 1000;
  CHECK(redirected_to(explain(xtables::raise(p), k).verdict, 15001));
}

TEST_CASE("several proxy UIDs: each bypasses, each is inbound-redirected on lo") {
  CaptureSpec s;
  s.proxy_uids = {1337, 1338};
  s.proxy_gids = {1337, 1338};
  RulePlan p = planned(s);
  for (uint32_t uid : {1337u, 1338u}) {
    CHECK(untouched(out(p, "198.18.0.9", 80, uid)));
    CHECK(redirected_to(out(p, "198.18.0.2", 8080, uid, "lo"), 15006));
  }
  CHECK(redirected_to(out(p, "198.18.0.9", 80, 1339), 15001));
}

TEST_CASE("inbound include list and excludes") {
  CaptureSpec s;
  s.inbound_ports = std::vector<PortRange>{{8080, 8080}, {9000, 9100}};
  RulePlan p = planned(s);
  CHECK(redirected_to(in(p, "198.18.0.2", 8080), 15006));
  CHECK(redirected_to(in(p, "198.18.0.2", 9050), 15006));
  CHECK(untouched(in(p, "198.18.0.2", 8081)));

  s.inbound_ports = std::vector<PortRange>{};
  p = planned(s);
  CHECK(untouched(in(p, "198.18.0.2", 8080)));
  CHECK(p.rulesets[0].find("nat")->find(chains::kInbound) == nullptr);

  // More excludes than one multiport rule holds.
  s = CaptureSpec{};
  s.exclude_inbound_ports.clear();
  for (uint16_t i = 0; i < 20; ++i) s.exclude_inbound_ports.push_back({uint16_t(7000 + i), uint16_t(7000 + i)});
  p = planned(s);
  CHECK(untouched(in(p, "198.18.0.2", 7000)));
  CHECK(untouched(in(p, "198.18.0.2", 7017)));
  CHECK(redirected_to(in(p, "198.18.0.2", 7020), 15006));
  CHECK(redirected_to(in(p, "198.18.0.2", 15020), 15006));  // no longer excluded
  CHECK(untouched(in(p, "198.18.0.2", 15008)));              // the tunnel port always is
}

TEST_CASE("inbound source CIDR excludes") {
  CaptureSpec s;
  s.exclude_inbound_cidrs = {addr("198.18.7.0/24")};
  RulePlan p = planned(s);
  CHECK(untouched(in(p, "198.18.0.2", 8080, "eth0", Packet::CtState::New, "198.18.7.7")));
  CHECK(redirected_to(in(p, "198.18.0.2", 8080, "eth0", Packet::CtState::New, "198.18.8.7"), 15006));
}

TEST_CASE("outbound CIDR include and exclude lists") {
  CaptureSpec s;
  s.outbound_cidrs = std::vector<Cidr>{addr("198.19.0.0/16")};
  RulePlan p = planned(s);
  CHECK(redirected_to(out(p, "198.19.0.1", 443), 15001));
  CHECK(untouched(out(p, "198.18.1.1", 443)));
  CHECK(untouched(out(p, "fd00::9", 443)));  // no IPv6 range listed: nothing captured

  s = CaptureSpec{};
  s.exclude_outbound_cidrs = {addr("198.18.5.0/24"), addr("fd00:5::/64")};
  p = planned(s);
  CHECK(untouched(out(p, "198.18.5.5", 80)));
  CHECK(redirected_to(out(p, "198.18.6.5", 80), 15001));
  CHECK(untouched(out(p, "fd00:5::1", 80)));
  CHECK(redirected_to(out(p, "fd00:6::1", 80), 15001));

  s = CaptureSpec{};
  s.outbound_cidrs = std::vector<Cidr>{};
  p = planned(s);
  CHECK(untouched(out(p, "198.18.6.5", 80)));
}

TEST_CASE("outbound port include and exclude lists") {
  CaptureSpec s;
  s.outbound_ports = std::vector<PortRange>{{443, 443}, {8000, 8100}};
  RulePlan p = planned(s);
  CHECK(redirected_to(out(p, "198.18.1.1", 443), 15001));
  CHECK(redirected_to(out(p, "198.18.1.1", 8050), 15001));
  CHECK(untouched(out(p, "198.18.1.1", 80)));

  s = CaptureSpec{};
  s.exclude_outbound_ports = {{5432, 5432}, {6000, 6010}};
  p = planned(s);
  CHECK(untouched(out(p, "198.18.1.1", 5432)));
  CHECK(untouched(out(p, "198.18.1.1", 6005)));
  CHECK(redirected_to(out(p, "198.18.1.1", 6011), 15001));
}

TEST_CASE("excluded interfaces are never captured") {
  CaptureSpec s;
  s.exclude_interfaces = {"eth1"};
  RulePlan p = planned(s);
  CHECK(untouched(in(p, "198.18.0.2", 8080, "eth1")));
  CHECK(redirected_to(in(p, "198.18.0.2", 8080, "eth0"), 15006));
  CHECK(untouched(out(p, "198.18.1.1", 80, 1000, "eth1")));
  CHECK(redirected_to(out(p, "198.18.1.1", 80, 1000, "eth0"), 15001));
}

TEST_CASE("kube-virt interfaces: inbound is treated as outbound") {
  CaptureSpec s;
  s.kube_virt_interfaces = {"vif0"};
  s.exclude_outbound_ports = {{5432, 5432}};
  RulePlan p = planned(s);
  CHECK(redirected_to(in(p, "198.18.1.1", 80, "vif0"), 15001));
  CHECK(untouched(in(p, "198.18.1.1", 5432, "vif0")));  // outbound excludes apply
  CHECK(redirected_to(in(p, "198.18.0.2", 80, "eth0"), 15006));
}

TEST_CASE("kube-virt interfaces: the outbound excludes apply by default, not with kubeVirtExcludes ignore") {
  CaptureSpec s;
  s.kube_virt_interfaces = {"vif0"};
  s.exclude_outbound_cidrs = {addr("2001:db8::/32"), addr("198.18.9.0/24")};
  s.exclude_outbound_ports = {{5432, 5432}};
  RulePlan p = planned(s);
  // The VM is excluded from what the pod is excluded from.
  CHECK(untouched(in(p, "2001:db8::1", 80, "vif0")));
  CHECK(untouched(in(p, "198.18.9.1", 80, "vif0")));
  CHECK(untouched(in(p, "198.18.1.1", 5432, "vif0")));
  CHECK(redirected_to(in(p, "fd00::1:1", 80, "vif0"), 15001));

  // istio-iptables' semantics: every TCP on the interface to the proxy.
  s.kube_virt_excludes = KubeVirtExcludes::Ignore;
  p = planned(s);
  CHECK(redirected_to(in(p, "2001:db8::1", 80, "vif0"), 15001));
  CHECK(redirected_to(in(p, "198.18.9.1", 80, "vif0"), 15001));
  CHECK(redirected_to(in(p, "198.18.1.1", 5432, "vif0"), 15001));
  CHECK(redirected_to(in(p, "fd00::1:1", 80, "vif0"), 15001));
  // Nothing else changes: the pod's own traffic keeps its excludes, other
  // interfaces' inbound is inbound.
  CHECK(untouched(out(p, "2001:db8::1", 80)));
  CHECK(untouched(out(p, "198.18.9.1", 80)));
  CHECK(untouched(out(p, "198.18.1.1", 5432)));
  CHECK(redirected_to(out(p, "198.18.1.1", 80), 15001));
  CHECK(redirected_to(in(p, "198.18.0.2", 80, "eth0"), 15006));

  // The includes still choose what is captured (Istio: -d per -i CIDR).
  s.outbound_cidrs = std::vector<Cidr>{addr("198.18.0.0/16"), addr("2001:db8::/32")};
  p = planned(s);
  CHECK(redirected_to(in(p, "198.18.9.1", 80, "vif0"), 15001));
  CHECK(redirected_to(in(p, "2001:db8::1", 80, "vif0"), 15001));
  CHECK(untouched(in(p, "198.19.0.1", 80, "vif0")));
  CHECK(untouched(in(p, "fd00::1:1", 80, "vif0")));
  // An empty include list captures nothing from the VM either.
  s.outbound_cidrs = std::vector<Cidr>{};
  p = planned(s);
  CHECK(untouched(in(p, "198.18.9.1", 80, "vif0")));
  CHECK(untouched(in(p, "198.18.0.2", 80, "vif0")));  // and not as inbound
}

TEST_CASE("kube-virt interfaces: explain names the rule that decided, in either choice") {
  CaptureSpec s;
  s.kube_virt_interfaces = {"vif0"};
  s.exclude_outbound_cidrs = {addr("2001:db8::/32")};
  Packet k;
  k.family = Family::V6;
  k.hook = Packet::Hook::Prerouting;
  k.src = addr("fd00::9");
  k.dst = addr("2001:db8::1");
  k.sport = 40000;
  k.dport = 80;
  k.in_iface = "vif0";
  auto matched = [](const Explanation& e, const std::string& chain, const std::string& reason) {
    for (const TraceStep& t : e.steps)
      if (t.matched && t.chain == chain && t.rule_text.find(reason) != std::string::npos) return true;
    return false;
  };
  // The trace shows the VM's packet taken to the outbound rules and returned
  // by the exclude.
  Explanation e = explain(capture_policy(s), k);
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK_MESSAGE(matched(e, "WEIR_INBOUND", "kube-virt interface vif0: inbound is treated as outbound"),
                render_explanation(e));
  CHECK_MESSAGE(matched(e, "WEIR_OUTBOUND", "outbound to 2001:db8::/32 is not captured"), render_explanation(e));

  s.kube_virt_excludes = KubeVirtExcludes::Ignore;
  e = explain(capture_policy(s), k);
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.verdict.port == 15001);
  CHECK_MESSAGE(matched(e, "WEIR_INBOUND",
                        "kube-virt interface vif0 (kubeVirtExcludes ignore): TCP goes to the proxy outbound port, "
                        "outbound excludes do not apply"),
                render_explanation(e));
  CHECK_FALSE(matched(e, "WEIR_OUTBOUND", "is not captured"));
}

TEST_CASE("excluded outbound ports: never captured, also not as DNS nor as the proxy's lo traffic") {
  CaptureSpec s;
  s.dns.capture = true;
  s.dns.capture_all = true;
  s.exclude_outbound_ports = {{53, 53}, {9000, 9000}};
  RulePlan p = planned(s);
  CHECK(untouched(out(p, "198.18.1.1", 53, 1000, "eth0")));                 // TCP DNS
  CHECK(untouched(out(p, "198.18.1.1", 53, 1000, "eth0", Proto::Udp)));     // UDP DNS
  CHECK(untouched(out(p, "198.18.1.1", 9000, 1000, "eth0")));
  CHECK(redirected_to(out(p, "198.18.1.1", 9001, 1000, "eth0"), 15001));
  // The proxy calling the pod's own address over lo on an excluded port
  // is not treated as inbound (as istio-iptables orders it).
  CHECK(untouched(out(p, "198.18.0.2", 9000, 1337, "lo")));
  CHECK(redirected_to(out(p, "198.18.0.2", 9001, 1337, "lo"), 15006));
}

TEST_CASE("DNS capture: all DNS, or only to the pod's nameservers") {
  CaptureSpec s;
  s.dns.capture = true;
  RulePlan p = planned(s);
  CHECK(redirected_to(out(p, "198.18.0.53", 53, 1000, "eth0", Proto::Udp), 15053));
  CHECK(redirected_to(out(p, "198.18.0.53", 53, 1000, "eth0", Proto::Tcp), 15053));
  CHECK(redirected_to(out(p, "fd00::53", 53, 1000, "eth0", Proto::Udp), 15053));
  CHECK(untouched(out(p, "198.18.0.53", 53, 1337, "eth0", Proto::Udp)));
  // A local stub resolver on lo is captured too.
  CHECK(redirected_to(out(p, "127.0.0.53", 53, 1000, "lo", Proto::Udp), 15053));
  REQUIRE(p.rulesets[0].find("raw") != nullptr);

  s.dns.capture_all = false;
  s.dns.servers = {addr("198.18.0.53")};
  p = planned(s);
  CHECK(redirected_to(out(p, "198.18.0.53", 53, 1000, "eth0", Proto::Udp), 15053));
  CHECK(untouched(out(p, "198.18.0.54", 53, 1000, "eth0", Proto::Udp)));
  CHECK(redirected_to(out(p, "198.18.0.54", 53, 1000, "eth0", Proto::Tcp), 15001));  // plain TCP capture
}

TEST_CASE("TPROXY inbound mode") {
  CaptureSpec s;
  s.mode = InboundMode::Tproxy;
  RulePlan p = planned(s);
  REQUIRE(p.routes.size() == 2);
  CHECK(p.routes[0] == PolicyRoute{Family::V4, 1337, 133});
  CHECK(p.routes[1] == PolicyRoute{Family::V6, 1337, 133});
  for (const char* pod : {"198.18.0.2", "fd00::2"}) {
    INFO(pod);
    auto v = in(p, pod, 8080);
    CHECK(v.kind == ExplainVerdict::Tproxied);
    CHECK(v.port == 15006);
    CHECK(v.mark == 1337);
    CHECK(untouched(in(p, pod, 15021)));
    CHECK(in(p, pod, 8080, "eth0", Packet::CtState::Established).kind != ExplainVerdict::Tproxied);
  }
  // Outbound capture is unchanged.
  CHECK(redirected_to(out(p, "198.18.1.1", 80), 15001));
  CHECK(p.rulesets[0].find("nat")->find(chains::kInbound) == nullptr);
}

TEST_CASE("drop invalid") {
  CaptureSpec s;
  s.drop_invalid = true;
  RulePlan p = planned(s);
  CHECK(in(p, "198.18.0.2", 8080, "eth0", Packet::CtState::Invalid).kind == ExplainVerdict::Dropped);
  CHECK(redirected_to(in(p, "198.18.0.2", 8080), 15006));
}

TEST_CASE("one family only") {
  CaptureSpec s;
  s.ip_families = IpFamilies::V4;
  RulePlan p = planned(s);
  REQUIRE(p.rulesets.size() == 1);
  CHECK(p.rulesets[0].family == Family::V4);
  s.ip_families = IpFamilies::V6;
  p = planned(s);
  REQUIRE(p.rulesets.size() == 1);
  CHECK(p.rulesets[0].family == Family::V6);
}

TEST_CASE("custom ports") {
  CaptureSpec s;
  s.outbound_port = 4140;
  s.inbound_port = 4143;
  s.proxy_uids = s.proxy_gids = {2102};
  s.inbound_tunnel_port = 0;
  s.exclude_inbound_ports = {{4190, 4191}};
  RulePlan p = planned(s);
  CHECK(redirected_to(in(p, "198.18.0.2", 15008), 4143));
  CHECK(untouched(in(p, "198.18.0.2", 4191)));
  CHECK(redirected_to(out(p, "198.18.1.1", 80), 4140));
  CHECK(untouched(out(p, "198.18.1.1", 80, 2102)));
}

TEST_CASE("plans are deterministic") {
  CaptureSpec s;
  s.dns.capture = true;
  s.mode = InboundMode::Tproxy;
  CHECK(plan(s) == plan(s));
}

}  // namespace weir
