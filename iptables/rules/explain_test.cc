#include "rules/explain.h"
#include "rules/plan.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace weir {
namespace {

Cidr ip(const char* text) {
  auto c = parse_cidr(text);
  REQUIRE_MESSAGE(c.ok(), text);
  return *c;
}

Packet outbound(const char* src, const char* dst, uint16_t dport, std::optional<uint32_t> uid = 1000) {
  Packet p;
  p.family = ip(src).family;
  p.hook = Packet::Hook::Output;
  p.src = ip(src);
  p.dst = ip(dst);
  p.sport = 40000;
  p.dport = dport;
  p.uid = uid;
  p.gid = uid;
  return p;
}

Packet inbound(const char* src, const char* dst, uint16_t dport, const char* iface = "eth0") {
  Packet p;
  p.family = ip(src).family;
  p.hook = Packet::Hook::Prerouting;
  p.src = ip(src);
  p.dst = ip(dst);
  p.sport = 40000;
  p.dport = dport;
  p.in_iface = iface;
  return p;
}

Rule rule(Target t, std::string comment = "") {
  Rule r;
  r.target = std::move(t);
  r.comment = std::move(comment);
  return r;
}

Rule tcp(Target t) {
  Rule r = rule(std::move(t));
  r.proto = Proto::Tcp;
  return r;
}

const Rule kRet = rule(Verdict{Verdict::Return});

RulePlan plan_of(Family f, std::vector<Table> tables) {
  return RulePlan{{Ruleset{f, std::move(tables)}}, {}};
}

// The common shape: a built-in chain's single jump into a weir chain.
Table table(std::string name, std::string builtin, std::vector<Chain> weir_chains) {
  Table t{name, {}};
  t.chains.push_back(Chain{builtin, {rule(Jump{weir_chains.at(0).name})}});
  for (auto& c : weir_chains) t.chains.push_back(std::move(c));
  return t;
}

}  // namespace

TEST_CASE("rule_matches: addresses, with negation and families") {
  const Packet p = outbound("198.18.0.2", "198.18.1.1", 80);
  Rule r = rule(Verdict{});
  r.dst = ip("198.18.1.0/24");
  CHECK(rule_matches(r, p));
  r.dst_negated = true;
  CHECK_FALSE(rule_matches(r, p));
  r.dst = ip("127.0.0.1");
  CHECK(rule_matches(r, p));
  r = rule(Verdict{});
  r.src = ip("198.18.0.0/15");
  CHECK(rule_matches(r, p));
  r.src = ip("127.0.0.6");
  CHECK_FALSE(rule_matches(r, p));
  r.src = ip("fd00::/8");  // other family never matches
  CHECK_FALSE(rule_matches(r, p));
  r = rule(Verdict{});
  r.src = ip("0.0.0.0/0");
  CHECK(rule_matches(r, p));
}

TEST_CASE("rule_matches: interfaces, '+' wildcard, negation and defaults") {
  Packet in = inbound("198.18.1.1", "198.18.0.2", 8080, "veth12");
  Rule r = rule(Verdict{});
  r.in_iface = "veth12";
  CHECK(rule_matches(r, in));
  r.in_iface = "veth1";
  CHECK_FALSE(rule_matches(r, in));
  r.in_iface = "veth+";
  CHECK(rule_matches(r, in));
  r.in_iface = "eth+";
  CHECK_FALSE(rule_matches(r, in));
  r.in_negated = true;
  CHECK(rule_matches(r, in));
  // No out device at prerouting: "-o lo" fails, "! -o lo" matches.
  r = rule(Verdict{});
  r.out_iface = "lo";
  CHECK_FALSE(rule_matches(r, in));
  r.out_negated = true;
  CHECK(rule_matches(r, in));

  // At output an empty out_iface means lo for loopback, eth0 otherwise.
  r = rule(Verdict{});
  r.out_iface = "lo";
  CHECK(rule_matches(r, outbound("198.18.0.2", "127.0.0.1", 80)));
  CHECK(rule_matches(r, outbound("::1", "::1", 80)));
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80)));
  Packet own = outbound("198.18.0.2", "198.18.0.2", 80);
  own.out_iface = "lo";
  CHECK(rule_matches(r, own));
  r.out_iface = "eth0";
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80)));
}

