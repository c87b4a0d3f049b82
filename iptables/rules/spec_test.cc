// Unit tests of the model helpers and the capture spec: parsing, validation
// messages, JSON merge and round trip.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "rules/model.h"
#include "rules/spec.h"

using namespace weir;
using json = nlohmann::json;

namespace {

// The error message of a failed Status/Result, or "" when it succeeded.
template <typename R>
std::string message_of(const R& r) {
  return r ? std::string() : r.error().message;
}

// Validation of `spec` fails, and the message contains each of `parts`.
void check_invalid(const CaptureSpec& spec, std::initializer_list<const char*> parts) {
  const auto st = validate(spec);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind == ErrorKind::InvalidSpec);
  for (const char* p : parts) {
    INFO("message: ", st.error().message, " should contain: ", std::string(p));
    CHECK(st.error().message.find(p) != std::string::npos);
  }
}

// Merging `j` into defaults fails with a message containing each of `parts`.
void check_json_invalid(const json& j, std::initializer_list<const char*> parts) {
  const auto r = spec_from_json(j);
  REQUIRE_FALSE(r.ok());
  for (const char* p : parts) {
    INFO("message: ", r.error().message, " should contain: ", std::string(p));
    CHECK(r.error().message.find(p) != std::string::npos);
  }
}

Cidr cidr(const char* text) {
  auto c = parse_cidr(text);
  REQUIRE_MESSAGE(c.ok(), message_of(c));
  return *c;
}

}  // namespace

TEST_CASE("parse_cidr and format_cidr") {
  CHECK(format_cidr(cidr("198.18.0.1")) == "198.18.0.1/32");
  CHECK(format_cidr(cidr("198.18.0.0/15")) == "198.18.0.0/15");
  CHECK(format_cidr(cidr("fd00::1")) == "fd00::1/128");
  CHECK(format_cidr(cidr("fd00::/8")) == "fd00::/8");
  CHECK(format_cidr(cidr("0.0.0.0/0")) == "0.0.0.0/0");
  CHECK(format_addr(cidr("::6")) == "::6");
  CHECK(cidr("fd00::/8").family == Family::V6);

  CHECK(message_of(parse_cidr("198.18.0.1/15")) == "198.18.0.1/15: host bits set (did you mean 198.18.0.0/15?)");
  CHECK(message_of(parse_cidr("fd00::1/8")).find("did you mean fd00::/8?") != std::string::npos);
  CHECK(message_of(parse_cidr("10.0.0.0/33")).find("too long") != std::string::npos);
  CHECK(message_of(parse_cidr("fd00::/129")).find("too long") != std::string::npos);
  CHECK_FALSE(parse_cidr("10.0.0.0/x").ok());
  CHECK_FALSE(parse_cidr("10.0.0.0/").ok());
  CHECK_FALSE(parse_cidr("10.0.0").ok());
  CHECK_FALSE(parse_cidr("").ok());
  CHECK_FALSE(parse_cidr("fd00:::1").ok());
}

TEST_CASE("cidr_contains") {
  CHECK(cidr_contains(cidr("198.18.0.0/15"), cidr("198.19.255.1")));
  CHECK_FALSE(cidr_contains(cidr("198.18.0.0/16"), cidr("198.19.0.1")));
  CHECK(cidr_contains(cidr("0.0.0.0/0"), cidr("1.2.3.4")));
  CHECK(cidr_contains(cidr("fd00::/8"), cidr("fd12::1")));
  CHECK_FALSE(cidr_contains(cidr("fd00::/8"), cidr("198.18.0.1")));
  CHECK_FALSE(cidr_contains(cidr("198.18.0.1"), cidr("198.18.0.0/15")));
}

TEST_CASE("parse_port_range") {
  CHECK(*parse_port_range("8080") == PortRange{8080, 8080});
  CHECK(*parse_port_range("8000-8100") == PortRange{8000, 8100});
  CHECK(*parse_port_range("8000:8100") == PortRange{8000, 8100});
  CHECK(*parse_port_range("65535") == PortRange{65535, 65535});
  CHECK(message_of(parse_port_range("0")) == "0 is not a port (1-65535)");
  CHECK(message_of(parse_port_range("65536")) == "65536 is not a port (1-65535)");
  CHECK(message_of(parse_port_range("x")) == "\"x\" is not a port");
  CHECK(message_of(parse_port_range("8100-8000")).find("reversed") != std::string::npos);
  CHECK_FALSE(parse_port_range("").ok());
  CHECK_FALSE(parse_port_range("80-").ok());
  CHECK_FALSE(parse_port_range("-80").ok());
  CHECK_FALSE(parse_port_range("+80").ok());
  CHECK(format_port_range({8000, 8100}) == "8000-8100");
  CHECK(format_port_range({8000, 8100}, ':') == "8000:8100");
  CHECK(format_port_range({80, 80}) == "80");
}

