// Unit tests of diff on capture policies. The expected texts are the
// iptables-save form (xtables::policy_text, the default), which is what
// `weir check` prints for the libiptc backend.
#include "rules/diff.h"

#include <doctest/doctest.h>

#include <algorithm>

namespace weir {
namespace {

Cidr ip(const char* text) {
  auto c = parse_cidr(text);
  REQUIRE_MESSAGE(c.ok(), text);
  return *c;
}

Step step(Action a, std::string reason = "") {
  Step s;
  s.action = std::move(a);
  s.reason = std::move(reason);
  return s;
}

const Step kReturn = step(Verdict{Verdict::Return});

PolicyChain base(std::string name, Hook hook, std::vector<Step> steps) {
  return PolicyChain{std::move(name), hook, std::move(steps), 0};
}
PolicyChain regular(std::string name, std::vector<Step> steps) {
  return PolicyChain{std::move(name), std::nullopt, std::move(steps), 0};
}

// nat: OUTPUT -> WEIR_OUTPUT (passthrough source, proxy uid, loopback) -> WEIR_REDIRECT.
CapturePolicy small_policy() {
  Step passthrough = kReturn;
  passthrough.match.src = CidrSet{{ip("127.0.0.6")}, false};
  passthrough.match.out = IfaceMatch{"lo", false};
  Step proxy = kReturn;
  proxy.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  Step loopback = kReturn;
  loopback.match.dst = CidrSet{{ip("127.0.0.1")}, false};
  Step redirect = step(Redirect{15001});
  redirect.match.proto = Proto::Tcp;
  StagePolicy nat{Stage::Nat,
                  {base("OUTPUT", Hook::Output, {step(Jump{"WEIR_OUTPUT"})}),
                   regular("WEIR_OUTPUT", {passthrough, proxy, loopback, step(Jump{"WEIR_REDIRECT"})}),
                   regular("WEIR_REDIRECT", {redirect})}};
  return CapturePolicy{{FamilyPolicy{Family::V4, {nat}}}, {}};
}

PolicyChain& chain(CapturePolicy& p, const char* name) {
  for (auto& c : p.families[0].stages[0].chains) {
    if (c.name == name) return c;
  }
  FAIL("no chain ", name);
  throw 0;
}

}  // namespace

TEST_CASE("diff: identical plans, counters ignored, chain order ignored") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  chain(live, "WEIR_OUTPUT").steps[0].counters = Counters{9, 999};
  std::reverse(live.families[0].stages[0].chains.begin(), live.families[0].stages[0].chains.end());
  CHECK(diff(want, live).empty());
  CHECK(render_diff(diff(want, live)).empty());
}

TEST_CASE("diff: a rule deleted by hand is one missing rule") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  auto& steps = chain(live, "WEIR_OUTPUT").steps;
  steps.erase(steps.begin() + 1);
  const PlanDiff d = diff(want, live);
  REQUIRE(d.lines.size() == 1);
  CHECK(d.lines[0].kind == DiffLine::Missing);
  CHECK(d.lines[0].where == "ipv4 nat WEIR_OUTPUT rule 2");
  CHECK(d.lines[0].wanted == "-A WEIR_OUTPUT -m owner --uid-owner 1337 -j RETURN");
  CHECK(render_diff(d) ==
        "ipv4 nat WEIR_OUTPUT rule 2: missing\n"
        "  - -A WEIR_OUTPUT -m owner --uid-owner 1337 -j RETURN\n");
}

TEST_CASE("diff: changed and extra rules") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  chain(live, "WEIR_REDIRECT").steps[0].action = Redirect{15002};
  chain(live, "WEIR_OUTPUT").steps.push_back(kReturn);
  const PlanDiff d = diff(want, live);
  REQUIRE(d.lines.size() == 2);
  CHECK(d.lines[0].kind == DiffLine::Extra);
  CHECK(d.lines[0].where == "ipv4 nat WEIR_OUTPUT rule 5");
  CHECK(d.lines[0].live == "-A WEIR_OUTPUT -j RETURN");
  CHECK(d.lines[1].kind == DiffLine::Changed);
  CHECK(d.lines[1].where == "ipv4 nat WEIR_REDIRECT rule 1");
  CHECK(render_diff(d).find("ipv4 nat WEIR_REDIRECT rule 1: changed\n"
                            "  - -A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
                            "  + -A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15002\n") != std::string::npos);
}

TEST_CASE("diff: reordered rules differ") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  auto& steps = chain(live, "WEIR_OUTPUT").steps;
  std::swap(steps[0], steps[1]);
  CHECK_FALSE(diff(want, live).empty());
}