TEST_CASE("rule_matches: protocol and ports") {
  Packet p = outbound("198.18.0.2", "198.18.1.1", 8080);
  Rule r = rule(Verdict{});
  r.proto = Proto::Udp;
  CHECK_FALSE(rule_matches(r, p));
  r.proto_negated = true;
  CHECK(rule_matches(r, p));

  r = tcp(Verdict{});
  r.dport = PortMatch{{8000, 8100}, false};
  CHECK(rule_matches(r, p));
  r.dport = PortMatch{{8081, 8100}, false};
  CHECK_FALSE(rule_matches(r, p));
  r.dport = PortMatch{{8081, 8100}, true};
  CHECK(rule_matches(r, p));
  r.dport = PortMatch{{8080, 8080}, true};
  CHECK_FALSE(rule_matches(r, p));
  r.dport.reset();
  r.sport = PortMatch{{40000, 40000}, false};
  CHECK(rule_matches(r, p));
  r.sport = PortMatch{{1, 1024}, false};
  CHECK_FALSE(rule_matches(r, p));

  // A port match is a tcp (or udp) match: a udp packet never matches it,
  // not even a negated one.
  Packet u = p;
  u.proto = Proto::Udp;
  r = tcp(Verdict{});
  r.dport = PortMatch{{53, 53}, true};
  CHECK(rule_matches(r, p));
  CHECK_FALSE(rule_matches(r, u));
  // Ports without -p (which the kernel would refuse) never match.
  r.proto = Proto::Any;
  CHECK_FALSE(rule_matches(r, p));
}

TEST_CASE("rule_matches: multiport lists with ranges and negation") {
  Rule r = tcp(Verdict{});
  r.multiport = Multiport{{{53, 53}, {15008, 15008}, {9000, 9100}}, false};
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 53)));
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 15008)));
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 9050)));
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 9101)));
  r.multiport->negated = true;
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 53)));
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80)));
}

TEST_CASE("rule_matches: owner, including packets without a socket") {
  Rule r = rule(Verdict{});
  r.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80, 1337)));
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80, 1000)));
  r.owner->negated = true;
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80, 1337)));
  CHECK(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80, 1000)));

  Packet gid_only = outbound("198.18.0.2", "198.18.1.1", 80, 1000);
  gid_only.gid = 1337;
  r.owner = Owner{Owner::Kind::Gid, 1337, false};
  CHECK(rule_matches(r, gid_only));
  r.owner->kind = Owner::Kind::Uid;
  CHECK_FALSE(rule_matches(r, gid_only));

  // No socket (xt_owner): a positive match fails, a negated one matches.
  const Packet none = outbound("198.18.0.2", "198.18.1.1", 80, std::nullopt);
  r.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK_FALSE(rule_matches(r, none));
  r.owner->negated = true;
  CHECK(rule_matches(r, none));
  // At prerouting there is never a socket, whatever uid the caller gave.
  Packet in = inbound("198.18.1.1", "198.18.0.2", 80);
  in.uid = 1337;
  r.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK_FALSE(rule_matches(r, in));
}

TEST_CASE("rule_matches: conntrack state, mark and connmark") {
  Packet p = inbound("198.18.1.1", "198.18.0.2", 8080);
  Rule r = rule(Verdict{});
  r.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
  CHECK_FALSE(rule_matches(r, p));
  p.ct_state = Packet::CtState::Established;
  CHECK(rule_matches(r, p));
  p.ct_state = Packet::CtState::Related;
  CHECK(rule_matches(r, p));
  r.conntrack->negated = true;
  CHECK_FALSE(rule_matches(r, p));
  r.conntrack = Conntrack{Conntrack::kInvalid, false};
  p.ct_state = Packet::CtState::Invalid;
  CHECK(rule_matches(r, p));

  p = inbound("198.18.1.1", "198.18.0.2", 8080);
  p.mark = 0x10539;
  r = rule(Verdict{});
  r.mark = MarkMatch{0x539, 0xffffffff, false};
  CHECK_FALSE(rule_matches(r, p));
  r.mark->mask = 0xffff;
  CHECK(rule_matches(r, p));
  r.mark->negated = true;
  CHECK_FALSE(rule_matches(r, p));

  r = rule(Verdict{});
  r.connmark = MarkMatch{1337, 0xffffffff, false};
  CHECK_FALSE(rule_matches(r, p));
  p.connmark = 1337;
  CHECK(rule_matches(r, p));
  r.connmark->negated = true;
  CHECK_FALSE(rule_matches(r, p));
  // An INVALID packet has no conntrack entry: connmark fails, negated too.
  p.ct_state = Packet::CtState::Invalid;
  p.connmark = 0;
  CHECK_FALSE(rule_matches(r, p));
}

TEST_CASE("rule_matches: unknown matches cannot be evaluated") {
  Rule r = rule(Verdict{});
  r.unknown_matches = {"socket"};
  CHECK_FALSE(rule_matches(r, outbound("198.18.0.2", "198.18.1.1", 80)));
  const auto plan = plan_of(Family::V4, {table("nat", "OUTPUT", {Chain{"WEIR_OUTPUT", {r}}})});
  const auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80));
  REQUIRE(e.steps.size() == 2);
  CHECK_FALSE(e.steps[1].matched);
  CHECK(e.steps[1].effect.find("cannot evaluate -m socket") != std::string::npos);
}