TEST_CASE("pack_multiport") {
  std::vector<PortRange> fifteen, sixteen;
  for (uint16_t p = 1; p <= 15; ++p) fifteen.push_back({p, p});
  sixteen = fifteen;
  sixteen.push_back({16, 16});

  CHECK(pack_multiport({}).empty());
  auto g15 = pack_multiport(fifteen);
  REQUIRE(g15.size() == 1);
  CHECK(g15[0] == fifteen);

  auto g16 = pack_multiport(sixteen);
  REQUIRE(g16.size() == 2);
  CHECK(g16[0] == fifteen);
  CHECK(g16[1] == std::vector<PortRange>{{16, 16}});

  // Seven ranges (14) + one port = 15 fits; an eighth range does not.
  std::vector<PortRange> ranges;
  for (uint16_t i = 0; i < 7; ++i) ranges.push_back({static_cast<uint16_t>(1000 + i * 10), static_cast<uint16_t>(1005 + i * 10)});
  ranges.push_back({80, 80});
  ranges.push_back({2000, 2100});
  auto gr = pack_multiport(ranges);
  REQUIRE(gr.size() == 2);
  CHECK(gr[0].size() == 8);
  CHECK(gr[0].back() == PortRange{80, 80});
  CHECK(gr[1] == std::vector<PortRange>{{2000, 2100}});

  // 14 single ports then a range: the range does not fit in the 15th slot.
  std::vector<PortRange> tail(fifteen.begin(), fifteen.begin() + 14);
  tail.push_back({100, 200});
  auto gt = pack_multiport(tail);
  REQUIRE(gt.size() == 2);
  CHECK(gt[0].size() == 14);
  CHECK(gt[1] == std::vector<PortRange>{{100, 200}});
}

TEST_CASE("chain names") {
  CHECK(is_builtin_chain("nat", "PREROUTING"));
  CHECK(is_builtin_chain("nat", "POSTROUTING"));
  CHECK_FALSE(is_builtin_chain("nat", "FORWARD"));
  CHECK(is_builtin_chain("mangle", "FORWARD"));
  CHECK(is_builtin_chain("raw", "OUTPUT"));
  CHECK_FALSE(is_builtin_chain("raw", "INPUT"));
  CHECK(is_builtin_chain("filter", "INPUT"));
  CHECK_FALSE(is_builtin_chain("filter", "PREROUTING"));
  CHECK_FALSE(is_builtin_chain("nat", "WEIR_OUTPUT"));
  CHECK(is_weir_chain("WEIR_OUTPUT"));
  CHECK_FALSE(is_weir_chain("ISTIO_OUTPUT"));
  Rule r;
  r.target = Jump{"WEIR_OUTPUT"};
  CHECK(is_weir_jump(r));
  r.target = Jump{"KUBE-SERVICES"};
  CHECK_FALSE(is_weir_jump(r));
  r.target = Verdict{Verdict::Return};
  CHECK_FALSE(is_weir_jump(r));
  CHECK(std::string(to_string(Family::V6)) == "ipv6");
  CHECK(std::string(to_string(Proto::Any)) == "all");
  CHECK(std::string(to_string(Proto::Udp)) == "udp");
}

TEST_CASE("find in Table, Ruleset, RulePlan") {
  RulePlan p;
  p.rulesets.push_back(Ruleset{Family::V6, {Table{"nat", {Chain{"WEIR_OUTPUT", {}}}}}});
  CHECK(p.find(Family::V4) == nullptr);
  REQUIRE(p.find(Family::V6) != nullptr);
  REQUIRE(p.find(Family::V6)->find("nat") != nullptr);
  CHECK(p.find(Family::V6)->find("mangle") == nullptr);
  CHECK(p.find(Family::V6)->find("nat")->find("WEIR_OUTPUT") != nullptr);
  CHECK(p.find(Family::V6)->find("nat")->find("WEIR_DNS") == nullptr);
}

