#include "cni/annotations.h"

#include <algorithm>
#include <functional>
#include <optional>

#include <nlohmann/json.hpp>

#include "cni/bounded_json.h"
#include "rules/spec_fields.h"

namespace weir::cni {

namespace {

Error bad(const std::string& what, const std::string& why) { return Error{ErrorKind::InvalidSpec, what + ": " + why}; }

template <typename T>
Status append(Result<std::vector<T>> r, std::vector<T>& field) {
  if (!r.ok()) return r.error();
  append_unique(field, r.value());
  return {};
}

// Assigns a parsed value to a field, or passes the parser's error on.
template <typename T, typename Field>
Status assign(Result<T> r, Field& field) {
  if (!r.ok()) return r.error();
  field = std::move(r.value());
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
// At most this many warnings about one annotation; the rest are counted.
constexpr std::size_t kMaxMaskWarnings = 5;

std::string mask_istio_cidrs(const std::string& what, const std::string& text, std::vector<std::string>& warnings) {
  std::string out;
  out.reserve(text.size());
  std::size_t masked = 0;
  for (size_t start = 0;;) {
    const auto comma = text.find(',', start);
    std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (auto net = masked_cidr(item)) {
      if (++masked <= kMaxMaskWarnings) {
        warnings.push_back(what + ": " + clip(item) + " has host bits set; using " + *net + ", as Istio does");
      }
      item = *net;
    }
    if (start != 0) out += ',';
    out += item;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (masked > kMaxMaskWarnings) {
    warnings.push_back(what + ": " + std::to_string(masked - kMaxMaskWarnings) +
                       " more CIDRs have host bits set; masked as Istio does");
  }
  return masked > 0 ? out : text;
}

// Istio's annotations that hold CIDR lists.
bool holds_cidrs(const std::string& istio_name) {
  return istio_name == "includeOutboundIPRanges" || istio_name == "excludeOutboundIPRanges";
}

using Setter = std::function<Status(CaptureSpec&, const std::string& what, const std::string& value)>;

// weir.dev/dns: the DNS settings as one JSON object, besides weir.dev/dns.<key>.
Status apply_dns_object(CaptureSpec& s, const std::string& w, const std::string& v) {
  // Bounded: copying or printing a deeply nested value would overflow the stack.
  auto j = parse_bounded_json(v);
  if (!j.ok()) return bad(w, "not valid JSON: " + j.error().message);
  if (!j->value.is_object()) return bad(w, "expected a JSON object like {\"capture\": true}");
  try {
    Status st = merge_json(s, nlohmann::json{{"dns", std::move(j->value)}}, MergeCheck::Defer);
    if (!st.ok()) return st.error().wrap(w);
    return {};
  } catch (const nlohmann::json::exception& e) {
    return bad(w, e.what());
  }
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
    const std::string what = "annotation " + key;
    if (field == "dns") {
      if (Status s = apply_dns_object(spec, what, value); !s.ok()) return s;
      continue;
    }
    const SpecField* f = find_spec_field(field);
    if (f == nullptr) return bad(what, "unknown weir annotation (fields are the capture spec's JSON keys)");
    if (Status s = f->set_text(spec, what, value); !s.ok()) return s;
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
  // Istio's kubevirtInterfaces means what istio-iptables -k means: the VM's
  // TCP is redirected whatever the pod's excluded CIDRs and ports (only the
  // includes choose). weir.dev/kubeVirtExcludes on the pod still wins.
  if (annotations.count(istio_prefix + "kubevirtInterfaces") != 0 &&
      annotations.count(weir_prefix + "kubeVirtExcludes") == 0)
    spec.kube_virt_excludes = KubeVirtExcludes::Ignore;
  if (Status s = validate(spec); !s.ok()) return s.error().wrap("capture spec after the pod's annotations");
  return {};
}

}  // namespace weir::cni