TEST_CASE("explain: jump, RETURN and implicit return") {
  Rule ret_uid = kRet;
  ret_uid.owner = Owner{Owner::Kind::Uid, 1337, false};
  ret_uid.comment = "proxy's own traffic, uid 1337";
  Rule to_sub = rule(Jump{"WEIR_SUB"});
  Rule redirect = tcp(Redirect{15001});
  redirect.comment = "outbound capture";
  Rule nothing = tcp(Verdict{Verdict::Drop});
  nothing.dport = PortMatch{{1, 1}, false};
  const auto plan = plan_of(
      Family::V4, {table("nat", "OUTPUT",
                         {Chain{"WEIR_OUTPUT", {ret_uid, to_sub, redirect}}, Chain{"WEIR_SUB", {nothing}}})});

  auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80, 1000));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.verdict.port == 15001);
  CHECK(e.verdict.decided_by == "nat WEIR_OUTPUT rule 3");
  CHECK(e.summary == "redirected to port 15001 by nat WEIR_OUTPUT rule 3 (outbound capture)");
  // OUTPUT#1, WEIR_OUTPUT#1, #2, WEIR_SUB#1 (off the end: back), WEIR_OUTPUT#3
  REQUIRE(e.steps.size() == 5);
  CHECK(e.steps[0].chain == "OUTPUT");
  CHECK(e.steps[0].effect == "jump to WEIR_OUTPUT");
  CHECK_FALSE(e.steps[1].matched);
  CHECK(e.steps[1].effect.find("--uid-owner 1337: uid is 1000") != std::string::npos);
  CHECK(e.steps[3].chain == "WEIR_SUB");
  CHECK(e.steps[4].rule == 3);

  e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80, 1337));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.verdict.decided_by == "nat WEIR_OUTPUT rule 1");
  CHECK(e.summary == "passed untouched: RETURN at nat WEIR_OUTPUT rule 1 (proxy's own traffic, uid 1337)");
  CHECK(e.steps.size() == 2);

  e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 1, 1000));
  CHECK(e.verdict.kind == ExplainVerdict::Dropped);
  CHECK(e.verdict.decided_by == "nat WEIR_SUB rule 1");
}

TEST_CASE("explain: RETURN from a nested chain goes back to its caller") {
  Rule exclude = kRet;
  exclude.dst = ip("198.18.1.0/24");
  exclude.comment = "excluded outbound CIDR";
  const auto plan = plan_of(
      Family::V4, {table("nat", "OUTPUT",
                         {Chain{"WEIR_OUTPUT", {rule(Jump{"WEIR_OUTBOUND"}), tcp(Redirect{15001})}},
                          Chain{"WEIR_OUTBOUND", {exclude, rule(Jump{"WEIR_REDIRECT"})}},
                          Chain{"WEIR_REDIRECT", {tcp(Redirect{15002})}}})});
  auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.verdict.port == 15001);  // came back to WEIR_OUTPUT rule 2
  CHECK(e.steps[2].effect == "RETURN to WEIR_OUTPUT");
  e = explain(plan, outbound("198.18.0.2", "198.18.2.1", 80));
  CHECK(e.verdict.port == 15002);
}

TEST_CASE("explain: tables in order raw, mangle, nat; ACCEPT ends only its table") {
  Rule zone = rule(CtZone{2});
  zone.proto = Proto::Udp;
  Rule accept = rule(Verdict{Verdict::Accept});
  accept.comment = "let it be";
  const auto plan = plan_of(Family::V4, {
                                            table("nat", "OUTPUT", {Chain{"WEIR_OUTPUT", {rule(Redirect{15053})}}}),
                                            table("mangle", "OUTPUT", {Chain{"WEIR_OUTPUT", {accept}}}),
                                            table("raw", "OUTPUT", {Chain{"WEIR_OUTPUT", {zone}}}),
                                        });
  Packet p = outbound("198.18.0.2", "198.18.1.1", 53);
  p.proto = Proto::Udp;
  const auto e = explain(plan, p);
  REQUIRE(e.steps.size() == 6);
  CHECK(e.steps[0].table == "raw");
  CHECK(e.steps[1].effect == "conntrack zone 2");
  CHECK(e.steps[2].table == "mangle");
  CHECK(e.steps[3].effect == "ACCEPT: ends the mangle table");
  CHECK(e.steps[4].table == "nat");
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.verdict.port == 15053);
}

