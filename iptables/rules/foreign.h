// Other capture tools' rules in a pod's namespace: Istio's ISTIO_* chains or
// istio-proxy-* nftables tables, Linkerd's PROXY_INIT_* chains, and the like.
// weir never deletes or changes them (they are not weir's), but a pod that
// two tools capture may have its traffic captured twice, or by whichever NAT
// binding happens first: apply reports them as a warning, check as a problem.
// Pure: the packet filters list table and chain names (only names: never
// another tool's rules) and these functions say whose they are.
#pragma once

#include <string>
#include <vector>

namespace weir {

struct ForeignRules {
  std::string tool;     // "Istio", "Linkerd"
  std::string backend;  // "legacy iptables", "legacy ip6tables", "iptables-nft", "nftables"
  std::string table;    // "nat" (legacy), "ip6 mangle" (iptables-nft), "inet istio-proxy-nat" (nftables)
  // The tool's chains in that table, in the order listed; empty when the
  // whole table is the tool's (a native nftables table).
  std::vector<std::string> chains;
  bool operator==(const ForeignRules&) const = default;
};

// The capture tool that names its chains like `chain` ("ISTIO_OUTPUT":
// "Istio"; "PROXY_INIT_REDIRECT": "Linkerd"), or nullptr.
const char* capture_tool_of_chain(const std::string& chain);

// The capture tool whose own nftables table `table` is ("istio-proxy-nat":
// "Istio"), or nullptr.
const char* capture_tool_of_table(const std::string& table);

// Other tools' chains among the chain names of one table, one entry per tool
// (in the order each tool's first chain comes), each with its chains in
// listed order; empty when there are none.
std::vector<ForeignRules> foreign_chains(const std::string& backend, const std::string& table,
                                         const std::vector<std::string>& chains);

// One line for a warning or a check problem, e.g. "Istio's ISTIO_INBOUND,
// ISTIO_OUTPUT in legacy iptables nat: another capture tool's rules; weir
// leaves them, but traffic may be captured twice".
std::string describe(const ForeignRules& f);

// The same after weir removed its own rules (clean): "Istio's ISTIO_INBOUND,
// ISTIO_OUTPUT in legacy iptables nat remain: another capture tool's rules,
// which weir does not remove; that tool may still capture the traffic".
std::string describe_remaining(const ForeignRules& f);

}  // namespace weir
