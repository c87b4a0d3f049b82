// The nftables form of capture policies, without root: shape, sets, comments,
// canonical form. kernel/nft/filter_test.cc checks that nft and the kernel
// take what is rendered here.
#include "rules/nft/ruleset.h"
#include "rules/plan.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>


namespace weir::nft {
namespace {

Cidr addr(const std::string& s) {
  auto c = parse_cidr(s);
  REQUIRE_MESSAGE(c.ok(), s);
  return *c;
}

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

std::vector<CaptureSpec> spec_matrix() {
  std::vector<CaptureSpec> specs;
  CaptureSpec d;
  specs.push_back(d);
  CaptureSpec tp = d;
  tp.mode = InboundMode::Tproxy;
  specs.push_back(tp);
  CaptureSpec dns = d;
  dns.dns.capture = true;
  specs.push_back(dns);
  CaptureSpec dns_servers = dns;
  dns_servers.dns.capture_all = false;
  dns_servers.dns.servers = {addr("198.18.0.53"), addr("fd00::53")};
  specs.push_back(dns_servers);
  CaptureSpec many = tp;
  many.drop_invalid = true;
  many.proxy_uids = {1337, 1338};
  many.proxy_gids = {1337};
  many.exclude_interfaces = {"eth7"};
  many.kube_virt_interfaces = {"virt+"};
  many.exclude_outbound_cidrs = {addr("198.18.4.0/24"), addr("198.18.5.0/24"), addr("fd00:1::/64")};
  many.outbound_cidrs = std::vector<Cidr>{addr("198.18.0.0/16"), addr("fd00::/16")};
  many.exclude_outbound_ports = {{9000, 9000}, {9100, 9200}};
  many.inbound_ports = std::vector<PortRange>{};
  for (uint16_t p = 8000; p < 8040; p += 2) many.inbound_ports->push_back({p, p});
  many.dns.capture = true;
  specs.push_back(many);
  CaptureSpec v6 = many;
  v6.ip_families = IpFamilies::V6;
  v6.mode = InboundMode::Redirect;
  v6.outbound_cidrs = std::vector<Cidr>{addr("fd00::/16")};
  v6.exclude_outbound_cidrs = {addr("fd00:1::/64"), addr("fd00:2::/64")};
  specs.push_back(v6);
  return specs;
}

TEST_CASE("nft: the default dual-stack spec is one inet table with nat base chains and family chains") {
  const CapturePolicy p = capture_policy(CaptureSpec{});
  REQUIRE(check(p).ok());
  const std::string text = render_text(p);
  CAPTURE(text);
  CHECK(has(text, "add table inet weir\ndelete table inet weir\ntable inet weir {\n"));
  CHECK(has(text, "chain nat_prerouting {\n\t\ttype nat hook prerouting priority -100; policy accept;"));
  CHECK(has(text, "chain nat_output {\n\t\ttype nat hook output priority -100; policy accept;"));
  CHECK(has(text, "meta nfproto ipv4 counter jump ip_nat_WEIR_OUTPUT comment \"weir: outbound capture\""));
  CHECK(has(text, "meta nfproto ipv6 counter jump ip6_nat_WEIR_OUTPUT comment \"weir: outbound capture\""));
  CHECK(has(text, "chain ip6_nat_WEIR_REDIRECT {\n\t\tmeta l4proto tcp counter redirect to :15001"));
  CHECK(has(text, "ip saddr 127.0.0.6 counter return"));
  CHECK(has(text, "ip6 saddr ::6 counter return"));
  // Inbound excludes are one set, not one multiport group per 15 ports.
  CHECK(has(text, "tcp dport { 15008, 15020-15021, 15090 } counter return"));
  CHECK(has(text, "meta skuid 1337 counter return"));
  CHECK_FALSE(has(text, "mangle"));
  CHECK_FALSE(has(text, " xt "));
}

TEST_CASE("nft: TPROXY uses mangle prerouting (filter) and output (route) with native tproxy and marks") {
  CaptureSpec s;
  s.mode = InboundMode::Tproxy;
  const std::string text = render_text(capture_policy(s));
  CAPTURE(text);
  CHECK(has(text, "chain mangle_prerouting {\n\t\ttype filter hook prerouting priority -150;"));
  CHECK(has(text, "chain mangle_output {\n\t\ttype route hook output priority -150;"));
  CHECK(has(text, "meta nfproto ipv4 ip daddr != 127.0.0.1 tcp dport != 8080 counter tproxy ip to :15006") ==
        false);  // no such port filter in the default spec
  CHECK(has(text, "meta nfproto ipv4 ip daddr != 127.0.0.1 meta l4proto tcp counter tproxy ip to :15006 "
                  "meta mark set 0x00000539 accept"));
  CHECK(has(text, "meta nfproto ipv6 ip6 daddr != ::1 meta l4proto tcp counter tproxy ip6 to :15006"));
  CHECK(has(text, "meta l4proto tcp meta mark 0x00000539 counter ct mark set meta mark"));
  CHECK(has(text, "meta l4proto tcp ct mark 0x00000539 counter meta mark set ct mark"));
  CHECK(has(text, "ct state established,related counter jump ip_mangle_WEIR_DIVERT"));
  CHECK(has(text, "meta mark != 0x0000053a counter return"));
}

TEST_CASE("nft: DNS capture puts conntrack zones in raw at -300") {
  CaptureSpec s;
  s.dns.capture = true;
  const std::string text = render_text(capture_policy(s));
  CAPTURE(text);
  CHECK(has(text, "chain raw_output {\n\t\ttype filter hook output priority -300;"));
  CHECK(has(text, "udp dport 53 meta skuid 1337 counter ct zone set 1"));
  CHECK(has(text, "udp sport 53 counter ct zone set 1"));
  CHECK(has(text, "udp dport 53 counter redirect to :15053"));
}

TEST_CASE("nft: every spec of the matrix passes check, and canonical is idempotent") {
  for (const CaptureSpec& s : spec_matrix()) {
    const Status valid = validate(s);
    REQUIRE_MESSAGE(valid.ok(), (valid.ok() ? "" : valid.error().message));
    const CapturePolicy p = capture_policy(s);
    const Status st = check(p);
    CHECK_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message));
    const CapturePolicy c = canonical(p);
    CHECK(canonical(c) == c);
    const std::string text = render_text(p);
    CHECK_FALSE(has(text, "xt "));
    CHECK(has(render_json(p).dump(), "\"nftables\""));
    CHECK_FALSE(has(render_json(p).dump(), "\"xt\""));
  }
}