TEST_CASE("explain: nat only for NEW connections, and not for packets looped back over lo") {
  const auto plan = plan_of(Family::V4, {table("nat", "PREROUTING", {Chain{"WEIR_INBOUND", {tcp(Redirect{15006})}}})});
  Packet p = inbound("198.18.1.1", "198.18.0.2", 8080);
  CHECK(explain(plan, p).verdict.kind == ExplainVerdict::Redirected);
  p.ct_state = Packet::CtState::Established;
  auto e = explain(plan, p);
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.steps.empty());
  CHECK(e.summary == "passed untouched: no weir rule matched");
  bool noted = false;
  for (const auto& n : e.notes) noted = noted || n.find("nat table not consulted") != std::string::npos;
  CHECK(noted);
  p = inbound("198.18.0.2", "198.18.0.2", 8080, "lo");
  CHECK(explain(plan, p).verdict.kind == ExplainVerdict::Untouched);
}

TEST_CASE("explain: TPROXY, MARK and CONNMARK in mangle") {
  Rule restore = tcp(Connmark{Connmark::Restore});
  Rule established = tcp(Jump{"WEIR_DIVERT"});
  established.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
  Rule tproxy = tcp(Tproxy{15006, 1337, 0xffffffff});
  tproxy.dst = ip("127.0.0.1");
  tproxy.dst_negated = true;
  tproxy.comment = "to the proxy's inbound port";
  Rule save = tcp(Connmark{Connmark::Save});
  save.mark = MarkMatch{1337, 0xffffffff, false};
  Table mangle{"mangle",
               {Chain{"PREROUTING", {rule(Jump{"WEIR_INBOUND"}), save}},
                Chain{"WEIR_INBOUND", {restore, established, tproxy}},
                Chain{"WEIR_DIVERT", {rule(SetMark{1337, 0xffffffff}), rule(Verdict{Verdict::Accept})}}}};
  const auto plan = plan_of(Family::V4, {mangle});

  Packet p = inbound("198.18.1.1", "198.18.0.2", 8080);
  auto e = explain(plan, p);
  CHECK(e.verdict.kind == ExplainVerdict::Tproxied);
  CHECK(e.verdict.port == 15006);
  CHECK(e.verdict.mark == 1337);
  CHECK(e.verdict.decided_by == "mangle WEIR_INBOUND rule 3");
  CHECK(e.summary == "TPROXY to port 15006 with mark 0x539 by mangle WEIR_INBOUND rule 3 (to the proxy's inbound port)");

  // Established: restore (connmark 0 -> mark 0), divert marks and accepts,
  // then back in PREROUTING? No: ACCEPT ends the table, so save never runs.
  p.ct_state = Packet::CtState::Established;
  e = explain(plan, p);
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.verdict.decided_by == "mangle WEIR_DIVERT rule 2");
  CHECK(e.verdict.mark == 1337);
  CHECK(e.steps.back().effect == "ACCEPT: ends the mangle table");
  CHECK(e.steps[3].effect == "mark set to 0x539");

  // Restore copies the connection's mark; the save rule then sees it.
  Table mangle2{"mangle", {Chain{"PREROUTING", {restore, save}}}};
  p.connmark = 0x539;
  e = explain(plan_of(Family::V4, {mangle2}), p);
  CHECK(e.steps[0].effect == "mark set to connmark 0x539");
  CHECK(e.steps[1].matched);
  CHECK(e.steps[1].effect == "connmark set to mark 0x539");

  // MARK with a mask keeps the other bits.
  Table mangle3{"mangle", {Chain{"PREROUTING", {rule(SetMark{0x2, 0xf}), rule(Tproxy{15006, 0x100, 0xf00})}}}};
  p.mark = 0xf0f1;
  e = explain(plan_of(Family::V4, {mangle3}), p);
  CHECK(e.verdict.mark == 0xf1f2);
}

TEST_CASE("explain: the raw table runs before conntrack") {
  Rule est = rule(CtZone{1});
  est.conntrack = Conntrack{Conntrack::kEstablished, false};
  Rule inv = rule(CtZone{2});
  inv.conntrack = Conntrack{Conntrack::kInvalid, false};
  const auto plan = plan_of(Family::V4, {Table{"raw", {Chain{"PREROUTING", {est, inv}}}}});
  Packet p = inbound("198.18.1.1", "198.18.0.2", 8080);
  p.ct_state = Packet::CtState::Established;
  auto e = explain(plan, p);
  REQUIRE(e.steps.size() == 2);
  CHECK_FALSE(e.steps[0].matched);
  CHECK(e.steps[1].matched);
  // A packet looped back over lo keeps its entry.
  p.in_iface = "lo";
  e = explain(plan, p);
  CHECK(e.steps[0].matched);
}