TEST_CASE("the default spec is valid") {
  CHECK(validate(CaptureSpec{}).ok());
  CaptureSpec s;
  s.proxy_uids.clear();
  CHECK(validate(s).ok());  // the GIDs alone identify the proxy
  s.proxy_gids.clear();
  check_invalid(s, {"proxyUids", "proxyGids", "empty", "loop"});
  s = {};
  CHECK(families(CaptureSpec{}) == std::vector<Family>{Family::V4, Family::V6});
  s.ip_families = IpFamilies::V6;
  CHECK(families(s) == std::vector<Family>{Family::V6});
}

TEST_CASE("validate: ports") {
  CaptureSpec s;
  s.outbound_port = 0;
  check_invalid(s, {"outboundPort", "0 is not a port"});
  s = {};
  s.inbound_port = 0;
  check_invalid(s, {"inboundPort", "0 is not a port"});
  s = {};
  s.outbound_port = s.inbound_port = 15001;
  check_invalid(s, {"outboundPort", "inboundPort", "15001"});
  s = {};
  s.exclude_inbound_ports = {{9000, 8000}};
  check_invalid(s, {"excludeInboundPorts", "reversed"});
  s = {};
  s.exclude_outbound_ports = {{0, 0}};
  check_invalid(s, {"excludeOutboundPorts", "0 is not a port"});
  s = {};
  s.inbound_ports = std::vector<PortRange>{{80, 80}, {90, 85}};
  check_invalid(s, {"inboundPorts", "reversed"});
  s = {};
  s.outbound_ports = std::vector<PortRange>{{0, 10}};
  check_invalid(s, {"outboundPorts"});
}

TEST_CASE("validate: dns port collisions only when capturing DNS") {
  CaptureSpec s;
  s.dns.port = 15001;
  CHECK(validate(s).ok());
  s.dns.capture = true;
  check_invalid(s, {"dns.port", "outboundPort"});
  s.dns.port = 15006;
  check_invalid(s, {"dns.port", "inboundPort"});
  s.dns.port = 0;
  check_invalid(s, {"dns.port", "0 is not a port"});
  s.dns.port = 15053;
  CHECK(validate(s).ok());
}

TEST_CASE("validate: CIDRs and families") {
  CaptureSpec s;
  s.ip_families = IpFamilies::V4;
  s.exclude_outbound_cidrs = {cidr("fd00::/8")};
  check_invalid(s, {"excludeOutboundCidrs", "fd00::/8", "IPv6", "ipFamilies is ipv4"});
  s = {};
  s.ip_families = IpFamilies::V6;
  s.outbound_cidrs = std::vector<Cidr>{cidr("198.18.0.0/15")};
  check_invalid(s, {"outboundCidrs", "IPv4", "ipFamilies is ipv6"});
  s = {};
  s.ip_families = IpFamilies::V6;
  s.exclude_inbound_cidrs = {cidr("198.18.0.0/15")};
  check_invalid(s, {"excludeInboundCidrs"});
  s = {};
  s.ip_families = IpFamilies::V4;
  s.dns.servers = {cidr("fd00::53")};
  check_invalid(s, {"dns.servers"});
  s = {};
  s.exclude_outbound_cidrs = {cidr("fd00::/8"), cidr("198.18.0.0/15")};
  CHECK(validate(s).ok());  // dual takes both

  // Hand-built CIDRs: prefix too long, host bits set.
  s = {};
  Cidr bad = cidr("198.18.0.0");
  bad.prefix = 40;
  s.exclude_outbound_cidrs = {bad};
  check_invalid(s, {"excludeOutboundCidrs", "too long"});
  bad = cidr("198.18.0.1");
  bad.prefix = 15;
  s.exclude_outbound_cidrs = {bad};
  check_invalid(s, {"excludeOutboundCidrs", "host bits set"});
}

TEST_CASE("validate: interfaces") {
  CaptureSpec s;
  s.exclude_interfaces = {""};
  check_invalid(s, {"excludeInterfaces", "empty"});
  s.exclude_interfaces = {"a-very-long-name0"};
  check_invalid(s, {"excludeInterfaces", "a-very-long-name0", "15"});
  s.exclude_interfaces = {"eth/0"};
  check_invalid(s, {"excludeInterfaces", "eth/0"});
  s.exclude_interfaces = {"eth 0"};
  check_invalid(s, {"excludeInterfaces"});
  s.exclude_interfaces = {"exactly15chars_"};
  CHECK(validate(s).ok());
  s = {};
  s.kube_virt_interfaces = {"tap0", ""};
  check_invalid(s, {"kubeVirtInterfaces"});
}

