#include "cni/annotations.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <optional>

#include <nlohmann/json.hpp>

#include "cni/bounded_json.h"

namespace weir::cni {

namespace {

Error bad(const std::string& what, const std::string& why) { return Error{ErrorKind::InvalidSpec, what + ": " + why}; }

Result<uint32_t> parse_u32(const std::string& what, const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    return bad(what, "\"" + text + "\" is not a non-negative integer");
  }
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0 || v > 0xffffffffull) return bad(what, text + " is larger than 4294967295");
  return static_cast<uint32_t>(v);
}

// A port number; `zero_ok` for fields where 0 means "none".
Result<uint16_t> parse_port(const std::string& what, const std::string& text, bool zero_ok = false) {
  auto v = parse_u32(what, text);
  if (!v.ok()) return v.error();
  if ((*v == 0 && !zero_ok) || *v > 65535) return bad(what, text + " is not a port (1-65535)");
  return static_cast<uint16_t>(*v);
}

Result<bool> parse_bool(const std::string& what, const std::string& text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return bad(what, "\"" + text + "\" is neither \"true\" nor \"false\"");
}

template <typename T>
void append_unique(std::vector<T>& to, const std::vector<T>& items) {
  for (const auto& i : items) {
    if (std::find(to.begin(), to.end(), i) == to.end()) to.push_back(i);
  }
}

// Assigns a parsed value to a field, or passes the parser's error on.
template <typename T, typename Field>
Status assign(Result<T> r, Field& field) {
  if (!r.ok()) return r.error();
  field = std::move(r.value());
  return {};
}

template <typename T>
Status append(Result<std::vector<T>> r, std::vector<T>& field) {
  if (!r.ok()) return r.error();
  append_unique(field, r.value());
  return {};
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// `item` ("10.0.0.1/8") with the host bits cleared ("10.0.0.0/8"), or nullopt
// when it is no CIDR at all or has no host bits set.
std::optional<std::string> masked_cidr(const std::string& item) {
  const auto slash = item.find('/');
  if (slash == std::string::npos || parse_cidr(item).ok()) return std::nullopt;
  auto host = parse_cidr(item.substr(0, slash));  // the address alone: a full-length prefix
  const std::string prefix = item.substr(slash + 1);
  if (!host.ok() || prefix.empty() || prefix.size() > 3 || prefix.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  const unsigned bits = static_cast<unsigned>(std::stoul(prefix));
  if (bits > host->prefix) return std::nullopt;
  Cidr net = *host;
  net.prefix = static_cast<uint8_t>(bits);
  for (unsigned i = 0; i < net.addr.size(); ++i) {
    const unsigned keep = bits > i * 8 ? std::min(8u, bits - i * 8) : 0;
    net.addr[i] &= static_cast<uint8_t>(0xff00u >> keep);
  }
  return format_cidr(net);
}

// Istio accepts CIDRs with host bits set in its annotations (it parses them
// with Go's netip.ParsePrefix and iptables masks them), so a pod that runs
// under Istio must not be refused here: mask them, and say so.
// Anything else is left for the list parser to judge (and name in its error).
std::string mask_istio_cidrs(const std::string& what, const std::string& text, std::vector<std::string>& warnings) {
  std::string out;
  bool masked = false;
  for (size_t start = 0;;) {
    const auto comma = text.find(',', start);
    std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (auto net = masked_cidr(item)) {
      warnings.push_back(what + ": " + item + " has host bits set; using " + *net + ", as Istio does");
      item = *net;
      masked = true;
    }
    out += (start == 0 ? "" : ",") + item;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return masked ? out : text;
}

// Istio's annotations that hold CIDR lists.
bool holds_cidrs(const std::string& istio_name) {
  return istio_name == "includeOutboundIPRanges" || istio_name == "excludeOutboundIPRanges";
}

using Setter = std::function<Status(CaptureSpec&, const std::string& what, const std::string& value)>;

// weir.dev/<jsonKey>: one per CaptureSpec field, replacing its value.
const std::map<std::string, Setter>& weir_setters() {
  static const std::map<std::string, Setter> kSetters{
      {"outboundPort", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port(w, v), s.outbound_port); }},
      {"inboundPort", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port(w, v), s.inbound_port); }},
      {"inboundTunnelPort", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port(w, v, true), s.inbound_tunnel_port); }},
      {"proxyUids", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_id_list(w, v), s.proxy_uids); }},
      {"proxyGids", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_id_list(w, v), s.proxy_gids); }},
      {"inboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port_selector(w, v), s.inbound_ports); }},
      {"excludeInboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port_list(w, v), s.exclude_inbound_ports); }},
      {"excludeInboundCidrs", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_cidr_list(w, v), s.exclude_inbound_cidrs); }},
      {"outboundCidrs", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_cidr_selector(w, v), s.outbound_cidrs); }},
      {"excludeOutboundCidrs", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_cidr_list(w, v), s.exclude_outbound_cidrs); }},
      {"outboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port_selector(w, v), s.outbound_ports); }},
      {"excludeOutboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port_list(w, v), s.exclude_outbound_ports); }},
      {"excludeInterfaces", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_interface_list(w, v), s.exclude_interfaces); }},
      {"kubeVirtInterfaces", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_interface_list(w, v), s.kube_virt_interfaces); }},
      {"ipFamilies", [](CaptureSpec& s, const std::string& w, const std::string& v) {
         auto r = parse_ip_families(v);
         if (!r.ok()) return Status(r.error().wrap(w));
         return assign(std::move(r), s.ip_families);
       }},
      {"mode", [](CaptureSpec& s, const std::string& w, const std::string& v) {
         auto r = parse_inbound_mode(v);
         if (!r.ok()) return Status(r.error().wrap(w));
         return assign(std::move(r), s.mode);
       }},
      {"tproxyMark", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_u32(w, v), s.tproxy_mark); }},
      {"tproxyRouteTable", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_u32(w, v), s.tproxy_route_table); }},
      {"dropInvalid", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_bool(w, v), s.drop_invalid); }},
      // The DNS settings are an object; the annotation holds it as JSON text.
      {"dns", [](CaptureSpec& s, const std::string& w, const std::string& v) -> Status {
         auto j = parse_bounded_json(v);
         if (!j.ok()) return bad(w, "not valid JSON: " + j.error().message);
         if (!j->value.is_object()) return bad(w, "expected a JSON object like {\"capture\": true}");
         try {
           Status st = merge_json(s, nlohmann::json{{"dns", std::move(j->value)}});
           if (!st.ok()) return st.error().wrap(w);
           return {};
         } catch (const nlohmann::json::exception& e) {
           return bad(w, e.what());
         }
       }},
  };
  return kSetters;
}

