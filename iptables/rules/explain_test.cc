#include "rules/explain.h"
#include "rules/plan.h"
#include "rules/xtables/lower.h"

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

// One CIDR, as the planner's sets of one are.
CidrSet net(const char* text, bool negated = false) { return CidrSet{{ip(text)}, negated}; }

Step rule(Action t, std::string reason = "") {
  Step r;
  r.action = std::move(t);
  r.reason = std::move(reason);
  return r;
}

Step tcp(Action t) {
  Step r = rule(std::move(t));
  r.match.proto = Proto::Tcp;
  return r;
}

const Step kRet = rule(Verdict{Verdict::Return});

// A chain named after its hook (PREROUTING, OUTPUT) is a base chain.
PolicyChain chain(std::string name, std::vector<Step> steps) {
  std::optional<Hook> hook;
  if (name == "PREROUTING") hook = Hook::Prerouting;
  if (name == "OUTPUT") hook = Hook::Output;
  return PolicyChain{std::move(name), hook, std::move(steps), 0};
}

CapturePolicy plan_of(Family f, std::vector<StagePolicy> stages) {
  return CapturePolicy{{FamilyPolicy{f, std::move(stages)}}, {}};
}

// The common shape: a base chain's single jump into a regular chain.
StagePolicy stage(Stage s, std::string base, std::vector<PolicyChain> regular) {
  StagePolicy st{s, {}};
  st.chains.push_back(chain(base, {rule(Jump{regular.at(0).name})}));
  for (auto& c : regular) st.chains.push_back(std::move(c));
  return st;
}

// The planner's policy at xtables granularity, as the libiptc filter reads it
// back: what weir explain walks.
CapturePolicy planned(const CaptureSpec& s) { return xtables::canonical(capture_policy(s)); }

}  // namespace

TEST_CASE("matches: addresses, with negation and families") {
  const Packet p = outbound("198.18.0.2", "198.18.1.1", 80);
  Step r = rule(Verdict{});
  r.match.dst = net("198.18.1.0/24");
  CHECK(matches(r.match, p));
  r.match.dst->negated = true;
  CHECK_FALSE(matches(r.match, p));
  r.match.dst = net("127.0.0.1", true);  // still negated
  CHECK(matches(r.match, p));
  r = rule(Verdict{});
  r.match.src = net("198.18.0.0/15");
  CHECK(matches(r.match, p));
  r.match.src = net("127.0.0.6");
  CHECK_FALSE(matches(r.match, p));
  r.match.src = net("fd00::/8");  // other family never matches
  CHECK_FALSE(matches(r.match, p));
  r = rule(Verdict{});
  r.match.src = net("0.0.0.0/0");
  CHECK(matches(r.match, p));
}

TEST_CASE("matches: interfaces, '+' wildcard, negation and defaults") {
  Packet in = inbound("198.18.1.1", "198.18.0.2", 8080, "veth12");
  Step r = rule(Verdict{});
  r.match.in = IfaceMatch{"veth12"};
  CHECK(matches(r.match, in));
  r.match.in = IfaceMatch{"veth1"};
  CHECK_FALSE(matches(r.match, in));
  r.match.in = IfaceMatch{"veth+"};
  CHECK(matches(r.match, in));
  r.match.in = IfaceMatch{"eth+"};
  CHECK_FALSE(matches(r.match, in));
  r.match.in->negated = true;
  CHECK(matches(r.match, in));
  // No out device at prerouting: "-o lo" fails, "! -o lo" matches.
  r = rule(Verdict{});
  r.match.out = IfaceMatch{"lo"};
  CHECK_FALSE(matches(r.match, in));
  r.match.out->negated = true;
  CHECK(matches(r.match, in));

  // At output an empty out_iface means lo for loopback, eth0 otherwise.
  r = rule(Verdict{});
  r.match.out = IfaceMatch{"lo"};
  CHECK(matches(r.match, outbound("198.18.0.2", "127.0.0.1", 80)));
  CHECK(matches(r.match, outbound("::1", "::1", 80)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));
  Packet own = outbound("198.18.0.2", "198.18.0.2", 80);
  own.out_iface = "lo";
  CHECK(matches(r.match, own));
  r.match.out = IfaceMatch{"eth0"};
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));
}