// Fuzz findings 1 and 5 (fuzz/crashes/capture_flags/json-dump-*,
// fuzz/crashes/istio_flags/render-quote-*): names that could not be printed
// back as an iptables-save line or a JSON string are refused, naming the
// field and the name (escaped, so the message itself is printable).
TEST_CASE("validate: interface names that cannot be printed") {
  CaptureSpec s;
  s.exclude_interfaces = {"et\xff"};
  check_invalid(s, {"excludeInterfaces", "et\\xff", "not ASCII"});
  CHECK(nlohmann::json(validate(s).error().message).dump().size() > 0);
  s.exclude_interfaces = {"a\"b"};
  check_invalid(s, {"excludeInterfaces", "a\\x22b", "quote"});
  s = {};
  s.kube_virt_interfaces = {"a'b"};
  check_invalid(s, {"kubeVirtInterfaces", "a\\x27b"});
  s.kube_virt_interfaces = {"tab\x01"};
  check_invalid(s, {"kubeVirtInterfaces", "tab\\x01", "control"});
  s.kube_virt_interfaces = {"del\x7f"};
  check_invalid(s, {"kubeVirtInterfaces", "del\\x7f"});
  s.kube_virt_interfaces = {"eth0.100", "veth-a_b@1"};
  CHECK(validate(s).ok());
  CHECK(message_of(parse_interface_list("excludeInterfaces", "eth0,a\"b")).find("excludeInterfaces") !=
        std::string::npos);
}

TEST_CASE("validate: tproxy mark and table") {
  CaptureSpec s;
  s.tproxy_mark = 0;
  check_invalid(s, {"tproxyMark"});
  s = {};
  s.tproxy_route_table = 0;
  check_invalid(s, {"tproxyRouteTable"});
  s.tproxy_route_table = 254;
  check_invalid(s, {"tproxyRouteTable", "main"});
  CaptureSpec wrap;
  wrap.tproxy_mark = 0xffffffff;
  check_invalid(wrap, {"tproxyMark", "4294967295", "+ 1"});
}

TEST_CASE("list parsers") {
  CHECK(parse_port_list("excludeInboundPorts", "")->empty());
  CHECK(*parse_port_list("p", "80, 8000-8100 ,9090") ==
        std::vector<PortRange>{{80, 80}, {8000, 8100}, {9090, 9090}});
  CHECK(message_of(parse_port_list("excludeInboundPorts", "80,x")) ==
        "excludeInboundPorts: \"80,x\": \"x\" is not a port");
  CHECK(message_of(parse_port_list("excludeInboundPorts", "x")) == "excludeInboundPorts: \"x\" is not a port");
  CHECK(message_of(parse_port_list("p", "80,,81")).find("empty item") != std::string::npos);
  CHECK(message_of(parse_port_list("p", "70000")).find("70000 is not a port") != std::string::npos);
  CHECK(message_of(parse_port_list("p", "*")).find("\"*\" is not a port") != std::string::npos);

  auto all = parse_port_selector("inboundPorts", "*");
  REQUIRE(all.ok());
  CHECK_FALSE(all->has_value());
  auto none = parse_port_selector("inboundPorts", "");
  REQUIRE(none.ok());
  REQUIRE(none->has_value());
  CHECK((*none)->empty());

  CHECK(parse_cidr_list("x", "")->empty());
  CHECK(parse_cidr_list("x", "198.18.0.0/15,fd00::/8")->size() == 2);
  CHECK(message_of(parse_cidr_list("excludeOutboundCidrs", "198.18.0.0/15,198.18.0.1/15"))
            .find("excludeOutboundCidrs: \"198.18.0.0/15,198.18.0.1/15\": 198.18.0.1/15: host bits set") == 0);
  auto star = parse_cidr_selector("outboundCidrs", "*");
  REQUIRE(star.ok());
  CHECK_FALSE(star->has_value());

  CHECK(*parse_id_list("proxyUids", "1337, 0,4294967295") == std::vector<uint32_t>{1337, 0, 4294967295u});
  CHECK(message_of(parse_id_list("proxyUids", "1337,istio")) ==
        "proxyUids: \"1337,istio\": \"istio\" is not a numeric id (0-4294967295)");
  CHECK_FALSE(parse_id_list("proxyUids", "4294967296").ok());
  CHECK_FALSE(parse_id_list("proxyUids", "-1").ok());

  CHECK(*parse_interface_list("excludeInterfaces", "eth1,tap0") == std::vector<std::string>{"eth1", "tap0"});
  CHECK(message_of(parse_interface_list("excludeInterfaces", "eth1,waytoolonginterface"))
            .find("excludeInterfaces") == 0);

  CHECK(*parse_ip_families("dual") == IpFamilies::Dual);
  CHECK(*parse_ip_families("ipv6") == IpFamilies::V6);
  CHECK(message_of(parse_ip_families("ipv5")).find("ipFamilies") != std::string::npos);
  CHECK(*parse_inbound_mode("TPROXY") == InboundMode::Tproxy);
  CHECK(*parse_inbound_mode("redirect") == InboundMode::Redirect);
  CHECK_FALSE(parse_inbound_mode("nat").ok());
}

