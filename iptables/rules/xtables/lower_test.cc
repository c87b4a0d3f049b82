// Lowering a capture policy to xtables and raising it back, without root.
#include "rules/xtables/lower.h"

#include <doctest/doctest.h>

#include "rules/plan.h"
#include "rules/xtables/render.h"

namespace weir::xtables {
namespace {

Cidr cidr(const std::string& s) {
  auto c = parse_cidr(s);
  REQUIRE_MESSAGE(c.ok(), s);
  return *c;
}

std::vector<PortRange> ports(int n, uint16_t first = 1000) {
  std::vector<PortRange> out;
  for (int i = 0; i < n; ++i) out.push_back({static_cast<uint16_t>(first + i), static_cast<uint16_t>(first + i)});
  return out;
}

CapturePolicy one_step(Step s, Family f = Family::V4) {
  PolicyChain c{"WEIR_OUTPUT", std::nullopt, {std::move(s)}, 0};
  return CapturePolicy{{FamilyPolicy{f, {StagePolicy{Stage::Nat, {std::move(c)}}}}}, {}};
}

const Chain& only_chain(const RulePlan& p) {
  REQUIRE(p.rulesets.size() == 1);
  REQUIRE(p.rulesets[0].tables.size() == 1);
  REQUIRE(p.rulesets[0].tables[0].chains.size() == 1);
  return p.rulesets[0].tables[0].chains[0];
}

TEST_CASE("a port set becomes one --dport, or multiport groups of at most 15, each with its own reason") {
  Step s;
  s.match.proto = Proto::Tcp;
  s.action = Verdict{Verdict::Return};
  s.reason = "outbound port {dport} is not captured";

  s.match.dport = PortSet{ports(1), false};
  auto one = lower(one_step(s));
  REQUIRE(one.ok());
  REQUIRE(only_chain(*one).rules.size() == 1);
  CHECK(render_rule_args(only_chain(*one).rules[0], Family::V4) ==
        "-p tcp -m tcp --dport 1000 -m comment --comment \"outbound port 1000 is not captured\" -j RETURN");

  s.match.dport = PortSet{ports(40), false};
  auto many = lower(one_step(s));
  REQUIRE(many.ok());
  const Chain& c = only_chain(*many);
  REQUIRE(c.rules.size() == 3);  // 15 + 15 + 10
  CHECK(c.rules[0].multiport->ports.size() == 15);
  CHECK(c.rules[2].multiport->ports.size() == 10);
  CHECK(c.rules[2].comment == "outbound port 1030,1031,1032,1033,1034,1035,1036,1037,1038,1039 is not captured");
}

TEST_CASE("a CIDR set becomes one rule per CIDR; a destination set times a port set keeps destinations outer") {
  Step s;
  s.match.proto = Proto::Tcp;
  s.match.dst = CidrSet{{cidr("198.18.0.0/24"), cidr("198.18.1.0/24")}, false};
  s.match.dport = PortSet{ports(16), false};
  s.action = Jump{"WEIR_REDIRECT"};
  s.reason = "outbound TCP to {dst} port {dport}";
  auto p = lower(one_step(s));
  REQUIRE(p.ok());
  const Chain& c = only_chain(*p);
  REQUIRE(c.rules.size() == 4);
  CHECK(c.rules[0].comment.rfind("outbound TCP to 198.18.0.0/24 port 1000,", 0) == 0);
  CHECK(c.rules[1].comment == "outbound TCP to 198.18.0.0/24 port 1015");
  CHECK(c.rules[2].comment.rfind("outbound TCP to 198.18.1.0/24 port 1000,", 0) == 0);
  CHECK(fill_reason(s).rfind("outbound TCP to 198.18.0.0/24,198.18.1.0/24 port 1000,1001,", 0) == 0);
}

TEST_CASE("sets xtables cannot spell are errors, not wider rules") {
  Step s;
  s.match.proto = Proto::Tcp;
  s.action = Verdict{Verdict::Return};
  s.match.dport = PortSet{ports(16), true};
  CHECK_FALSE(lower(one_step(s)).ok());
  s.match.dport.reset();
  s.match.dst = CidrSet{{cidr("198.18.0.0/24"), cidr("198.18.1.0/24")}, true};
  CHECK_FALSE(lower(one_step(s)).ok());
  s.match.dst.reset();
  s.match.sport = PortSet{ports(2), false};
  CHECK_FALSE(lower(one_step(s)).ok());
  s.match.sport = PortSet{{}, false};
  CHECK_FALSE(lower(one_step(s)).ok());
}

TEST_CASE("raise(lower(policy)) is the policy at xtables granularity, for every mode") {
  std::vector<CaptureSpec> specs(4);
  specs[1].mode = InboundMode::Tproxy;
  specs[1].drop_invalid = true;
  specs[2].dns.capture = true;
  specs[2].dns.capture_all = false;
  specs[2].dns.servers = {cidr("198.18.0.10"), cidr("fd00::10")};
  specs[3].exclude_outbound_cidrs = {cidr("198.18.4.0/24"), cidr("198.18.5.0/24"), cidr("fd00:4::/64")};
  specs[3].outbound_ports = ports(20, 2000);
  specs[3].kube_virt_interfaces = {"vif0"};
  for (const CaptureSpec& spec : specs) {
    const CapturePolicy policy = capture_policy(spec);
    auto lowered = lower(policy);
    REQUIRE(lowered.ok());
    CHECK(*lowered == plan(spec));
    const CapturePolicy canon = canonical(policy);
    CHECK(canon == raise(*lowered));
    // Canonical is a fixed point: lowering it again gives the same rules.
    auto again = lower(canon);
    REQUIRE(again.ok());
    CHECK(*again == *lowered);
    CHECK(canonical(canon) == canon);
    // Base chains become the built-in chains' heads; routes carry over.
    for (const FamilyPolicy& fp : canon.families)
      for (const StagePolicy& sp : fp.stages)
        for (const PolicyChain& c : sp.chains) CHECK(c.hook.has_value() == !is_weir_chain(c.name));
    CHECK(canon.routes == policy.routes);
  }
}

TEST_CASE("raise keeps what it cannot express as unknown matches, so check shows it") {
  Rule r;
  r.proto = Proto::Tcp;
  r.dport = PortMatch{{80, 80}, false};
  r.multiport = Multiport{{{81, 81}, {82, 82}}, false};
  r.unknown_matches = {"statistic"};
  RulePlan p;
  p.rulesets.push_back(Ruleset{Family::V4, {Table{"nat", {Chain{"WEIR_OUTPUT", {r}, 0}}}}});
  CapturePolicy raised = raise(p);
  const Step& s = raised.families[0].stages[0].chains[0].steps[0];
  CHECK(s.match.dport->ports.size() == 2);
  REQUIRE(s.match.unknown.size() == 2);
  CHECK(s.match.unknown[0] == "--dport 80");
  CHECK(s.match.unknown[1] == "statistic");
}

TEST_CASE("step_text renders a step as iptables-save does") {
  Step s;
  s.match.out = IfaceMatch{"lo", false};
  s.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  s.action = Verdict{Verdict::Return};
  s.reason = "proxy";
  CHECK(step_text(s, Family::V4) ==
        "-o lo -m owner --uid-owner 1337 -m comment --comment proxy -j RETURN");
}

}  // namespace
}  // namespace weir::xtables