TEST_CASE("explain: RELATED and INVALID packets skip nat; conntrack-less tables") {
  const auto plan = plan_of(Family::V4, {table("nat", "OUTPUT", {Chain{"WEIR_OUTPUT", {tcp(Redirect{15001})}}})});
  Packet p = outbound("198.18.0.2", "198.18.1.1", 80);
  for (auto st : {Packet::CtState::Related, Packet::CtState::Invalid, Packet::CtState::Established}) {
    p.ct_state = st;
    CHECK(explain(plan, p).verdict.kind == ExplainVerdict::Untouched);
  }

  // In raw there is no conntrack entry yet: CONNMARK does nothing and a
  // connmark match fails even when negated.
  Rule save = rule(Connmark{Connmark::Save});
  Rule neg = rule(Verdict{Verdict::Drop});
  neg.connmark = MarkMatch{1, 0xffffffff, true};
  const auto raw = plan_of(Family::V4, {Table{"raw", {Chain{"OUTPUT", {save, neg}}}},
                                        Table{"mangle", {Chain{"OUTPUT", {neg}}}}});
  p = outbound("198.18.0.2", "198.18.1.1", 80);
  p.mark = 7;
  const auto e = explain(raw, p);
  REQUIRE(e.steps.size() == 3);
  CHECK(e.steps[0].effect == "CONNMARK: no conntrack entry, nothing done");
  CHECK(e.steps[1].effect == "no match: -m connmark ! --mark 0x1: no conntrack entry");
  CHECK(e.steps[2].table == "mangle");
  CHECK(e.verdict.kind == ExplainVerdict::Dropped);  // mangle has the entry: connmark 0 != 1
}

TEST_CASE("explain: unknown targets are noted and the walk goes on") {
  const auto plan = plan_of(Family::V4, {table("nat", "OUTPUT",
                                               {Chain{"WEIR_A", {rule(UnknownTarget{"LOG"}), rule(Redirect{15001})}}})});
  const auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.steps[1].effect.find("target LOG not evaluated") != std::string::npos);
  bool noted = false;
  for (const auto& n : e.notes) noted = noted || n.find("unknown target LOG") != std::string::npos;
  CHECK(noted);
  CHECK(to_json(e)["notes"].size() == e.notes.size());
  CHECK(render_explanation(e).find("note: nat WEIR_A rule 1: unknown target LOG") != std::string::npos);
}

TEST_CASE("explain: loops and missing chains are reported, not followed forever") {
  const auto loop = plan_of(Family::V4, {table("nat", "OUTPUT",
                                               {Chain{"WEIR_A", {rule(Jump{"WEIR_B"})}},
                                                Chain{"WEIR_B", {rule(Jump{"WEIR_A"})}}})});
  auto e = explain(loop, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.verdict.decided_by == "undecided");
  CHECK(e.summary.rfind("cannot tell: walk stopped", 0) == 0);
  CHECK(e.steps.size() <= 40);

  const auto missing = plan_of(Family::V4, {table("nat", "OUTPUT",
                                                  {Chain{"WEIR_A", {rule(Jump{"ISTIO_X"}), rule(Redirect{15001})}}})});
  e = explain(missing, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.steps[1].effect.find("not walked") != std::string::npos);
}