TEST_CASE("nft: the JSON listing (weir show) has bare objects and each rule's counter figures") {
  CapturePolicy p = capture_policy(CaptureSpec{});
  for (FamilyPolicy& fp : p.families)
    for (StagePolicy& sp : fp.stages)
      for (PolicyChain& c : sp.chains)
        for (Step& s : c.steps) s.counters = Counters{7, 420};
  const nlohmann::json listing = render_json(p, TextOptions{.counters = true, .listing = true});
  const nlohmann::json plan = render_json(p);
  size_t rules = 0, with_figures = 0, commands = 0;
  for (const auto& o : listing["nftables"]) {
    if (o.contains("add") || o.contains("delete")) ++commands;
    if (!o.contains("rule")) continue;
    ++rules;
    for (const auto& e : o["rule"]["expr"])
      if (e.contains("counter") && e["counter"].is_object() && e["counter"]["packets"] == 7 && e["counter"]["bytes"] == 420)
        ++with_figures;
  }
  CHECK(commands == 0);
  CHECK(rules > 0);
  CHECK(with_figures == rules);
  CHECK(listing.contains("routes"));
  // The transaction (weir plan) keeps plain counters and its add/delete commands.
  CHECK_FALSE(has(plan.dump(), "\"packets\""));
  CHECK(has(plan.dump(), "\"delete\""));
}