TEST_CASE("matches: protocol and ports") {
  Packet p = outbound("198.18.0.2", "198.18.1.1", 8080);
  Step r = rule(Verdict{});
  r.match.proto = Proto::Udp;
  CHECK_FALSE(matches(r.match, p));
  r.match.proto_negated = true;
  CHECK(matches(r.match, p));

  r = tcp(Verdict{});
  r.match.dport = PortSet{{{8000, 8100}}, false};
  CHECK(matches(r.match, p));
  r.match.dport = PortSet{{{8081, 8100}}, false};
  CHECK_FALSE(matches(r.match, p));
  r.match.dport = PortSet{{{8081, 8100}}, true};
  CHECK(matches(r.match, p));
  r.match.dport = PortSet{{{8080, 8080}}, true};
  CHECK_FALSE(matches(r.match, p));
  r.match.dport.reset();
  r.match.sport = PortSet{{{40000, 40000}}, false};
  CHECK(matches(r.match, p));
  r.match.sport = PortSet{{{1, 1024}}, false};
  CHECK_FALSE(matches(r.match, p));

  // A port match is a tcp (or udp) match: a udp packet never matches it,
  // not even a negated one.
  Packet u = p;
  u.proto = Proto::Udp;
  r = tcp(Verdict{});
  r.match.dport = PortSet{{{53, 53}}, true};
  CHECK(matches(r.match, p));
  CHECK_FALSE(matches(r.match, u));
  // Ports without -p (which the kernel would refuse) never match.
  r.match.proto = Proto::Any;
  CHECK_FALSE(matches(r.match, p));
}

TEST_CASE("matches: multiport lists with ranges and negation") {
  Step r = tcp(Verdict{});
  r.match.dport = PortSet{{{53, 53}, {15008, 15008}, {9000, 9100}}, false};
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 53)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 15008)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 9050)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 9101)));
  r.match.dport->negated = true;
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 53)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));
}

TEST_CASE("matches: owner, including packets without a socket") {
  Step r = rule(Verdict{});
  r.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80, 1337)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80, 1000)));
  r.match.owner->negated = true;
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80, 1337)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80, 1000)));

  Packet gid_only = outbound("198.18.0.2", "198.18.1.1", 80, 1000);
  gid_only.gid = 1337;
  r.match.owner = Owner{Owner::Kind::Gid, 1337, false};
  CHECK(matches(r.match, gid_only));
  r.match.owner->kind = Owner::Kind::Uid;
  CHECK_FALSE(matches(r.match, gid_only));

  // No socket (xt_owner): a positive match fails, a negated one matches.
  const Packet none = outbound("198.18.0.2", "198.18.1.1", 80, std::nullopt);
  r.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK_FALSE(matches(r.match, none));
  r.match.owner->negated = true;
  CHECK(matches(r.match, none));
  // At prerouting there is never a socket, whatever uid the caller gave.
  Packet in = inbound("198.18.1.1", "198.18.0.2", 80);
  in.uid = 1337;
  r.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  CHECK_FALSE(matches(r.match, in));
}

TEST_CASE("matches: conntrack state, mark and connmark") {
  Packet p = inbound("198.18.1.1", "198.18.0.2", 8080);
  Step r = rule(Verdict{});
  r.match.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
  CHECK_FALSE(matches(r.match, p));
  p.ct_state = Packet::CtState::Established;
  CHECK(matches(r.match, p));
  p.ct_state = Packet::CtState::Related;
  CHECK(matches(r.match, p));
  r.match.conntrack->negated = true;
  CHECK_FALSE(matches(r.match, p));
  r.match.conntrack = Conntrack{Conntrack::kInvalid, false};
  p.ct_state = Packet::CtState::Invalid;
  CHECK(matches(r.match, p));

  p = inbound("198.18.1.1", "198.18.0.2", 8080);
  p.mark = 0x10539;
  r = rule(Verdict{});
  r.match.mark = MarkMatch{0x539, 0xffffffff, false};
  CHECK_FALSE(matches(r.match, p));
  r.match.mark->mask = 0xffff;
  CHECK(matches(r.match, p));
  r.match.mark->negated = true;
  CHECK_FALSE(matches(r.match, p));

  r = rule(Verdict{});
  r.match.connmark = MarkMatch{1337, 0xffffffff, false};
  CHECK_FALSE(matches(r.match, p));
  p.connmark = 1337;
  CHECK(matches(r.match, p));
  r.match.connmark->negated = true;
  CHECK_FALSE(matches(r.match, p));
  // An INVALID packet has no conntrack entry: connmark fails, negated too.
  p.ct_state = Packet::CtState::Invalid;
  p.connmark = 0;
  CHECK_FALSE(matches(r.match, p));
}