TEST_CASE("diff: missing and extra chains, jumps, families and routes") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  auto& chains = live.families[0].stages[0].chains;
  chains.erase(chains.begin());      // the OUTPUT jump
  chains.erase(chains.begin() + 1);  // WEIR_REDIRECT
  chains.push_back(regular("WEIR_OLD", {kReturn}));
  live.routes.push_back(PolicyRoute{Family::V4, 1337, 133});
  want.families.push_back(FamilyPolicy{Family::V6, {StagePolicy{Stage::Nat, {regular("WEIR_OUTPUT", {kReturn})}}}});
  want.routes.push_back(PolicyRoute{Family::V6, 1337, 133});

  const PlanDiff d = diff(want, live);
  std::vector<std::string> where;
  for (const auto& l : d.lines) where.push_back(l.where);
  CHECK(where == std::vector<std::string>{"ipv4 nat OUTPUT rule 1", "ipv4 nat chain WEIR_REDIRECT",
                                          "ipv4 nat chain WEIR_OLD", "ipv6 rules", "ipv6 route fwmark 1337",
                                          "ipv4 route fwmark 1337"});
  CHECK(d.lines[0].kind == DiffLine::Missing);
  CHECK(d.lines[1].kind == DiffLine::Missing);
  CHECK(d.lines[1].wanted == ":WEIR_REDIRECT - [0:0]\n-A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001");
  CHECK(d.lines[2].kind == DiffLine::Extra);
  CHECK(d.lines[3].kind == DiffLine::Missing);
  CHECK(d.lines[3].wanted == "*nat\n:WEIR_OUTPUT - [0:0]\n-A WEIR_OUTPUT -j RETURN\nCOMMIT\n");
  CHECK(d.lines[4].kind == DiffLine::Missing);
  CHECK(d.lines[5].kind == DiffLine::Extra);
  const std::string text = render_diff(d);
  CHECK(text.find("ipv4 nat chain WEIR_REDIRECT: missing\n"
                  "  - :WEIR_REDIRECT - [0:0]\n"
                  "  - -A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n") != std::string::npos);
  CHECK(text.find("ipv4 route fwmark 1337: extra\n  + fwmark 0x539 lookup 133, local 0.0.0.0/0 dev lo table 133\n") !=
        std::string::npos);
  CHECK(text.find("ipv6 rules: missing\n  - *nat\n  - :WEIR_OUTPUT - [0:0]\n  - -A WEIR_OUTPUT -j RETURN\n  - COMMIT\n") !=
        std::string::npos);

  // Nothing of weir's live at all: everything missing, and cleaned = empty live policy.
  const PlanDiff none = diff(small_policy(), CapturePolicy{});
  REQUIRE(none.lines.size() == 1);
  CHECK(none.lines[0].where == "ipv4 rules");
  CHECK(diff(CapturePolicy{}, CapturePolicy{{FamilyPolicy{Family::V4, {}}}, {}}).empty());
  CHECK(diff(CapturePolicy{}, CapturePolicy{{FamilyPolicy{Family::V4, {StagePolicy{Stage::Nat, {}}}}}, {}}).empty());
}

TEST_CASE("diff: a base chain behind other tools' rules is drift") {
  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  chain(live, "OUTPUT").foreign_before = 2;
  const PlanDiff d = diff(want, live);
  REQUIRE(d.lines.size() == 1);
  CHECK(d.lines[0].kind == DiffLine::Changed);
  CHECK(d.lines[0].where == "ipv4 nat OUTPUT position of weir's jump");
  CHECK(d.lines[0].live.find("2 rule(s) of another tool before weir's jump in OUTPUT") != std::string::npos);
  // A base chain without weir's steps has no position to be wrong.
  chain(live, "OUTPUT").steps.clear();
  const PlanDiff gone = diff(want, live);
  REQUIRE(gone.lines.size() == 1);
  CHECK(gone.lines[0].where == "ipv4 nat OUTPUT rule 1");
  CHECK(gone.lines[0].kind == DiffLine::Missing);
}