TEST_CASE("JSON: unknown keys and wrong types") {
  check_json_invalid(json{{"foo", 1}}, {"unknown key \"foo\" in capture spec"});
  check_json_invalid(json{{"dns", {{"foo", 1}}}}, {"unknown key \"dns.foo\" in capture spec"});
  check_json_invalid(json{{"outboundPort", "15001"}}, {"outboundPort", "expected a port number", "string"});
  check_json_invalid(json{{"outboundPort", 70000}}, {"outboundPort", "70000 is not a port"});
  check_json_invalid(json{{"outboundPort", -1}}, {"outboundPort", "-1 is not a port"});
  check_json_invalid(json{{"outboundPort", 0}}, {"outboundPort", "0 is not a port"});
  check_json_invalid(json{{"outboundPort", 15006}}, {"outboundPort", "inboundPort"});
  check_json_invalid(json{{"proxyUids", true}}, {"proxyUids", "expected"});
  check_json_invalid(json{{"proxyUids", json::array({1337, "x"})}}, {"proxyUids[1]", "string"});
  check_json_invalid(json{{"inboundPorts", 80}}, {"inboundPorts", "expected", "number"});
  check_json_invalid(json{{"inboundPorts", json::array({80, true})}}, {"inboundPorts[1]", "boolean"});
  check_json_invalid(json{{"inboundPorts", json::array({80, "9000-8000"})}}, {"inboundPorts[1]", "reversed"});
  check_json_invalid(json{{"excludeInboundPorts", "*"}}, {"excludeInboundPorts", "\"*\" is not a port"});
  check_json_invalid(json{{"excludeOutboundCidrs", "*"}}, {"excludeOutboundCidrs"});
  check_json_invalid(json{{"excludeOutboundCidrs", json::array({"10.0.0.1/8"})}},
                     {"excludeOutboundCidrs[0]", "host bits set"});
  check_json_invalid(json{{"excludeInterfaces", json::array({1})}}, {"excludeInterfaces[0]", "number"});
  check_json_invalid(json{{"ipFamilies", 4}}, {"ipFamilies", "expected a string"});
  check_json_invalid(json{{"ipFamilies", "ipv4"}, {"excludeOutboundCidrs", "fd00::/8"}},
                     {"excludeOutboundCidrs", "ipFamilies is ipv4"});
  check_json_invalid(json{{"mode", "nat"}}, {"mode"});
  check_json_invalid(json{{"dropInvalid", "yes"}}, {"dropInvalid", "true or false"});
  check_json_invalid(json{{"dns", true}}, {"dns", "object"});
  check_json_invalid(json{{"dns", {{"capture", true}, {"port", 15001}}}}, {"dns.port", "outboundPort"});
  check_json_invalid(json{{"dns", {{"servers", 1}}}}, {"dns.servers"});
  check_json_invalid(json{{"tproxyMark", 0}}, {"tproxyMark"});
  check_json_invalid(json{{"tproxyMark", -5}}, {"tproxyMark"});
  check_json_invalid(json::array({1}), {"expected a JSON object"});
}

TEST_CASE("JSON: merge layers over what is there and fails without changes") {
  CaptureSpec s;
  s.outbound_port = 4140;
  REQUIRE(merge_json(s, json{{"inboundPort", 4143}}).ok());
  CHECK(s.outbound_port == 4140);
  CHECK(s.inbound_port == 4143);

  const CaptureSpec before = s;
  CHECK_FALSE(merge_json(s, json{{"inboundPort", 1}, {"bogus", 1}}).ok());
  CHECK(s == before);
}

