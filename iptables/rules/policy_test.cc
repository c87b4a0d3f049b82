// Unit tests of the capture policy's small helpers (policy.h).
#include "rules/policy.h"

#include <doctest/doctest.h>

#include <algorithm>

namespace weir {
namespace {

Cidr ip(const char* text) {
  auto c = parse_cidr(text);
  REQUIRE_MESSAGE(c.ok(), text);
  return *c;
}

Step ret(std::string reason) {
  Step s;
  s.action = Verdict{Verdict::Return};
  s.reason = std::move(reason);
  return s;
}

PolicyChain chain(std::string name, std::vector<Step> steps, std::optional<Hook> hook = std::nullopt) {
  return PolicyChain{std::move(name), hook, std::move(steps), 0};
}

// Two families, the V6 one with a mangle stage too, and a route each.
CapturePolicy two_families() {
  CapturePolicy p;
  p.families.push_back(FamilyPolicy{
      Family::V4,
      {StagePolicy{Stage::Nat, {chain("OUTPUT", {ret("a")}, Hook::Output), chain("WEIR_OUTPUT", {ret("b")})}}}});
  p.families.push_back(FamilyPolicy{Family::V6,
                                    {StagePolicy{Stage::Mangle, {chain("PREROUTING", {ret("c")}, Hook::Prerouting)}},
                                     StagePolicy{Stage::Nat, {chain("WEIR_OUTPUT", {ret("d")})}}}});
  p.routes = {PolicyRoute{Family::V4, 1337, 133}, PolicyRoute{Family::V6, 1337, 133}};
  return p;
}

}  // namespace

TEST_CASE("policy: names and priorities of hooks and stages") {
  CHECK(std::string(to_string(Hook::Prerouting)) == "prerouting");
  CHECK(std::string(to_string(Hook::Output)) == "output");
  CHECK(std::string(to_string(Stage::Raw)) == "raw");
  CHECK(std::string(to_string(Stage::Mangle)) == "mangle");
  CHECK(std::string(to_string(Stage::Nat)) == "nat");
  // netfilter runs lower priorities first: raw, mangle, nat.
  CHECK(priority(Stage::Raw) == -300);
  CHECK(priority(Stage::Mangle) == -150);
  CHECK(priority(Stage::Nat) == -100);
  CHECK(priority(Stage::Raw) < priority(Stage::Mangle));
  CHECK(priority(Stage::Mangle) < priority(Stage::Nat));
}

TEST_CASE("policy: find families, stages and chains") {
  const CapturePolicy p = two_families();
  REQUIRE(p.find(Family::V4) != nullptr);
  CHECK(p.find(Family::V4) == &p.families[0]);
  CHECK(p.find(Family::V6) == &p.families[1]);
  const FamilyPolicy& v6 = p.families[1];
  CHECK(v6.find(Stage::Mangle) == &v6.stages[0]);
  CHECK(v6.find(Stage::Nat) == &v6.stages[1]);
  CHECK(v6.find(Stage::Raw) == nullptr);
  const StagePolicy& nat = p.families[0].stages[0];
  CHECK(nat.find("WEIR_OUTPUT") == &nat.chains[1]);
  CHECK(nat.find("OUTPUT")->hook == Hook::Output);
  CHECK(nat.find("WEIR_DNS") == nullptr);
  CHECK(CapturePolicy{}.find(Family::V4) == nullptr);
}

TEST_CASE("fill_reason: placeholders become the whole set") {
  Step s = ret("outbound to {dst} port {dport} from {src} (sport {sport}) is not captured");
  s.match.dst = CidrSet{{ip("10.0.0.0/8"), ip("192.168.0.0/16"), ip("198.18.0.1")}, false};
  s.match.dport = PortSet{{{80, 80}, {8000, 8100}}, false};
  s.match.src = CidrSet{{ip("198.18.0.0/15")}, true};
  s.match.sport = PortSet{{{53, 53}}, true};
  CHECK(fill_reason(s) ==
        "outbound to 10.0.0.0/8,192.168.0.0/16,198.18.0.1/32 port 80,8000-8100 from !198.18.0.0/15 (sport !53) is not "
        "captured");

  // Every occurrence; other braces stay.
  s = ret("{dport} and {dport}; {other}");
  s.match.dport = PortSet{{{15008, 15008}}, false};
  CHECK(fill_reason(s) == "15008 and 15008; {other}");
  CHECK(fill_reason(ret("plain words")) == "plain words");
  CHECK(fill_reason(ret("")).empty());

  // A set larger than one multiport match is filled whole.
  s = ret("port {dport}");
  s.match.dport = PortSet{};
  for (uint16_t p = 1; p <= 20; ++p) s.match.dport->ports.push_back({p, p});
  CHECK(fill_reason(s) == "port 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20");
}

TEST_CASE("restrict_to keeps only the given families, rules and routes") {
  const CapturePolicy p = two_families();
  const CapturePolicy v4 = restrict_to(p, {Family::V4});
  REQUIRE(v4.families.size() == 1);
  CHECK(v4.families[0] == p.families[0]);
  CHECK(v4.routes == std::vector<PolicyRoute>{PolicyRoute{Family::V4, 1337, 133}});
  const CapturePolicy v6 = restrict_to(p, {Family::V6});
  REQUIRE(v6.families.size() == 1);
  CHECK(v6.families[0].family == Family::V6);
  CHECK(v6.routes.size() == 1);
  CHECK(restrict_to(p, {Family::V4, Family::V6}) == p);
  CHECK(restrict_to(p, {}) == CapturePolicy{});
}

TEST_CASE("order_like lines live up like wanted; what wanted lacks keeps its order at the end") {
  const CapturePolicy want = two_families();
  CapturePolicy live = want;
  std::reverse(live.families.begin(), live.families.end());
  std::reverse(live.families[0].stages.begin(), live.families[0].stages.end());  // V6: nat, mangle
  auto& v4_chains = live.families[1].stages[0].chains;
  std::reverse(v4_chains.begin(), v4_chains.end());
  v4_chains.insert(v4_chains.begin(), chain("WEIR_OLD", {ret("x")}));
  v4_chains.push_back(chain("WEIR_OLDER", {ret("y")}));
  std::reverse(live.routes.begin(), live.routes.end());
  live.routes.insert(live.routes.begin(), PolicyRoute{Family::V4, 7, 8});
  CHECK_FALSE(live == want);

  const CapturePolicy ordered = order_like(live, want);
  REQUIRE(ordered.families.size() == 2);
  CHECK(ordered.families[0].family == Family::V4);
  CHECK(ordered.families[1] == want.families[1]);
  std::vector<std::string> names;
  for (const auto& c : ordered.families[0].stages[0].chains) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"OUTPUT", "WEIR_OUTPUT", "WEIR_OLD", "WEIR_OLDER"});
  CHECK(ordered.routes == std::vector<PolicyRoute>{want.routes[0], want.routes[1], PolicyRoute{Family::V4, 7, 8}});

  // Steps are never reordered (their order is the policy), and live alone stays as it is.
  CapturePolicy swapped = want;
  swapped.families[0].stages[0].chains[1].steps.push_back(ret("z"));
  std::swap(swapped.families[0].stages[0].chains[1].steps[0], swapped.families[0].stages[0].chains[1].steps[1]);
  CHECK(order_like(swapped, want) == swapped);
  CHECK(order_like(live, CapturePolicy{}) == live);
}

TEST_CASE("policy equality ignores counters only") {
  CapturePolicy a = two_families(), b = two_families();
  b.families[0].stages[0].chains[0].steps[0].counters = Counters{5, 500};
  CHECK(a == b);
  b.families[0].stages[0].chains[0].steps[0].reason = "other";
  CHECK_FALSE(a == b);
  b = two_families();
  b.families[0].stages[0].chains[0].foreign_before = 1;
  CHECK_FALSE(a == b);
}

}  // namespace weir