TEST_CASE("nft: a port set of any size is one rule") {
  CapturePolicy p;
  Step capture;
  capture.match.proto = Proto::Tcp;
  capture.match.dport = PortSet{{}, false};
  for (uint16_t port = 1000; port < 1200; port += 2) capture.match.dport->ports.push_back({port, port});
  capture.action = Redirect{15006};
  capture.reason = "inbound TCP to port {dport} goes to the proxy";
  p.families.push_back(FamilyPolicy{Family::V4, {StagePolicy{Stage::Nat, {PolicyChain{"PREROUTING", Hook::Prerouting, {capture}, 0}}}}});
  REQUIRE(check(p).ok());
  const CapturePolicy c = canonical(p);
  REQUIRE(c.families.size() == 1);
  CHECK(c.families[0].stages[0].chains[0].steps.size() == 1);
  CHECK(c.families[0].stages[0].chains[0].steps[0].match.dport->ports.size() == 100);
  const std::string text = render_text(p);
  CHECK(has(text, "tcp dport { 1000, 1002, 1004,"));
  CHECK(has(text, "1198 } counter redirect to :15006 comment \"inbound TCP to port 1000,1002,"));
}

TEST_CASE("nft: sets are merged and CIDRs come back as the fewest prefixes") {
  const auto r = key_ranges({addr("10.0.0.0/9"), addr("10.128.0.0/9"), addr("10.1.0.0/16")}, Family::V4);
  REQUIRE(r.size() == 1);
  CHECK(r[0].from == std::vector<uint8_t>{10, 0, 0, 0});
  CHECK(r[0].to == std::vector<uint8_t>{11, 0, 0, 0});
  CHECK(cidrs_of(r, Family::V4) == std::vector<Cidr>{addr("10.0.0.0/8")});
  const auto all = key_ranges({addr("0.0.0.0/0")}, Family::V4);
  REQUIRE(all.size() == 1);
  CHECK(all[0].to.empty());
  CHECK(cidrs_of(all, Family::V4) == std::vector<Cidr>{addr("0.0.0.0/0")});
  CHECK(cidrs_of(key_ranges({addr("::/0")}, Family::V6), Family::V6) == std::vector<Cidr>{addr("::/0")});
  CHECK(cidrs_of(key_ranges({addr("fd00::/8"), addr("ffff::1")}, Family::V6), Family::V6) ==
        std::vector<Cidr>{addr("fd00::/8"), addr("ffff::1")});
  // 10.0.0.1 .. 10.0.0.6 = .1/32 .2/31 .4/31 .6/32
  KeyRange odd{{10, 0, 0, 1}, {10, 0, 0, 7}};
  CHECK(cidrs_of({odd}, Family::V4) ==
        std::vector<Cidr>{addr("10.0.0.1"), addr("10.0.0.2/31"), addr("10.0.0.4/31"), addr("10.0.0.6")});
  CHECK(ports_of(key_ranges({{80, 80}, {81, 81}, {443, 443}, {65535, 65535}})) ==
        std::vector<PortRange>{{80, 81}, {443, 443}, {65535, 65535}});
}

TEST_CASE("nft: comments are the filled reason, cut to what nft keeps") {
  Step s;
  s.match.dst = CidrSet{{addr("10.0.0.0/8"), addr("192.168.0.0/16")}, false};
  s.reason = "outbound to {dst} is \"not\" captured";
  CHECK(comment_text(s) == "outbound to 10.0.0.0/8,192.168.0.0/16 is 'not' captured");
  s.reason = std::string(300, 'x');
  CHECK(comment_text(s).size() == kCommentMax);
  CHECK(comment_text(s).substr(kCommentMax - 3) == "...");
}