TEST_CASE("explain: a family the plan does not cover passes untouched") {
  const auto plan = plan_of(Family::V4, {table("nat", "OUTPUT", {Chain{"WEIR_A", {rule(Redirect{15001})}}})});
  const auto e = explain(plan, outbound("fd00::2", "fd00::1:1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.summary == "passed untouched: weir has no ipv6 rules, so ipv6 traffic is not captured");
}

TEST_CASE("render_explanation and to_json carry the packet, the steps and the verdict") {
  Rule ret_uid = kRet;
  ret_uid.owner = Owner{Owner::Kind::Uid, 1337, false};
  ret_uid.comment = "proxy's own traffic";
  const auto plan = plan_of(Family::V6, {table("nat", "OUTPUT", {Chain{"WEIR_OUTPUT", {ret_uid, tcp(Redirect{15001})}}})});
  const auto e = explain(plan, outbound("fd00::2", "fd00::1:1", 443, 1000));
  const std::string text = render_explanation(e);
  INFO(text);
  CHECK(text.find("packet: ipv6 tcp [fd00::2]:40000 -> [fd00::1:1]:443, output via eth0, uid 1000, gid 1000, ctstate NEW") ==
        0);
  CHECK(text.find("table nat:\n  match -A OUTPUT -j WEIR_OUTPUT\n        => jump to WEIR_OUTPUT\n") != std::string::npos);
  CHECK(text.find("\n    skip  -A WEIR_OUTPUT -m owner --uid-owner 1337") != std::string::npos);
  CHECK(text.find("\n    match -A WEIR_OUTPUT -p tcp -j REDIRECT --to-ports 15001\n") != std::string::npos);
  CHECK(text.find("no match: --uid-owner 1337: uid is 1000") != std::string::npos);
  CHECK(text.find("verdict: redirected to port 15001 by nat WEIR_OUTPUT rule 2\n") != std::string::npos);
  for (char c : text) CHECK(static_cast<unsigned char>(c) < 0x80);

  const auto j = to_json(e);
  CHECK(j["packet"]["dst"] == "fd00::1:1");
  CHECK(j["packet"]["uid"] == 1000);
  CHECK(j["packet"]["outIface"] == "eth0");
  CHECK(j["steps"].size() == 3);
  CHECK(j["steps"][1]["matched"] == false);
  CHECK(j["steps"][2]["effect"] == "REDIRECT to port 15001");
  CHECK(j["verdict"]["kind"] == "redirected");
  CHECK(j["verdict"]["port"] == 15001);
  CHECK(j["verdict"]["decidedBy"] == "nat WEIR_OUTPUT rule 2");
  CHECK(j["summary"] == e.summary);
}

// Flows against the planner's rules: the reference sidecar semantics
// (CAPTURE.md) and the other modes, checked by verdict, with the walk printed
// when a check fails.
namespace {

struct Expect {
  ExplainVerdict::Kind kind;
  uint16_t port = 0;
};

void check_flow(const RulePlan& plan, const Packet& p, Expect want, const char* decided_in = nullptr) {
  const auto e = explain(plan, p);
  INFO(render_explanation(e));
  CHECK(e.verdict.kind == want.kind);
  CHECK(e.verdict.port == want.port);
  if (decided_in != nullptr) CHECK(e.verdict.decided_by.find(decided_in) != std::string::npos);
}

Packet with_uid_gid(Packet p, uint32_t uid, uint32_t gid) {
  p.uid = uid;
  p.gid = gid;
  return p;
}

Packet via_lo(Packet p) {
  p.out_iface = "lo";
  return p;
}

const Expect kUntouched{ExplainVerdict::Untouched};
Expect redirected(uint16_t port) { return {ExplainVerdict::Redirected, port}; }

struct Addrs {
  const char* pod;
  const char* peer;
  const char* loopback;
  const char* passthrough;
};
const Addrs kV4{"198.18.0.2", "198.18.1.1", "127.0.0.1", "127.0.0.6"};
const Addrs kV6{"fd00::2", "fd00::1:1", "::1", "::6"};

}  // namespace

TEST_CASE("explain on plan(CaptureSpec{}): the reference sidecar capture, IPv4 and IPv6") {
  const RulePlan plan = weir::plan(CaptureSpec{});
  for (const Addrs& a : {kV4, kV6}) {
    CAPTURE(a.pod);
    // Inbound TCP to an ordinary port goes to the inbound port.
    check_flow(plan, inbound(a.peer, a.pod, 8080), redirected(15006), "nat WEIR_IN_REDIRECT rule 1");
    check_flow(plan, inbound(a.peer, a.pod, 22), redirected(15006));
    // The tunnel port and the default inbound excludes are not captured.
    for (uint16_t port : {15008, 15020, 15021, 15090}) {
      CAPTURE(port);
      check_flow(plan, inbound(a.peer, a.pod, port), kUntouched, "nat WEIR_INBOUND");
    }
    // Inbound UDP is not captured.
    Packet udp_in = inbound(a.peer, a.pod, 8080);
    udp_in.proto = Proto::Udp;
    check_flow(plan, udp_in, kUntouched);

    // An application's outbound TCP goes to the outbound port.
    check_flow(plan, outbound(a.pod, a.peer, 80, 1000), redirected(15001), "nat WEIR_REDIRECT rule 1");
    check_flow(plan, outbound(a.pod, a.peer, 443, 0), redirected(15001));
    // The proxy's own traffic, by UID or by GID, goes out untouched.
    check_flow(plan, outbound(a.pod, a.peer, 80, 1337), kUntouched, "nat WEIR_OUTPUT");
    check_flow(plan, with_uid_gid(outbound(a.pod, a.peer, 80), 1000, 1337), kUntouched, "nat WEIR_OUTPUT");
    // Loopback is not captured, whoever sends it.
    check_flow(plan, outbound(a.loopback, a.loopback, 8080, 1000), kUntouched, "nat WEIR_OUTPUT");
    check_flow(plan, outbound(a.loopback, a.loopback, 8080, 1337), kUntouched, "nat WEIR_OUTPUT");
    // The proxy calling the pod's own address over lo is inbound...
    check_flow(plan, via_lo(outbound(a.pod, a.pod, 8080, 1337)), redirected(15006), "nat WEIR_IN_REDIRECT");
    check_flow(plan, via_lo(with_uid_gid(outbound(a.pod, a.pod, 8080), 1000, 1337)), redirected(15006));
    // ...except to the tunnel port, and except from the passthrough source.
    check_flow(plan, via_lo(outbound(a.pod, a.pod, 15008, 1337)), kUntouched);
    check_flow(plan, via_lo(outbound(a.passthrough, a.pod, 8080, 1337)), kUntouched, "nat WEIR_OUTPUT rule 1");
    // The application calling its own pod address over lo is not captured.
    check_flow(plan, via_lo(outbound(a.pod, a.pod, 8080, 1000)), kUntouched, "nat WEIR_OUTPUT");
    // Only TCP, only new connections.
    Packet udp_out = outbound(a.pod, a.peer, 53, 1000);
    udp_out.proto = Proto::Udp;
    check_flow(plan, udp_out, kUntouched);
    Packet est = outbound(a.pod, a.peer, 80, 1000);
    est.ct_state = Packet::CtState::Established;
    check_flow(plan, est, kUntouched);
  }

  // The summary says why, in the planner's words.
  auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80, 1337));
  CHECK(e.summary.rfind("passed untouched: RETURN at nat WEIR_OUTPUT rule ", 0) == 0);
  CHECK(e.summary.find("uid 1337") != std::string::npos);
  e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80, 1000));
  // The reason in brackets is the deciding rule's comment, whatever the planner says.
  const std::string& comment = plan.find(Family::V4)->find("nat")->find(chains::kRedirect)->rules.at(0).comment;
  REQUIRE_FALSE(comment.empty());
  CHECK(e.summary == "redirected to port 15001 by nat WEIR_REDIRECT rule 1 (" + comment + ")");
}