TEST_CASE("matches: port sets of any size, with ranges and negation") {
  // 40 ports and 3 ranges: more than one multiport match holds (15).
  Step r = tcp(Verdict{});
  r.match.dport = PortSet{};
  for (uint16_t port = 2000; port < 2080; port += 2) r.match.dport->ports.push_back({port, port});
  r.match.dport->ports.push_back({9000, 9100});
  r.match.dport->ports.push_back({15000, 15010});
  r.match.dport->ports.push_back({60000, 60000});
  REQUIRE(r.match.dport->ports.size() > kMultiportMaxPorts);
  for (uint16_t port : {2000, 2040, 2078, 9000, 9055, 9100, 15005, 60000}) {
    CAPTURE(port);
    CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", port)));
  }
  for (uint16_t port : {1999, 2001, 2079, 2080, 8999, 9101, 15011, 59999, 80}) {
    CAPTURE(port);
    CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", port)));
  }
  // Negated: in none of them.
  r.match.dport->negated = true;
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 2078)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 9055)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 60000)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 2079)));
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));

  // Source port sets likewise.
  r = tcp(Verdict{});
  r.match.sport = PortSet{{{53, 53}, {40000, 40010}}, false};
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));  // sport 40000
  r.match.sport->negated = true;
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));

  // The step says which set did not match, as iptables lists it.
  r = tcp(Redirect{15001});
  r.match.dport = PortSet{{{80, 80}, {443, 443}, {8000, 8100}}, false};
  const auto e = explain(plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT", {chain("WEIR_OUTPUT", {r})})}),
                         outbound("198.18.0.2", "198.18.1.1", 22));
  REQUIRE(e.steps.size() == 2);
  CHECK(e.steps[1].effect == "no match: --dports 80,443,8000:8100: destination port is 22");
}

TEST_CASE("matches: CIDR sets of many, mixed prefixes, negation and families") {
  Step r = rule(Verdict{});
  r.match.dst = CidrSet{};
  // 300 /24s (198.18.0.0 - 198.19.43.0), a /16 and a host.
  for (int i = 0; i < 300; ++i) {
    Cidr c = ip("198.18.0.0/24");
    c.addr[2] = static_cast<uint8_t>(i % 256);
    c.addr[1] = static_cast<uint8_t>(18 + i / 256);
    r.match.dst->cidrs.push_back(c);
  }
  r.match.dst->cidrs.push_back(ip("10.1.0.0/16"));
  r.match.dst->cidrs.push_back(ip("192.0.2.7"));
  for (const char* dst : {"198.18.0.1", "198.18.255.254", "198.19.43.9", "10.1.200.3", "192.0.2.7"}) {
    CAPTURE(dst);
    CHECK(matches(r.match, outbound("198.18.0.2", dst, 80)));
  }
  for (const char* dst : {"198.19.44.1", "10.2.0.1", "192.0.2.8", "127.0.0.1"}) {
    CAPTURE(dst);
    CHECK_FALSE(matches(r.match, outbound("198.18.0.2", dst, 80)));
  }
  // A V6 packet is in none of a V4 set.
  CHECK_FALSE(matches(r.match, outbound("fd00::2", "fd00::1", 80)));
  r.match.dst->negated = true;
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "10.1.0.1", 80)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.19.43.9", 80)));
  CHECK(matches(r.match, outbound("198.18.0.2", "10.2.0.1", 80)));
  CHECK(matches(r.match, outbound("fd00::2", "fd00::1", 80)));

  // Source sets, and the mismatch text naming the set.
  r = kRet;
  r.match.src = CidrSet{{ip("198.18.7.0/24"), ip("198.18.9.0/24")}, false};
  r.reason = "inbound from {src} is not captured";
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "PREROUTING", {chain("WEIR_INBOUND", {r, tcp(Redirect{15006})})})});
  auto e = explain(plan, inbound("198.18.1.1", "198.18.0.2", 8080));
  REQUIRE(e.steps.size() == 3);
  CHECK(e.steps[1].effect == "no match: -s 198.18.7.0/24,198.18.9.0/24: source is 198.18.1.1");
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  // The summary quotes the reason with the set filled in.
  e = explain(plan, inbound("198.18.9.4", "198.18.0.2", 8080));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.summary ==
        "passed untouched: RETURN at nat WEIR_INBOUND rule 1 (inbound from 198.18.7.0/24,198.18.9.0/24 is not captured)");
  // Negated source set, and its text.
  r.match.src->negated = true;
  e = explain(plan_of(Family::V4, {stage(Stage::Nat, "PREROUTING", {chain("WEIR_INBOUND", {r})})}),
              inbound("198.18.9.4", "198.18.0.2", 8080));
  CHECK(e.steps[1].effect == "no match: ! -s 198.18.7.0/24,198.18.9.0/24: source is 198.18.9.4");
}