TEST_CASE("JSON: proxyGids defaults to proxyUids") {
  auto s = spec_from_json(json{{"proxyUids", json::array({2102, 7})}});
  REQUIRE_MESSAGE(s.ok(), message_of(s));
  CHECK(s->proxy_uids == std::vector<uint32_t>{2102, 7});
  CHECK(s->proxy_gids == std::vector<uint32_t>{2102, 7});

  s = spec_from_json(json{{"proxyUids", "2102"}, {"proxyGids", "3000"}});
  REQUIRE(s.ok());
  CHECK(s->proxy_gids == std::vector<uint32_t>{3000});

  s = spec_from_json(json{{"proxyGids", json::array({5})}});
  REQUIRE(s.ok());
  CHECK(s->proxy_uids == std::vector<uint32_t>{1337});
  CHECK(s->proxy_gids == std::vector<uint32_t>{5});

  s = spec_from_json(json{{"proxyUids", json::array()}, {"proxyGids", "7"}});
  REQUIRE(s.ok());
  CHECK(s->proxy_uids.empty());
  CHECK(s->proxy_gids == std::vector<uint32_t>{7});

  // Nothing left to tell the proxy by: its traffic would loop back into it.
  s = spec_from_json(json{{"proxyUids", json::array()}});
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("proxyUids and proxyGids are both empty") != std::string::npos);
}

TEST_CASE("JSON: selectors and list forms") {
  auto s = spec_from_json(json{{"inboundPorts", "*"}, {"outboundPorts", "80,443"}, {"outboundCidrs", "*"}});
  REQUIRE_MESSAGE(s.ok(), message_of(s));
  CHECK_FALSE(s->inbound_ports.has_value());
  REQUIRE(s->outbound_ports.has_value());
  CHECK(*s->outbound_ports == std::vector<PortRange>{{80, 80}, {443, 443}});
  CHECK_FALSE(s->outbound_cidrs.has_value());

  s = spec_from_json(json{{"inboundPorts", json::array({8080, "9000-9100", "9200:9300"})},
                          {"outboundCidrs", json::array({"198.18.0.0/15", "fd00::/8"})},
                          {"excludeInboundPorts", ""},
                          {"excludeInterfaces", "eth1, eth2"}});
  REQUIRE_MESSAGE(s.ok(), message_of(s));
  CHECK(*s->inbound_ports == std::vector<PortRange>{{8080, 8080}, {9000, 9100}, {9200, 9300}});
  CHECK(s->outbound_cidrs->size() == 2);
  CHECK(s->exclude_inbound_ports.empty());
  CHECK(s->exclude_interfaces == std::vector<std::string>{"eth1", "eth2"});

  s = spec_from_json(json{{"inboundPorts", json::array()}});
  REQUIRE(s.ok());
  REQUIRE(s->inbound_ports.has_value());
  CHECK(s->inbound_ports->empty());
}

TEST_CASE("JSON: to_json round trips") {
  CHECK(*spec_from_json(to_json(CaptureSpec{})) == CaptureSpec{});

  CaptureSpec s;
  s.outbound_port = 4140;
  s.inbound_port = 4143;
  s.proxy_uids = {2102};
  s.proxy_gids = {};
  s.inbound_ports = std::vector<PortRange>{{80, 80}, {8000, 8100}};
  s.exclude_inbound_ports = {};
  s.exclude_inbound_cidrs = {cidr("198.18.4.0/24")};
  s.inbound_tunnel_port = 0;
  s.outbound_cidrs = std::vector<Cidr>{cidr("198.18.0.0/15"), cidr("fd00::/8")};
  s.exclude_outbound_cidrs = {cidr("198.18.1.1")};
  s.outbound_ports = std::vector<PortRange>{};
  s.exclude_outbound_ports = {{3306, 3306}, {5000, 5100}};
  s.exclude_interfaces = {"eth1"};
  s.kube_virt_interfaces = {"tap0", "tap1"};
  s.mode = InboundMode::Tproxy;
  s.tproxy_mark = 0x539;
  s.tproxy_route_table = 200;
  s.dns = DnsCapture{true, false, 5353, {cidr("198.18.0.10"), cidr("fd00::10")}};
  s.drop_invalid = true;
  REQUIRE(validate(s).ok());
  const json j = to_json(s);
  auto back = spec_from_json(j);
  REQUIRE_MESSAGE(back.ok(), message_of(back));
  CHECK(*back == s);
  CHECK(j["inboundPorts"] == json::array({80, "8000-8100"}));
  CHECK(j["outboundCidrs"] == json::array({"198.18.0.0/15", "fd00::/8"}));
  CHECK(to_json(CaptureSpec{})["inboundPorts"] == "*");

  s.ip_families = IpFamilies::V4;
  s.outbound_cidrs.reset();
  s.dns.servers = {};
  CHECK(*spec_from_json(to_json(s)) == s);
}