TEST_CASE("diff: sets compare as wholes; stages line up by stage") {
  CapturePolicy want = small_policy();
  Step ports = kReturn;
  ports.match.proto = Proto::Tcp;
  ports.match.dport = PortSet{};
  for (uint16_t p = 1000; p < 1020; ++p) ports.match.dport->ports.push_back({p, p});
  Step cidrs = kReturn;
  cidrs.match.dst = CidrSet{{ip("10.0.0.0/8"), ip("172.16.0.0/12"), ip("192.168.0.0/16")}, false};
  chain(want, "WEIR_OUTPUT").steps.insert(chain(want, "WEIR_OUTPUT").steps.begin(), {ports, cidrs});
  want.families[0].stages.insert(want.families[0].stages.begin(),
                                 StagePolicy{Stage::Mangle, {base("PREROUTING", Hook::Prerouting, {kReturn})}});
  CHECK(diff(want, want).empty());

  CapturePolicy live = want;
  std::swap(live.families[0].stages[0], live.families[0].stages[1]);  // nat before mangle
  CHECK(diff(want, live).empty());
  // One CIDR less in a set is one changed step, not a missing rule.
  chain(live, "WEIR_OUTPUT").steps[1].match.dst->cidrs.pop_back();
  // One port more in a set, too.
  chain(live, "WEIR_OUTPUT").steps[0].match.dport->ports.push_back({2000, 2000});
  const PlanDiff d = diff(want, live);
  REQUIRE(d.lines.size() == 2);
  CHECK(d.lines[0].where == "ipv4 nat WEIR_OUTPUT rule 1");
  CHECK(d.lines[0].kind == DiffLine::Changed);
  CHECK(d.lines[1].where == "ipv4 nat WEIR_OUTPUT rule 2");
  CHECK(d.lines[1].kind == DiffLine::Changed);
  CHECK(d.lines[1].wanted.find("192.168.0.0/16") != std::string::npos);
  CHECK(d.lines[1].live.find("192.168.0.0/16") == std::string::npos);
  CHECK(d.lines[0].live.find("2000") != std::string::npos);
}

TEST_CASE("diff: a missing chain or family prints every rule its steps lower to") {
  Step ports = kReturn;
  ports.match.proto = Proto::Tcp;
  ports.match.dport = PortSet{};
  for (uint16_t p = 1; p <= 17; ++p) ports.match.dport->ports.push_back({p, p});
  ports.reason = "outbound port {dport} is not captured";
  Step cidrs = kReturn;
  cidrs.match.dst = CidrSet{{ip("10.0.0.0/8"), ip("192.168.0.0/16")}, false};
  CapturePolicy want = small_policy();
  want.families[0].stages[0].chains.push_back(regular("WEIR_EXCLUDES", {ports, cidrs}));
  const PlanDiff d = diff(want, small_policy());
  REQUIRE(d.lines.size() == 1);
  CHECK(d.lines[0].where == "ipv4 nat chain WEIR_EXCLUDES");
  CHECK(d.lines[0].wanted ==
        ":WEIR_EXCLUDES - [0:0]\n"
        "-A WEIR_EXCLUDES -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -m comment --comment "
        "\"outbound port 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 is not captured\" -j RETURN\n"
        "-A WEIR_EXCLUDES -p tcp -m multiport --dports 16,17 -m comment --comment \"outbound port 16,17 is not "
        "captured\" -j RETURN\n"
        "-A WEIR_EXCLUDES -d 10.0.0.0/8 -j RETURN\n"
        "-A WEIR_EXCLUDES -d 192.168.0.0/16 -j RETURN");

  const PlanDiff fam = diff(CapturePolicy{{FamilyPolicy{Family::V6, {StagePolicy{Stage::Nat, {regular("WEIR_X", {ports})}}}}}, {}},
                            CapturePolicy{});
  REQUIRE(fam.lines.size() == 1);
  CHECK(fam.lines[0].where == "ipv6 rules");
  CHECK(fam.lines[0].wanted.find("\n-A WEIR_X -p tcp -m multiport --dports 16,17 ") != std::string::npos);
  CHECK(fam.lines[0].wanted.rfind("*nat\n:WEIR_X - [0:0]\n-A WEIR_X ", 0) == 0);
}

TEST_CASE("diff: the text is the PolicyText's, so another backend prints its own form") {
  PolicyText nft;
  nft.step = [](const std::string& chain, const Step& s, Family) {
    return "chain " + chain + ": " + (std::holds_alternative<Redirect>(s.action) ? "redirect" : "other");
  };
  nft.chain = [](Stage st, const PolicyChain& c, Family) { return std::string(to_string(st)) + " chain " + c.name; };
  nft.family = [](const FamilyPolicy& f) { return std::string("table inet weir (") + to_string(f.family) + ")"; };

  CapturePolicy want = small_policy();
  CapturePolicy live = small_policy();
  chain(live, "WEIR_REDIRECT").steps[0].action = Redirect{15002};
  live.families[0].stages[0].chains.push_back(regular("WEIR_OLD", {kReturn}));
  want.families.push_back(FamilyPolicy{Family::V6, {StagePolicy{Stage::Nat, {regular("WEIR_OUTPUT", {kReturn})}}}});
  const PlanDiff d = diff(want, live, nft);
  REQUIRE(d.lines.size() == 3);
  CHECK(d.lines[0].where == "ipv4 nat WEIR_REDIRECT rule 1");
  CHECK(d.lines[0].wanted == "chain WEIR_REDIRECT: redirect");
  CHECK(d.lines[1].where == "ipv4 nat chain WEIR_OLD");
  CHECK(d.lines[1].live == "nat chain WEIR_OLD");
  CHECK(d.lines[2].where == "ipv6 rules");
  CHECK(d.lines[2].wanted == "table inet weir (ipv6)");
}

}  // namespace weir