TEST_CASE("matches: interface prefixes ('+') and their negation, at both hooks") {
  Step r = rule(Verdict{});
  r.match.in = IfaceMatch{"veth+", false};
  for (const char* dev : {"veth0", "veth12", "vethabcdef", "veth"}) {
    CAPTURE(dev);
    CHECK(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, dev)));
  }
  for (const char* dev : {"eth0", "vet", "lo", "xveth0"}) {
    CAPTURE(dev);
    CHECK_FALSE(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, dev)));
  }
  // "+" alone is any device.
  r.match.in = IfaceMatch{"+", false};
  CHECK(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, "kv0")));
  // Negated prefix: none that starts so.
  r.match.in = IfaceMatch{"kv+", true};
  CHECK_FALSE(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, "kv12")));
  CHECK(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, "eth0")));
  // Without '+' a name is exact.
  r.match.in = IfaceMatch{"veth1", false};
  CHECK_FALSE(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080, "veth12")));

  // Out interfaces at output, the default eth0 included.
  r = rule(Verdict{});
  r.match.out = IfaceMatch{"eth+", false};
  CHECK(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "127.0.0.1", 80)));  // lo
  r.match.out->negated = true;
  CHECK(matches(r.match, outbound("198.18.0.2", "127.0.0.1", 80)));
  // At prerouting there is no out device: a prefix never matches it, its negation does.
  CHECK(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080)));
  r.match.out->negated = false;
  CHECK_FALSE(matches(r.match, inbound("198.18.1.1", "198.18.0.2", 8080)));

  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "PREROUTING", {chain("WEIR_INBOUND", {[] {
                                                                            Step s = kRet;
                                                                            s.match.in = IfaceMatch{"tap+", false};
                                                                            return s;
                                                                          }()})})});
  const auto e = explain(plan, inbound("198.18.1.1", "198.18.0.2", 8080, "eth3"));
  REQUIRE(e.steps.size() == 2);
  CHECK(e.steps[1].effect == "no match: -i tap+: in interface is eth3");
  CHECK(e.steps[1].rule_text == "-A WEIR_INBOUND -i tap+ -j RETURN");
}

TEST_CASE("explain: several base chains at one hook are walked in order; steps print with the given text") {
  Step mark = rule(SetMark{0x1, 0xffffffff});
  Step accept = rule(Verdict{Verdict::Accept});
  Step tproxy = tcp(Tproxy{15006, 0x2, 0x2});
  StagePolicy mangle{Stage::Mangle,
                     {chain("PREROUTING", {mark, accept}), PolicyChain{"weir_late", Hook::Prerouting, {tproxy}, 0},
                      PolicyChain{"weir_other_hook", Hook::Output, {rule(Verdict{Verdict::Drop})}, 0}}};
  PolicyText text;
  text.step = [](const std::string& chain, const Step& s, Family f) {
    return chain + " #" + std::to_string(s.reason.size()) + (f == Family::V4 ? " ip" : " ip6");
  };
  const auto e = explain(plan_of(Family::V4, {mangle}), inbound("198.18.1.1", "198.18.0.2", 8080), text);
  REQUIRE(e.steps.size() == 3);
  CHECK(e.steps[1].effect == "ACCEPT: ends the mangle table");
  CHECK(e.steps[2].chain == "weir_late");
  CHECK(e.steps[2].rule_text == "weir_late #0 ip");
  CHECK(e.verdict.kind == ExplainVerdict::Tproxied);
  CHECK(e.verdict.mark == 0x3);
  CHECK(e.verdict.decided_by == "mangle weir_late rule 1");
}

