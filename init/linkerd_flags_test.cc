#include "init/linkerd_flags.h"

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

namespace weir {
namespace {

Result<LinkerdCommand> linkerd(std::vector<std::string> args) {
  CLI::App app;
  LinkerdFlags f;
  bind_linkerd_flags(app, f);
  std::vector<const char*> argv{"proxy-init"};
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  return linkerd_command(f);
}

std::vector<PortRange> ports(std::initializer_list<PortRange> ps) { return ps; }

}  // namespace

TEST_CASE("linkerd: the chart's command line") {
  auto c = linkerd({"--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102",
                    "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"});
  REQUIRE(c.ok());
  const CaptureSpec& s = c->spec;
  CHECK(s.inbound_port == 4143);
  CHECK(s.outbound_port == 4140);
  CHECK(s.proxy_uids == std::vector<uint32_t>{2102});
  CHECK(s.proxy_gids.empty());
  CHECK(s.inbound_tunnel_port == 0);
  CHECK_FALSE(s.inbound_ports.has_value());
  CHECK(s.exclude_inbound_ports == ports({{4190, 4190}, {4191, 4191}, {4567, 4567}, {4568, 4568}}));
  CHECK(s.exclude_outbound_ports == ports({{4567, 4567}, {4568, 4568}}));
  CHECK_FALSE(s.outbound_cidrs.has_value());
  CHECK(s.ip_families == IpFamilies::Dual);
  CHECK(s.exclude_interfaces == std::vector<std::string>{"lo"});  // Linkerd: out via lo -> RETURN, proxy included
  CHECK_FALSE(c->simulate);
  CHECK(c->notes.empty());
}

TEST_CASE("linkerd: 4190 and 4191 are never captured, and nothing of Istio's is excluded") {
  // The proxy by its GID alone: the spec refuses neither UID nor GID (a loop).
  auto c = linkerd({"-p", "4143", "-o", "4140", "-g", "2102"});
  REQUIRE(c.ok());
  CHECK(c->spec.exclude_inbound_ports == ports({{4190, 4190}, {4191, 4191}}));
  CHECK(c->spec.inbound_tunnel_port == 0);
  CHECK(c->spec.proxy_uids.empty());  // no default UID
  CHECK(c->spec.proxy_gids == std::vector<uint32_t>{2102});
}

TEST_CASE("linkerd: ranges, repeated flags, subnets, ports to redirect") {
  auto c = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "-g", "2103", "--outbound-ports-to-ignore", "8000-8100",
                    "--outbound-ports-to-ignore", "9000", "--inbound-ports-to-ignore", "7000-7010",
                    "--subnets-to-ignore", "198.18.5.0/24,fd00:5::/64", "-r", "8080", "--ports-to-redirect", "9090"});
  REQUIRE(c.ok());
  CHECK(c->spec.exclude_outbound_ports == ports({{8000, 8100}, {9000, 9000}}));
  CHECK(c->spec.exclude_inbound_ports == ports({{4190, 4190}, {4191, 4191}, {7000, 7010}}));
  CHECK(c->spec.exclude_inbound_cidrs.size() == 2);
  CHECK(c->spec.inbound_ports == std::optional(ports({{8080, 8080}, {9090, 9090}})));
  CHECK(c->spec.proxy_gids == std::vector<uint32_t>{2103});
}

TEST_CASE("linkerd: --ipv6=false is IPv4 only; --simulate; netns") {
  auto c =
      linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--ipv6=false", "--simulate", "--netns", "/proc/1/ns/net"});
  REQUIRE(c.ok());
  CHECK(c->spec.ip_families == IpFamilies::V4);
  CHECK(c->simulate);
  CHECK(c->netns == "/proc/1/ns/net");
}

TEST_CASE("linkerd: flags about running iptables are accepted and explained") {
  auto c = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode=nft", "-w", "--firewall-bin-path",
                    "iptables-nft"});
  REQUIRE(c.ok());
  CHECK(c->notes.size() == 2);
  // nft asked for rules weir does not write: a warning saying where they are.
  REQUIRE(c->warnings.size() == 1);
  CHECK(c->warnings[0].find("--iptables-mode=nft changes nothing") != std::string::npos);
  CHECK(c->warnings[0].find("legacy xtables") != std::string::npos);
  auto legacy = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode", "legacy"});
  REQUIRE(legacy.ok());
  CHECK(legacy->warnings.empty());
  REQUIRE(legacy->notes.size() == 1);
  CHECK(legacy->notes[0].find("legacy xtables") != std::string::npos);
  auto bad = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode=bogus"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("--iptables-mode") != std::string::npos);
}

TEST_CASE("linkerd: errors name the flag") {
  auto no_in = linkerd({"-o", "4140"});
  REQUIRE_FALSE(no_in.ok());
  CHECK(no_in.error().message.find("--incoming-proxy-port") != std::string::npos);
  auto bad_range = linkerd({"-p", "4143", "-o", "4140", "--outbound-ports-to-ignore", "9000-8000"});
  REQUIRE_FALSE(bad_range.ok());
  CHECK(bad_range.error().message.find("--outbound-ports-to-ignore") != std::string::npos);
  auto bad_subnet = linkerd({"-p", "4143", "-o", "4140", "--subnets-to-ignore", "198.18.0.0/99"});
  REQUIRE_FALSE(bad_subnet.ok());
  CHECK(bad_subnet.error().message.find("--subnets-to-ignore") != std::string::npos);
  auto no_proxy = linkerd({"-p", "4143", "-o", "4140"});  // -1 for both: the proxy would loop
  REQUIRE_FALSE(no_proxy.ok());
  CHECK(no_proxy.error().message.find("--proxy-uid") != std::string::npos);
  CHECK_THROWS_WITH_AS(linkerd({"-p", "4143", "-o", "4140", "--timeout-close-wait-secs", "5"}),
                       doctest::Contains("--timeout-close-wait-secs"), CLI::ParseError);
}


TEST_CASE("linkerd: --iptables-mode nft selects nftables, legacy iptables, plain auto") {
  auto nft = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode", "nft"});
  REQUIRE(nft.ok());
  CHECK(nft->spec.backend == FilterBackend::Nftables);
  auto legacy = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode", "legacy"});
  REQUIRE(legacy.ok());
  CHECK(legacy->spec.backend == FilterBackend::Iptables);
  auto plain = linkerd({"-p", "4143", "-o", "4140", "-u", "2102", "--iptables-mode", "plain"});
  REQUIRE(plain.ok());
  CHECK(plain->spec.backend == FilterBackend::Auto);
  auto none = linkerd({"-p", "4143", "-o", "4140", "-u", "2102"});
  REQUIRE(none.ok());
  CHECK(none->spec.backend == FilterBackend::Auto);
}

}  // namespace weir