// traffic.sidecar.istio.io/<name>, except includeOutboundPorts (see below).
// Istio's exclude lists add to the configured ones; include lists replace.
const std::map<std::string, Setter>& istio_setters() {
  static const std::map<std::string, Setter> kSetters{
      {"includeOutboundIPRanges", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_cidr_selector(w, v), s.outbound_cidrs); }},
      {"excludeOutboundIPRanges", [](CaptureSpec& s, const std::string& w, const std::string& v) { return append(parse_cidr_list(w, v), s.exclude_outbound_cidrs); }},
      {"includeInboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return assign(parse_port_selector(w, v), s.inbound_ports); }},
      {"excludeInboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return append(parse_port_list(w, v), s.exclude_inbound_ports); }},
      {"excludeOutboundPorts", [](CaptureSpec& s, const std::string& w, const std::string& v) { return append(parse_port_list(w, v), s.exclude_outbound_ports); }},
      {"excludeInterfaces", [](CaptureSpec& s, const std::string& w, const std::string& v) { return append(parse_interface_list(w, v), s.exclude_interfaces); }},
      {"kubevirtInterfaces", [](CaptureSpec& s, const std::string& w, const std::string& v) { return append(parse_interface_list(w, v), s.kube_virt_interfaces); }},
  };
  return kSetters;
}

// Istio's includeOutboundPorts captures these ports whatever their destination
// address. weir's spec says "address in outboundCidrs AND port in
// outboundPorts", so the union is expressible only when the addresses are
// all (the ports add nothing) or none (only these ports are captured).
Status apply_include_outbound_ports(CaptureSpec& spec, const std::string& what, const std::string& value) {
  auto ports = parse_port_list(what, value);
  if (!ports.ok()) return ports.error();
  if (ports->empty() || !spec.outbound_cidrs) return {};
  if (spec.outbound_cidrs->empty()) {
    spec.outbound_cidrs = std::nullopt;
    spec.outbound_ports = std::move(ports.value());
    return {};
  }
  return bad(what, "weir cannot capture these ports to every address while outbound capture is limited to some "
                   "address ranges; use includeOutboundIPRanges \"*\" or \"\" with it, or weir.dev/outboundPorts");
}

}  // namespace

Status apply_annotations(CaptureSpec& spec, const std::map<std::string, std::string>& annotations,
                         std::vector<std::string>& warnings, bool gids_explicit) {
  const std::string weir_prefix = kWeirPrefix, istio_prefix = kIstioTrafficPrefix;
  const bool gids_follow_uids = !gids_explicit && spec.proxy_gids == spec.proxy_uids;
  bool gids_set = false;
  for (const auto& [key, value] : annotations) {
    if (key.rfind(weir_prefix, 0) != 0) continue;
    const std::string field = key.substr(weir_prefix.size());
    if (field == "capture") continue;  // selection, see selection.h
    auto it = weir_setters().find(field);
    const std::string what = "annotation " + key;
    if (it == weir_setters().end()) return bad(what, "unknown weir annotation (fields are the capture spec's JSON keys)");
    if (Status s = it->second(spec, what, value); !s.ok()) return s;
    gids_set = gids_set || field == "proxyGids";
  }
  // proxyGids defaults to the UIDs; keep following them unless set apart.
  if (gids_follow_uids && !gids_set) spec.proxy_gids = spec.proxy_uids;

  for (const auto& [name, setter] : istio_setters()) {
    auto it = annotations.find(istio_prefix + name);
    if (it == annotations.end()) continue;
    const std::string what = "annotation " + it->first;
    const std::string value = holds_cidrs(name) ? mask_istio_cidrs(what, it->second, warnings) : it->second;
    if (Status s = setter(spec, what, value); !s.ok()) return s;
  }
  if (auto it = annotations.find(istio_prefix + "includeOutboundPorts"); it != annotations.end()) {
    if (Status s = apply_include_outbound_ports(spec, "annotation " + it->first, it->second); !s.ok()) return s;
  }
  if (Status s = validate(spec); !s.ok()) return s.error().wrap("capture spec after the pod's annotations");
  return {};
}

}  // namespace weir::cni
