// Other capture tools' rules in nf_tables (internal to kernel/nft/): table
// names of every family, and chain names of the ip/ip6 nat, mangle and raw
// tables iptables-nft makes. Names only: no rule, set or element of another
// table is ever dumped (NFTABLES.md: the version-skew crashes), and nothing
// is changed.
#pragma once

#include <vector>

#include "kernel/nft/netlink.h"
#include "rules/foreign.h"

namespace weir::nft::netlink {

// Istio's istio-proxy-* tables (nftables), and Istio's, Linkerd's (...)
// chains in iptables-nft's tables: one GETTABLE dump of every family, then
// one GETCHAIN dump per family that has such a table.
Result<std::vector<ForeignRules>> foreign_rules(Socket& s);

}  // namespace weir::nft::netlink