TEST_CASE("explain on planned specs: port and CIDR lists, interfaces") {
  CaptureSpec s;
  s.ip_families = IpFamilies::V4;
  s.inbound_ports = std::vector<PortRange>{{8080, 8080}, {9000, 9100}};
  s.exclude_outbound_cidrs = {ip("198.18.2.0/24")};
  s.outbound_cidrs = std::vector<Cidr>{ip("198.18.0.0/16")};
  s.exclude_outbound_ports = {{3306, 3306}};
  s.exclude_interfaces = {"eth9"};
  s.kube_virt_interfaces = {"kv0"};
  s.exclude_inbound_cidrs = {ip("198.18.7.0/24")};
  const RulePlan plan = weir::plan(s);

  check_flow(plan, inbound("198.18.1.1", "198.18.0.2", 8080), redirected(15006));
  check_flow(plan, inbound("198.18.1.1", "198.18.0.2", 9050), redirected(15006));
  check_flow(plan, inbound("198.18.1.1", "198.18.0.2", 8081), kUntouched);
  check_flow(plan, inbound("198.18.7.9", "198.18.0.2", 8080), kUntouched, "nat WEIR_INBOUND");
  check_flow(plan, inbound("198.18.1.1", "198.18.0.2", 8080, "eth9"), kUntouched, "nat WEIR_INBOUND rule 1");
  check_flow(plan, inbound("198.18.1.1", "198.18.0.2", 8080, "kv0"), redirected(15001));

  check_flow(plan, outbound("198.18.0.2", "198.18.1.1", 80), redirected(15001));
  check_flow(plan, outbound("198.18.0.2", "198.18.2.1", 80), kUntouched, "nat WEIR_OUTBOUND");
  check_flow(plan, outbound("198.18.0.2", "198.19.0.1", 80), kUntouched);  // not in the include list
  check_flow(plan, outbound("198.18.0.2", "198.18.1.1", 3306), kUntouched, "nat WEIR_OUTPUT rule 2");
  Packet out9 = outbound("198.18.0.2", "198.18.1.1", 80);
  out9.out_iface = "eth9";
  check_flow(plan, out9, kUntouched, "nat WEIR_OUTPUT rule 1");

  // Capture nothing inbound.
  s.inbound_ports = std::vector<PortRange>{};
  check_flow(weir::plan(s), inbound("198.18.1.1", "198.18.0.2", 8080), kUntouched);
}

TEST_CASE("explain on planned specs: several proxy UIDs and GIDs") {
  CaptureSpec s;
  s.proxy_uids = {1337, 1338};
  s.proxy_gids = {1337, 2000};
  const RulePlan plan = weir::plan(s);
  for (uint32_t uid : {1337u, 1338u}) {
    CAPTURE(uid);
    check_flow(plan, outbound("198.18.0.2", "198.18.1.1", 80, uid), kUntouched);
    check_flow(plan, via_lo(outbound("198.18.0.2", "198.18.0.2", 8080, uid)), redirected(15006));
    check_flow(plan, via_lo(outbound("fd00::2", "fd00::2", 8080, uid)), redirected(15006));
  }
  check_flow(plan, with_uid_gid(outbound("198.18.0.2", "198.18.1.1", 80), 1000, 2000), kUntouched);
  check_flow(plan, via_lo(with_uid_gid(outbound("198.18.0.2", "198.18.0.2", 80), 1000, 2000)), redirected(15006));
  check_flow(plan, outbound("198.18.0.2", "198.18.1.1", 80, 1000), redirected(15001));
}

