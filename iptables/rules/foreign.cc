#include "rules/foreign.h"

#include <algorithm>

namespace weir {
namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Chain-name prefixes of the capture tools that write xtables rules (legacy
// or iptables-nft) into a pod's namespace.
struct ChainPrefix {
  const char* prefix;
  const char* tool;
};
constexpr ChainPrefix kChainPrefixes[] = {
    {"ISTIO_", "Istio"},          // istio-iptables, istio-cni, ambient
    {"PROXY_INIT_", "Linkerd"},   // linkerd proxy-init
    {"KUMA_MESH_", "Kuma"},       // kumactl install transparent-proxy
    {"CONSUL_PROXY_", "Consul"},  // consul connect redirect-traffic
    {"CONSUL_DNS_", "Consul"},
};

// Istio 1.27's native nftables mode: inet istio-proxy-nat, -mangle, -raw
// (sidecars); any other istio- table is taken to be Istio's too.
constexpr ChainPrefix kTablePrefixes[] = {
    {"istio-", "Istio"},
};

// At most this many chain names in one line; the rest are counted.
constexpr size_t kMaxNames = 8;

}  // namespace

const char* capture_tool_of_chain(const std::string& chain) {
  for (const auto& p : kChainPrefixes)
    if (starts_with(chain, p.prefix) && chain.size() > std::char_traits<char>::length(p.prefix)) return p.tool;
  return nullptr;
}

const char* capture_tool_of_table(const std::string& table) {
  for (const auto& p : kTablePrefixes)
    if (starts_with(table, p.prefix) && table.size() > std::char_traits<char>::length(p.prefix)) return p.tool;
  return nullptr;
}

std::vector<ForeignRules> foreign_chains(const std::string& backend, const std::string& table,
                                         const std::vector<std::string>& chains) {
  std::vector<ForeignRules> out;
  for (const std::string& c : chains) {
    const char* tool = capture_tool_of_chain(c);
    if (!tool) continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const ForeignRules& f) { return f.tool == tool; });
    if (it == out.end()) {
      out.push_back(ForeignRules{tool, backend, table, {}});
      it = out.end() - 1;
    }
    it->chains.push_back(c);
  }
  return out;
}

namespace {

// "Istio's ISTIO_INBOUND, ISTIO_OUTPUT in legacy iptables nat", "Istio's
// table inet istio-proxy-nat in nftables".
std::string whose(const ForeignRules& f) {
  std::string what;
  if (f.chains.empty()) {
    what = "table " + f.table + " in " + f.backend;
  } else {
    for (size_t i = 0; i < f.chains.size() && i < kMaxNames; ++i) what += (i ? ", " : "") + f.chains[i];
    if (f.chains.size() > kMaxNames) what += " and " + std::to_string(f.chains.size() - kMaxNames) + " more";
    what += " in " + f.backend + " " + f.table;
  }
  return f.tool + "'s " + what;
}

}  // namespace

std::string describe(const ForeignRules& f) {
  return whose(f) + ": another capture tool's rules; weir leaves them, but traffic may be captured twice";
}

std::string describe_remaining(const ForeignRules& f) {
  const bool one = f.chains.size() <= 1;  // a table, or one chain
  return whose(f) + (one ? " remains" : " remain") +
         ": another capture tool's rules, which weir does not remove; that tool may still capture the traffic";
}

}  // namespace weir