TEST_CASE("make_packet fills in the defaults, in one place") {
  PacketQuery q;
  q.dport = 80;
  Result<Packet> p = make_packet(q);
  REQUIRE(p.ok());
  CHECK(p->hook == Packet::Hook::Output);
  CHECK(p->family == Family::V4);
  CHECK(format_addr(p->src) == kV4PacketDefaults.pod);
  CHECK(format_addr(p->dst) == kV4PacketDefaults.peer);
  CHECK(p->sport == kDefaultSourcePort);
  CHECK(p->uid == kDefaultAppId);
  CHECK(p->gid == kDefaultAppId);
  CHECK(p->out_iface == "eth0");
  CHECK(p->in_iface.empty());

  // To loopback: from loopback, via lo. To the pod's own address: via lo.
  q.dst = ip("127.0.0.1");
  p = make_packet(q);
  CHECK(format_addr(p->src) == "127.0.0.1");
  CHECK(p->out_iface == "lo");
  q.dst = ip(kV4PacketDefaults.pod);
  CHECK(make_packet(q)->out_iface == "lo");
  q.out_iface = "eth1";
  CHECK(make_packet(q)->out_iface == "eth1");

  // IPv6 by the address given, or by the family asked for.
  q = PacketQuery{};
  q.src = ip("fd00::5");
  p = make_packet(q);
  CHECK(p->family == Family::V6);
  CHECK(format_addr(p->dst) == kV6PacketDefaults.peer);
  q = PacketQuery{};
  q.family = Family::V6;
  q.dst = ip("::1");
  p = make_packet(q);
  CHECK(format_addr(p->src) == kV6PacketDefaults.loopback);
  q.dst.reset();
  CHECK(format_addr(make_packet(q)->src) == kV6PacketDefaults.pod);

  // Inbound: from the peer, on eth0, no sending process.
  q = PacketQuery{};
  q.hook = Packet::Hook::Prerouting;
  q.uid = 1337;
  q.out_iface = "eth7";
  p = make_packet(q);
  CHECK(format_addr(p->src) == kV4PacketDefaults.peer);
  CHECK(format_addr(p->dst) == kV4PacketDefaults.pod);
  CHECK(p->in_iface == "eth0");
  CHECK(p->out_iface.empty());
  CHECK_FALSE(p->uid.has_value());
  CHECK_FALSE(p->gid.has_value());
  q.in_iface = "veth3";
  q.sport = 5;
  q.ct_state = Packet::CtState::Related;
  q.mark = 7;
  q.connmark = 9;
  p = make_packet(q);
  CHECK(p->in_iface == "veth3");
  CHECK(p->sport == 5);
  CHECK(p->ct_state == Packet::CtState::Related);
  CHECK(p->mark == 7);
  CHECK(p->connmark == 9);

  // What make_packet returns is what explain walks.
  const auto e = explain(CapturePolicy{}, *p);
  CHECK(e.packet.in_iface == p->in_iface);

  q.src = ip("198.18.0.1");
  q.dst = ip("fd00::1");
  const Result<Packet> mixed = make_packet(q);
  REQUIRE_FALSE(mixed.ok());
  CHECK(mixed.error().kind == ErrorKind::InvalidArgument);
  CHECK(mixed.error().message == "source 198.18.0.1 and destination fd00::1 are of different families");
}

TEST_CASE("matches: unknown matches cannot be evaluated") {
  Step r = rule(Verdict{});
  r.match.unknown = {"socket"};
  CHECK_FALSE(matches(r.match, outbound("198.18.0.2", "198.18.1.1", 80)));
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT", {chain("WEIR_OUTPUT", {r})})});
  const auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80));
  REQUIRE(e.steps.size() == 2);
  CHECK_FALSE(e.steps[1].matched);
  CHECK(e.steps[1].effect.find("cannot evaluate -m socket") != std::string::npos);
}