TEST_CASE("explain on planned specs: DNS capture") {
  CaptureSpec s;
  s.dns.capture = true;
  const RulePlan plan = weir::plan(s);
  for (const Addrs& a : {kV4, kV6}) {
    CAPTURE(a.pod);
    for (Proto proto : {Proto::Udp, Proto::Tcp}) {
      Packet q = outbound(a.pod, a.peer, 53, 1000);
      q.proto = proto;
      check_flow(plan, q, redirected(15053), "nat WEIR_DNS");
      q.uid = q.gid = 1337;  // the proxy's own upstream query
      check_flow(plan, q, kUntouched);
    }
    // The query walks raw first and lands in conntrack zone 2.
    Packet q = outbound(a.pod, a.peer, 53, 1000);
    q.proto = Proto::Udp;
    const auto e = explain(plan, q);
    bool zone2 = false;
    for (const auto& st : e.steps) zone2 = zone2 || (st.table == "raw" && st.effect == "conntrack zone 2");
    CHECK(zone2);
    // The proxy calling its pod address on port 53 over lo is not inbound.
    check_flow(plan, via_lo(outbound(a.pod, a.pod, 53, 1337)), kUntouched);
  }

  // Only DNS to the given nameservers.
  s.dns.capture_all = false;
  s.dns.servers = {ip("198.18.5.5")};
  s.ip_families = IpFamilies::V4;
  Packet q = outbound("198.18.0.2", "198.18.5.5", 53, 1000);
  q.proto = Proto::Udp;
  check_flow(weir::plan(s), q, redirected(15053));
  q.dst = ip("198.18.5.6");
  check_flow(weir::plan(s), q, kUntouched);
}

TEST_CASE("explain on planned specs: TPROXY inbound and drop invalid") {
  CaptureSpec s;
  s.mode = InboundMode::Tproxy;
  s.drop_invalid = true;
  const RulePlan plan = weir::plan(s);
  for (const Addrs& a : {kV4, kV6}) {
    CAPTURE(a.pod);
    auto e = explain(plan, inbound(a.peer, a.pod, 8080));
    INFO(render_explanation(e));
    CHECK(e.verdict.kind == ExplainVerdict::Tproxied);
    CHECK(e.verdict.port == 15006);
    CHECK(e.verdict.mark == 1337);
    CHECK(e.verdict.decided_by == "mangle WEIR_TPROXY rule 1");
    check_flow(plan, inbound(a.peer, a.pod, 15020), kUntouched);
    check_flow(plan, inbound(a.peer, a.pod, 15008), kUntouched);

    // Established inbound: marked for the route table and accepted.
    Packet est = inbound(a.peer, a.pod, 8080);
    est.ct_state = Packet::CtState::Established;
    e = explain(plan, est);
    CHECK(e.verdict.kind == ExplainVerdict::Untouched);
    CHECK(e.verdict.mark == 1337);
    CHECK(e.verdict.decided_by == "mangle WEIR_DIVERT rule 2");

    Packet invalid = inbound(a.peer, a.pod, 8080);
    invalid.ct_state = Packet::CtState::Invalid;
    check_flow(plan, invalid, {ExplainVerdict::Dropped}, "mangle WEIR_INBOUND");

    // The proxy to the pod's address over lo: marked 1338 at output...
    e = explain(plan, via_lo(outbound(a.pod, a.pod, 8080, 1337)));
    CHECK(e.verdict.mark == 1338);
    // ...and on its way back in over lo that mark sends it to TPROXY.
    Packet back = inbound(a.pod, a.pod, 8080, "lo");
    back.mark = 1338;
    check_flow(plan, back, {ExplainVerdict::Tproxied, 15006});
    back.mark = 0;  // an application's own lo traffic
    check_flow(plan, back, kUntouched);
    Packet pass = inbound(a.passthrough, a.pod, 8080, "lo");
    pass.mark = 1338;
    check_flow(plan, pass, kUntouched);

    // Outbound still goes through nat.
    check_flow(plan, outbound(a.pod, a.peer, 80, 1000), redirected(15001));
  }
}

TEST_CASE("explain: a packet to the pod's own address leaves by lo unless told otherwise") {
  RulePlan plan = weir::plan(CaptureSpec{});
  Packet p;
  p.family = Family::V4;
  p.hook = Packet::Hook::Output;
  p.proto = Proto::Tcp;
  p.src = *parse_cidr("198.18.0.1");
  p.dst = *parse_cidr("198.18.0.1");
  p.sport = 40000;
  p.dport = 8080;
  p.uid = 1000;
  p.gid = 1000;
  Explanation app = explain(plan, p);
  CHECK(app.packet.out_iface == "lo");
  CHECK(app.verdict.kind == ExplainVerdict::Untouched);  // the application talking to itself
  p.uid = p.gid = 1337;
  Explanation proxy = explain(plan, p);
  CHECK(proxy.verdict.kind == ExplainVerdict::Redirected);  // the proxy's lo traffic is inbound
  CHECK(proxy.verdict.port == 15006);
}

}  // namespace weir