TEST_CASE("nft: check refuses what nft cannot say") {
  CapturePolicy p;
  FamilyPolicy f{Family::V4, {}};
  StagePolicy nat{Stage::Nat, {}};
  Step ports;
  ports.match.dport = PortSet{{{80, 80}}, false};
  nat.chains.push_back(PolicyChain{"OUTPUT", Hook::Output, {ports}, 0});
  f.stages.push_back(nat);
  p.families.push_back(f);
  CHECK_FALSE(check(p).ok());
  p.families[0].stages[0].chains[0].steps[0].match.proto = Proto::Tcp;
  CHECK(check(p).ok());
  p.families[0].stages[0].chains[0].steps[0].action = Jump{"WEIR_NOWHERE"};
  CHECK_FALSE(check(p).ok());
}

TEST_CASE("nft: chain names parse back") {
  auto b = parse_chain_name("mangle_output");
  REQUIRE(b);
  CHECK_FALSE(b->family);
  CHECK(b->stage == Stage::Mangle);
  CHECK(b->hook == Hook::Output);
  auto r = parse_chain_name(chain_name(Family::V6, Stage::Nat, "WEIR_IN_REDIRECT"));
  REQUIRE(r);
  CHECK(r->family == Family::V6);
  CHECK(r->stage == Stage::Nat);
  CHECK(r->name == "WEIR_IN_REDIRECT");
  CHECK_FALSE(parse_chain_name("foreign"));
}

TEST_CASE("nft: live counters print as nft lists them; they never make two policies differ") {
  CapturePolicy live = canonical(capture_policy(CaptureSpec{}));
  const CapturePolicy planned = live;
  auto& steps = live.families[0].stages[0].chains[0].steps;  // ipv4 nat PREROUTING
  REQUIRE(!steps.empty());
  steps[0].counters = Counters{12, 720};
  // check and apply compare like this: counter values are not part of a rule.
  CHECK(live == planned);
  CHECK(canonical(live) == planned);
  CHECK(canonical(live).families[0].stages[0].chains[0].steps[0].counters.packets == 12);  // kept for show

  const std::string listed = render_text(live, TextOptions{.counters = true, .listing = true});
  CAPTURE(listed);
  CHECK(listed.rfind("table inet weir {\n\tchain nat_prerouting {\n", 0) == 0);  // no transaction lines
  CHECK_FALSE(has(listed, "delete table"));
  CHECK(has(listed, "meta nfproto ipv4 counter packets 12 bytes 720 jump ip_nat_WEIR_INBOUND"));
  CHECK(has(listed, "meta nfproto ipv6 counter packets 0 bytes 0 jump ip6_nat_WEIR_INBOUND"));
  CHECK_FALSE(has(listed, "counter jump"));  // every rule shows its values

  // The plan's form is unchanged by counters: plain "counter", as nft -f takes it.
  const std::string plan_text = render_text(live);
  CHECK(plan_text == render_text(planned));
  CHECK(has(plan_text, "meta nfproto ipv4 counter jump ip_nat_WEIR_INBOUND"));
  CHECK_FALSE(has(plan_text, "packets"));
}

TEST_CASE("nft: the policy routes and ::6 are comment lines after the table") {
  CaptureSpec tp;
  tp.mode = InboundMode::Tproxy;
  const std::string text = render_text(capture_policy(tp));
  CHECK(has(text, "}\n# weir: ipv4 policy route: fwmark 0x00000539 lookup 133, local 0.0.0.0/0 dev lo table 133\n"
                  "# weir: ipv6 policy route: fwmark 0x00000539 lookup 133, local ::/0 dev lo table 133\n"
                  "# weir: ipv6 address ::6/128 on lo"));
  CaptureSpec v4;
  v4.ip_families = IpFamilies::V4;
  const std::string plain = render_text(capture_policy(v4));
  CHECK_FALSE(has(plain, "policy route"));
  CHECK_FALSE(has(plain, "::6/128"));
}

}  // namespace
}  // namespace weir::nft