TEST_CASE("explain: jump, RETURN and implicit return") {
  Step ret_uid = kRet;
  ret_uid.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  ret_uid.reason = "proxy's own traffic, uid 1337";
  Step to_sub = rule(Jump{"WEIR_SUB"});
  Step redirect = tcp(Redirect{15001});
  redirect.reason = "outbound capture";
  Step nothing = tcp(Verdict{Verdict::Drop});
  nothing.match.dport = PortSet{{{1, 1}}, false};
  const auto plan = plan_of(
      Family::V4, {stage(Stage::Nat, "OUTPUT",
                         {chain("WEIR_OUTPUT", {ret_uid, to_sub, redirect}), chain("WEIR_SUB", {nothing})})});

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
  Step exclude = kRet;
  exclude.match.dst = net("198.18.1.0/24");
  exclude.reason = "excluded outbound CIDR";
  const auto plan = plan_of(
      Family::V4, {stage(Stage::Nat, "OUTPUT",
                         {chain("WEIR_OUTPUT", {rule(Jump{"WEIR_OUTBOUND"}), tcp(Redirect{15001})}),
                          chain("WEIR_OUTBOUND", {exclude, rule(Jump{"WEIR_REDIRECT"})}),
                          chain("WEIR_REDIRECT", {tcp(Redirect{15002})})})});
  auto e = explain(plan, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.verdict.port == 15001);  // came back to WEIR_OUTPUT rule 2
  CHECK(e.steps[2].effect == "RETURN to WEIR_OUTPUT");
  e = explain(plan, outbound("198.18.0.2", "198.18.2.1", 80));
  CHECK(e.verdict.port == 15002);
}

TEST_CASE("explain: tables in order raw, mangle, nat; ACCEPT ends only its table") {
  Step zone = rule(CtZone{2});
  zone.match.proto = Proto::Udp;
  Step accept = rule(Verdict{Verdict::Accept});
  accept.reason = "let it be";
  const auto plan = plan_of(Family::V4, {
                                            stage(Stage::Nat, "OUTPUT", {chain("WEIR_OUTPUT", {rule(Redirect{15053})})}),
                                            stage(Stage::Mangle, "OUTPUT", {chain("WEIR_OUTPUT", {accept})}),
                                            stage(Stage::Raw, "OUTPUT", {chain("WEIR_OUTPUT", {zone})}),
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
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "PREROUTING", {chain("WEIR_INBOUND", {tcp(Redirect{15006})})})});
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
  Step restore = tcp(Connmark{Connmark::Restore});
  Step established = tcp(Jump{"WEIR_DIVERT"});
  established.match.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
  Step tproxy = tcp(Tproxy{15006, 1337, 0xffffffff});
  tproxy.match.dst = net("127.0.0.1");
  tproxy.match.dst->negated = true;
  tproxy.reason = "to the proxy's inbound port";
  Step save = tcp(Connmark{Connmark::Save});
  save.match.mark = MarkMatch{1337, 0xffffffff, false};
  StagePolicy mangle{Stage::Mangle,
               {chain("PREROUTING", {rule(Jump{"WEIR_INBOUND"}), save}),
                chain("WEIR_INBOUND", {restore, established, tproxy}),
                chain("WEIR_DIVERT", {rule(SetMark{1337, 0xffffffff}), rule(Verdict{Verdict::Accept})})}};
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
  StagePolicy mangle2{Stage::Mangle, {chain("PREROUTING", {restore, save})}};
  p.connmark = 0x539;
  e = explain(plan_of(Family::V4, {mangle2}), p);
  CHECK(e.steps[0].effect == "mark set to connmark 0x539");
  CHECK(e.steps[1].matched);
  CHECK(e.steps[1].effect == "connmark set to mark 0x539");

  // MARK with a mask keeps the other bits.
  StagePolicy mangle3{Stage::Mangle, {chain("PREROUTING", {rule(SetMark{0x2, 0xf}), rule(Tproxy{15006, 0x100, 0xf00})})}};
  p.mark = 0xf0f1;
  e = explain(plan_of(Family::V4, {mangle3}), p);
  CHECK(e.verdict.mark == 0xf1f2);
}

