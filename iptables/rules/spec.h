// CaptureSpec: the one input every front end builds (from flags, a JSON config,
// CNI config plus pod annotations, or Istio/Linkerd command lines). The JSON
// names below are the keys of a config file and of the CNI config's "capture"
// object; keep them stable. Every input's name for a field (JSON key, flag,
// environment variable, annotation) and its parser come from one table,
// rules/spec_fields.h: add a field there, and every input has it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/error.h"
#include "rules/model.h"

namespace weir {

enum class IpFamilies { V4, V6, Dual };
enum class InboundMode { Redirect, Tproxy };
// Which packet filter interface installs the rules. Auto: nftables when the
// namespace's kernel takes weir's ruleset, else legacy iptables (the choice
// is made by ops, not by the planner, which ignores this field).
enum class FilterBackend { Auto, Nftables, Iptables };
// Whether the outbound excludes (excludeOutboundCidrs, excludeOutboundPorts)
// apply to TCP arriving on a kube-virt interface, which is captured as
// outbound. Apply (weir's default): a VM behind the pod is excluded from what
// the pod is excluded from, since an excluded CIDR or port says "never
// through the proxy". Ignore: only the outbound includes select it, as
// istio-iptables does (its kube-virt rule jumps straight to the redirect);
// weir-init's Istio dialect sets it.
enum class KubeVirtExcludes { Apply, Ignore };

struct DnsCapture {
  bool capture = false;            // "capture": redirect apps' DNS to `port`
  bool capture_all = true;         // "captureAll": all port-53 traffic, not only `servers`
  uint16_t port = 15053;           // "port"
  std::vector<Cidr> servers;       // "servers": nameservers when !capture_all
  bool operator==(const DnsCapture&) const = default;
};

struct CaptureSpec {
  uint16_t outbound_port = 15001;                   // outboundPort
  uint16_t inbound_port = 15006;                    // inboundPort
  std::vector<uint32_t> proxy_uids{1337};           // proxyUids
  std::vector<uint32_t> proxy_gids{1337};           // proxyGids (defaults to the UIDs)
  // nullopt = "*" (all). An empty list captures nothing in that direction.
  std::optional<std::vector<PortRange>> inbound_ports;   // inboundPorts
  std::vector<PortRange> exclude_inbound_ports{{15020, 15020}, {15021, 15021}, {15090, 15090}};  // excludeInboundPorts
  std::vector<Cidr> exclude_inbound_cidrs;          // excludeInboundCidrs (source addresses)
  uint16_t inbound_tunnel_port = 15008;             // inboundTunnelPort: never captured inbound; 0 = none
  std::optional<std::vector<Cidr>> outbound_cidrs;  // outboundCidrs
  std::vector<Cidr> exclude_outbound_cidrs;         // excludeOutboundCidrs
  std::optional<std::vector<PortRange>> outbound_ports;  // outboundPorts
  std::vector<PortRange> exclude_outbound_ports;    // excludeOutboundPorts
  std::vector<std::string> exclude_interfaces;      // excludeInterfaces
  std::vector<std::string> kube_virt_interfaces;    // kubeVirtInterfaces
  KubeVirtExcludes kube_virt_excludes = KubeVirtExcludes::Apply;  // kubeVirtExcludes: "apply" | "ignore"
  IpFamilies ip_families = IpFamilies::Dual;        // ipFamilies: "ipv4" | "ipv6" | "dual"
  InboundMode mode = InboundMode::Redirect;         // mode: "redirect" | "tproxy"
  uint32_t tproxy_mark = 1337;                      // tproxyMark
  uint32_t tproxy_route_table = 133;                // tproxyRouteTable
  DnsCapture dns;                                   // dns: {capture, captureAll, port, servers}
  bool drop_invalid = false;                        // dropInvalid
  FilterBackend backend = FilterBackend::Auto;      // backend: "auto" | "nftables" | "iptables"

  bool operator==(const CaptureSpec&) const = default;
};

// Checks every field; the message names the field and the bad value, e.g.
// "outboundPort: 0 is not a port (1-65535)".
Status validate(const CaptureSpec& spec);

// Reads a JSON object into `spec`, starting from the values already in it (so
// a config file can be layered over defaults and flags over the file).
// Unknown keys and wrong types are errors naming the key. Validates the result
// unless `check` is Defer: a caller that layers more on top (flags over a
// config file) validates once, at the end, so the file alone need not be valid.
enum class MergeCheck { Validate, Defer };
Status merge_json(CaptureSpec& spec, const nlohmann::json& j, MergeCheck check = MergeCheck::Validate);
Result<CaptureSpec> spec_from_json(const nlohmann::json& j);
nlohmann::json to_json(const CaptureSpec& spec);

// List parsers shared by flags, annotations and JSON (the grammar is written
// out in rules/spec_fields.h). `what` names the field in error messages. Items
// are separated by commas (spaces around them allowed). A bad item is named
// with its position and the whole text is quoted only when short, so an
// error about a 10,000-item list stays a line.
Result<std::vector<PortRange>> parse_port_list(const std::string& what, const std::string& text);
// "*" gives nullopt (all); anything else a list (empty string = empty list).
Result<std::optional<std::vector<PortRange>>> parse_port_selector(const std::string& what, const std::string& text);
Result<std::vector<Cidr>> parse_cidr_list(const std::string& what, const std::string& text);
Result<std::optional<std::vector<Cidr>>> parse_cidr_selector(const std::string& what, const std::string& text);
Result<std::vector<uint32_t>> parse_id_list(const std::string& what, const std::string& text);
Result<std::vector<std::string>> parse_interface_list(const std::string& what, const std::string& text);
Result<IpFamilies> parse_ip_families(const std::string& text);
Result<InboundMode> parse_inbound_mode(const std::string& text);
Result<FilterBackend> parse_filter_backend(const std::string& text);
Result<KubeVirtExcludes> parse_kube_virt_excludes(const std::string& text);
const char* to_string(IpFamilies f);
const char* to_string(InboundMode m);
const char* to_string(FilterBackend b);  // "auto" / "nftables" / "iptables"
const char* to_string(KubeVirtExcludes k);  // "apply" / "ignore"

// Appends the items of `items` not yet in `to`, keeping order; near-linear
// (a hash of what is there), so a 30,000-entry annotation costs milliseconds.
void append_unique(std::vector<PortRange>& to, const std::vector<PortRange>& items);
void append_unique(std::vector<Cidr>& to, const std::vector<Cidr>& items);
void append_unique(std::vector<std::string>& to, const std::vector<std::string>& items);

// The families a spec asks for, V4 first.
std::vector<Family> families(const CaptureSpec& spec);

}  // namespace weir
