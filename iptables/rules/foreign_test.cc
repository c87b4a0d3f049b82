#include "rules/foreign.h"

#include <doctest/doctest.h>

namespace weir {

TEST_CASE("foreign: chains and tables are attributed to the capture tool that names them so") {
  CHECK(std::string(capture_tool_of_chain("ISTIO_OUTPUT")) == "Istio");
  CHECK(std::string(capture_tool_of_chain("ISTIO_INBOUND")) == "Istio");
  CHECK(std::string(capture_tool_of_chain("PROXY_INIT_REDIRECT")) == "Linkerd");
  CHECK(std::string(capture_tool_of_chain("KUMA_MESH_INBOUND_REDIRECT")) == "Kuma");
  CHECK(std::string(capture_tool_of_chain("CONSUL_DNS_REDIRECT")) == "Consul");
  // weir's own, the built-in chains and other tools' are nobody's.
  CHECK(capture_tool_of_chain("WEIR_OUTPUT") == nullptr);
  CHECK(capture_tool_of_chain("PREROUTING") == nullptr);
  CHECK(capture_tool_of_chain("KUBE-SERVICES") == nullptr);
  CHECK(capture_tool_of_chain("ISTIO_") == nullptr);       // a bare prefix names no chain
  CHECK(capture_tool_of_chain("istio_output") == nullptr);  // chain names are case-sensitive
  CHECK(std::string(capture_tool_of_table("istio-proxy-nat")) == "Istio");
  CHECK(std::string(capture_tool_of_table("istio-proxy-raw")) == "Istio");
  CHECK(capture_tool_of_table("weir") == nullptr);
  CHECK(capture_tool_of_table("nat") == nullptr);
  CHECK(capture_tool_of_table("filter") == nullptr);
}

TEST_CASE("foreign: a table's chains are grouped per tool, in listed order; none gives nothing") {
  auto f = foreign_chains("legacy iptables", "nat",
                          {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "ISTIO_INBOUND", "PROXY_INIT_OUTPUT",
                           "ISTIO_IN_REDIRECT", "WEIR_OUTPUT", "ISTIO_OUTPUT", "PROXY_INIT_REDIRECT"});
  REQUIRE(f.size() == 2);
  CHECK(f[0] == ForeignRules{"Istio", "legacy iptables", "nat", {"ISTIO_INBOUND", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"}});
  CHECK(f[1] == ForeignRules{"Linkerd", "legacy iptables", "nat", {"PROXY_INIT_OUTPUT", "PROXY_INIT_REDIRECT"}});
  CHECK(foreign_chains("iptables-nft", "ip nat", {"PREROUTING", "OUTPUT", "WEIR_OUTPUT", "KUBE-X"}).empty());
  CHECK(foreign_chains("iptables-nft", "ip nat", {}).empty());
}

TEST_CASE("foreign: the message names the tool, the backend, the table and the chains") {
  CHECK(describe(ForeignRules{"Istio", "legacy iptables", "nat", {"ISTIO_INBOUND", "ISTIO_OUTPUT"}}) ==
        "Istio's ISTIO_INBOUND, ISTIO_OUTPUT in legacy iptables nat: another capture tool's rules; weir leaves "
        "them, but traffic may be captured twice");
  CHECK(describe(ForeignRules{"Linkerd", "iptables-nft", "ip6 nat", {"PROXY_INIT_REDIRECT"}}) ==
        "Linkerd's PROXY_INIT_REDIRECT in iptables-nft ip6 nat: another capture tool's rules; weir leaves them, but "
        "traffic may be captured twice");
  CHECK(describe(ForeignRules{"Istio", "nftables", "inet istio-proxy-nat", {}}) ==
        "Istio's table inet istio-proxy-nat in nftables: another capture tool's rules; weir leaves them, but "
        "traffic may be captured twice");
  // A long list is cut, and says by how much.
  ForeignRules many{"Istio", "legacy iptables", "nat", {}};
  for (int i = 0; i < 11; ++i) many.chains.push_back("ISTIO_C" + std::to_string(i));
  const std::string line = describe(many);
  CHECK(line.find("ISTIO_C7 and 3 more in legacy iptables nat:") != std::string::npos);
  CHECK(line.find("ISTIO_C8") == std::string::npos);
}

}  // namespace weir

namespace weir {

TEST_CASE("foreign: after clean, the message says the other tool's rules remain") {
  CHECK(describe_remaining(ForeignRules{"Linkerd", "legacy iptables", "nat", {"PROXY_INIT_OUTPUT", "PROXY_INIT_REDIRECT"}}) ==
        "Linkerd's PROXY_INIT_OUTPUT, PROXY_INIT_REDIRECT in legacy iptables nat remain: another capture tool's "
        "rules, which weir does not remove; that tool may still capture the traffic");
  CHECK(describe_remaining(ForeignRules{"Istio", "nftables", "inet istio-proxy-nat", {}}).find(
            "Istio's table inet istio-proxy-nat in nftables remains: ") == 0);
}

}  // namespace weir