TEST_CASE("explain: the raw table runs before conntrack") {
  Step est = rule(CtZone{1});
  est.match.conntrack = Conntrack{Conntrack::kEstablished, false};
  Step inv = rule(CtZone{2});
  inv.match.conntrack = Conntrack{Conntrack::kInvalid, false};
  const auto plan = plan_of(Family::V4, {StagePolicy{Stage::Raw, {chain("PREROUTING", {est, inv})}}});
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
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT", {chain("WEIR_OUTPUT", {tcp(Redirect{15001})})})});
  Packet p = outbound("198.18.0.2", "198.18.1.1", 80);
  for (auto st : {Packet::CtState::Related, Packet::CtState::Invalid, Packet::CtState::Established}) {
    p.ct_state = st;
    CHECK(explain(plan, p).verdict.kind == ExplainVerdict::Untouched);
  }

  // In raw there is no conntrack entry yet: CONNMARK does nothing and a
  // connmark match fails even when negated.
  Step save = rule(Connmark{Connmark::Save});
  Step neg = rule(Verdict{Verdict::Drop});
  neg.match.connmark = MarkMatch{1, 0xffffffff, true};
  const auto raw = plan_of(Family::V4, {StagePolicy{Stage::Raw, {chain("OUTPUT", {save, neg})}},
                                        StagePolicy{Stage::Mangle, {chain("OUTPUT", {neg})}}});
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
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT",
                                               {chain("WEIR_A", {rule(UnknownTarget{"LOG"}), rule(Redirect{15001})})})});
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
  const auto loop = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT",
                                               {chain("WEIR_A", {rule(Jump{"WEIR_B"})}),
                                                chain("WEIR_B", {rule(Jump{"WEIR_A"})})})});
  auto e = explain(loop, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.verdict.decided_by == "undecided");
  CHECK(e.summary.rfind("cannot tell: walk stopped", 0) == 0);
  CHECK(e.steps.size() <= 40);

  const auto missing = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT",
                                                  {chain("WEIR_A", {rule(Jump{"ISTIO_X"}), rule(Redirect{15001})})})});
  e = explain(missing, outbound("198.18.0.2", "198.18.1.1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Redirected);
  CHECK(e.steps[1].effect.find("not walked") != std::string::npos);
}

TEST_CASE("explain: a family the plan does not cover passes untouched") {
  const auto plan = plan_of(Family::V4, {stage(Stage::Nat, "OUTPUT", {chain("WEIR_A", {rule(Redirect{15001})})})});
  const auto e = explain(plan, outbound("fd00::2", "fd00::1:1", 80));
  CHECK(e.verdict.kind == ExplainVerdict::Untouched);
  CHECK(e.summary == "passed untouched: weir has no ipv6 rules, so ipv6 traffic is not captured");
}

TEST_CASE("render_explanation and to_json carry the packet, the steps and the verdict") {
  Step ret_uid = kRet;
  ret_uid.match.owner = Owner{Owner::Kind::Uid, 1337, false};
  ret_uid.reason = "proxy's own traffic";
  const auto plan = plan_of(Family::V6, {stage(Stage::Nat, "OUTPUT", {chain("WEIR_OUTPUT", {ret_uid, tcp(Redirect{15001})})})});
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

void check_flow(const CapturePolicy& plan, const Packet& p, Expect want, const char* decided_in = nullptr) {
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
  const CapturePolicy plan = planned(CaptureSpec{});
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
  const std::string comment = fill_reason(plan.find(Family::V4)->find(Stage::Nat)->find(chains::kRedirect)->steps.at(0));
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
  const CapturePolicy plan = planned(s);

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
  check_flow(planned(s), inbound("198.18.1.1", "198.18.0.2", 8080), kUntouched);
}

TEST_CASE("explain on planned specs: several proxy UIDs and GIDs") {
  CaptureSpec s;
  s.proxy_uids = {1337, 1338};
  s.proxy_gids = {1337, 2000};
  const CapturePolicy plan = planned(s);
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
  const CapturePolicy plan = planned(s);
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
  check_flow(planned(s), q, redirected(15053));
  q.dst = ip("198.18.5.6");
  check_flow(planned(s), q, kUntouched);
}

TEST_CASE("explain on planned specs: TPROXY inbound and drop invalid") {
  CaptureSpec s;
  s.mode = InboundMode::Tproxy;
  s.drop_invalid = true;
  const CapturePolicy plan = planned(s);
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
  CapturePolicy plan = planned(CaptureSpec{});
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

