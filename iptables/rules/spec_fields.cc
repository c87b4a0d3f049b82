#include "rules/spec_fields.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <nlohmann/json.hpp>

namespace weir {

using json = nlohmann::json;

namespace {

Error spec_error(const std::string& message) { return Error{ErrorKind::InvalidSpec, message}; }

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Prefixes `what` unless the parser's message already starts with it.
Error named(const Error& e, const std::string& what) {
  if (e.message.rfind(what + ":", 0) == 0 || e.message.rfind(what + "[", 0) == 0) return e;
  return e.wrap(what);
}

// The parsers of names (parse_ip_families, ...) start their message with the
// JSON key; an input names itself instead.
template <typename T>
Result<T> renamed(Result<T> r, const std::string& what) {
  if (r) return r;
  const std::string& m = r.error().message;
  const auto colon = m.find(": ");
  return Error{r.error().kind, what + ": " + (colon == std::string::npos ? m : m.substr(colon + 2))};
}

// ---- JSON readers: each names the key in its errors. ----

std::string type_error(const std::string& key, const char* expected, const json& v) {
  return key + ": expected " + expected + ", got " + v.type_name();
}

// A JSON number that is not a whole number: "15001.5 is not a whole number".
Error not_whole(const std::string& key, const json& v, const std::string& range) {
  const double d = v.get<double>();
  if (std::isfinite(d) && d == std::floor(d)) {
    return spec_error(key + ": " + v.dump() + " has a decimal point or an exponent; write the whole number " +
                      range);
  }
  return spec_error(key + ": " + v.dump() + " is not a whole number " + range);
}

Result<uint64_t> json_uint(const std::string& key, const json& v, uint64_t max, const char* expected) {
  // nlohmann stores non-negative literals as signed integers too.
  if (v.is_number_integer()) {
    if (!v.is_number_unsigned() && v.get<int64_t>() < 0) {
      return spec_error(key + ": " + v.dump() + " is out of range (0-" + std::to_string(max) + ")");
    }
    const uint64_t n = v.get<uint64_t>();
    if (n > max) return spec_error(key + ": " + v.dump() + " is out of range (0-" + std::to_string(max) + ")");
    return n;
  }
  if (v.is_number_float()) return not_whole(key, v, "(0-" + std::to_string(max) + ")");
  return spec_error(type_error(key, expected, v));
}

Result<uint16_t> json_port(const std::string& key, const json& v, bool zero_ok) {
  const char* range = zero_ok ? "(1-65535, or 0 for none)" : "(1-65535)";
  if (v.is_number_integer() && (v.get<int64_t>() < (zero_ok ? 0 : 1) || v.get<int64_t>() > 65535)) {
    return spec_error(key + ": " + v.dump() + " is not a port " + range);
  }
  if (v.is_number_float()) return not_whole(key, v, std::string("(a port is ") + (range + 1));
  auto n = json_uint(key, v, 65535, "a port number");
  if (!n) return n.error();
  return static_cast<uint16_t>(*n);
}

Result<bool> json_bool(const std::string& key, const json& v) {
  if (!v.is_boolean()) return spec_error(type_error(key, "true or false", v));
  return v.get<bool>();
}

// An array of numbers/strings, or one comma-separated string; "*" only when
// `selector`.
Result<std::optional<std::vector<PortRange>>> json_ports(const std::string& key, const json& v, bool selector) {
  if (v.is_string()) {
    const auto text = v.get<std::string>();
    if (selector) return parse_port_selector(key, text);
    auto list = parse_port_list(key, text);
    if (!list) return list.error();
    return std::optional<std::vector<PortRange>>(std::move(*list));
  }
  if (!v.is_array()) {
    return spec_error(type_error(key, selector ? "\"*\", an array of ports or a comma-separated string"
                                               : "an array of ports or a comma-separated string", v));
  }
  std::vector<PortRange> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    const json& e = v[i];
    if (e.is_number()) {
      auto p = json_port(item_key, e, false);
      if (!p) return p.error();
      out.push_back({*p, *p});
    } else if (e.is_string()) {
      auto r = parse_port_range(trim(e.get<std::string>()));
      if (!r) return spec_error(item_key + ": " + r.error().message);
      out.push_back(*r);
    } else {
      return spec_error(type_error(item_key, "a port number or a \"first-last\" string", e));
    }
  }
  return std::optional<std::vector<PortRange>>(std::move(out));
}

Result<std::optional<std::vector<Cidr>>> json_cidrs(const std::string& key, const json& v, bool selector) {
  if (v.is_string()) {
    const auto text = v.get<std::string>();
    if (selector) return parse_cidr_selector(key, text);
    auto list = parse_cidr_list(key, text);
    if (!list) return list.error();
    return std::optional<std::vector<Cidr>>(std::move(*list));
  }
  if (!v.is_array()) {
    return spec_error(type_error(key, selector ? "\"*\", an array of CIDRs or a comma-separated string"
                                               : "an array of CIDRs or a comma-separated string", v));
  }
  std::vector<Cidr> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    if (!v[i].is_string()) return spec_error(type_error(item_key, "a CIDR string", v[i]));
    auto c = parse_cidr(trim(v[i].get<std::string>()));
    if (!c) return spec_error(item_key + ": " + c.error().message);
    out.push_back(*c);
  }
  return std::optional<std::vector<Cidr>>(std::move(out));
}

Result<std::vector<uint32_t>> json_ids(const std::string& key, const json& v) {
  if (v.is_string()) return parse_id_list(key, v.get<std::string>());
  if (v.is_number()) {
    auto n = json_uint(key, v, 0xffffffff, "an id");
    if (!n) return n.error();
    return std::vector<uint32_t>{static_cast<uint32_t>(*n)};
  }
  if (!v.is_array()) return spec_error(type_error(key, "an array of numeric ids or a comma-separated string", v));
  std::vector<uint32_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    auto n = json_uint(key + "[" + std::to_string(i) + "]", v[i], 0xffffffff, "a numeric id");
    if (!n) return n.error();
    out.push_back(static_cast<uint32_t>(*n));
  }
  return out;
}

Result<std::vector<std::string>> json_interfaces(const std::string& key, const json& v) {
  if (v.is_string()) return parse_interface_list(key, v.get<std::string>());
  if (!v.is_array()) return spec_error(type_error(key, "an array of interface names or a comma-separated string", v));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    if (!v[i].is_string()) return spec_error(type_error(item_key, "an interface name", v[i]));
    auto one = parse_interface_list(item_key, v[i].get<std::string>());
    if (!one) return one.error();
    if (one->size() != 1) return spec_error(item_key + ": \"" + clip(v[i].get<std::string>()) + "\" is not one interface name");
    out.push_back(std::move(one->front()));
  }
  return out;
}

json ports_json(const std::vector<PortRange>& ports) {
  json a = json::array();
  for (const auto& r : ports) {
    if (r.first == r.last) {
      a.push_back(r.first);
    } else {
      a.push_back(format_port_range(r));
    }
  }
  return a;
}

json cidrs_json(const std::vector<Cidr>& cidrs) {
  json a = json::array();
  for (const auto& c : cidrs) a.push_back(format_cidr(c));
  return a;
}

// ---- Codecs: one per kind of field, shared by the fields of that kind. ----

template <typename T>
struct Codec {
  Result<T> (*text)(const std::string& what, const std::string& text);
  Result<T> (*json_in)(const std::string& what, const json& v);
  json (*json_out)(const T& value);
};

const Codec<uint16_t> kPort{
    parse_port_text,
    [](const std::string& w, const json& v) { return json_port(w, v, false); },
    [](const uint16_t& p) { return json(p); },
};
const Codec<uint16_t> kPortOrNone{
    parse_port_or_none_text,
    [](const std::string& w, const json& v) { return json_port(w, v, true); },
    [](const uint16_t& p) { return json(p); },
};
const Codec<uint32_t> kNumber32{
    parse_u32_text,
    [](const std::string& w, const json& v) -> Result<uint32_t> {
      if (v.is_string()) return parse_u32_text(w, v.get<std::string>());  // "0x539": JSON has no hex
      auto n = json_uint(w, v, 0xffffffff, "a number");
      if (!n) return n.error();
      return static_cast<uint32_t>(*n);
    },
    [](const uint32_t& n) { return json(n); },
};
const Codec<bool> kBool{
    parse_bool_text,
    json_bool,
    [](const bool& b) { return json(b); },
};
const Codec<std::vector<uint32_t>> kIds{
    parse_id_list,
    json_ids,
    [](const std::vector<uint32_t>& ids) { return json(ids); },
};
const Codec<std::optional<std::vector<PortRange>>> kPortSelector{
    parse_port_selector,
    [](const std::string& w, const json& v) { return json_ports(w, v, true); },
    [](const std::optional<std::vector<PortRange>>& p) { return p ? ports_json(*p) : json("*"); },
};
const Codec<std::vector<PortRange>> kPortList{
    parse_port_list,
    [](const std::string& w, const json& v) -> Result<std::vector<PortRange>> {
      auto p = json_ports(w, v, false);
      if (!p) return p.error();
      return std::move(**p);
    },
    ports_json,
};
const Codec<std::optional<std::vector<Cidr>>> kCidrSelector{
    parse_cidr_selector,
    [](const std::string& w, const json& v) { return json_cidrs(w, v, true); },
    [](const std::optional<std::vector<Cidr>>& c) { return c ? cidrs_json(*c) : json("*"); },
};
const Codec<std::vector<Cidr>> kCidrList{
    parse_cidr_list,
    [](const std::string& w, const json& v) -> Result<std::vector<Cidr>> {
      auto c = json_cidrs(w, v, false);
      if (!c) return c.error();
      return std::move(**c);
    },
    cidrs_json,
};
const Codec<std::vector<std::string>> kInterfaces{
    parse_interface_list,
    json_interfaces,
    [](const std::vector<std::string>& names) { return json(names); },
};

// A field whose value is one of a few names, read by `parse` (which names the
// field itself, e.g. "ipFamilies: ..."), printed by to_string.
template <typename T, Result<T> (*Parse)(const std::string&)>
const Codec<T> kNamed{
    [](const std::string& w, const std::string& t) { return renamed(Parse(t), w); },
    [](const std::string& w, const json& v) -> Result<T> {
      if (!v.is_string()) return spec_error(type_error(w, "a string", v));
      return renamed(Parse(v.get<std::string>()), w);
    },
    [](const T& value) { return json(to_string(value)); },
};

// Builds an entry from a codec and `ref`, a generic lambda that returns a
// reference to the field in a (const or not) CaptureSpec.
template <typename T, typename Ref>
SpecField field(std::string key, std::string flag, FieldArity arity, std::string value_name, std::string help,
                const Codec<T>& codec, Ref ref) {
  SpecField f;
  f.key = std::move(key);
  f.flag = std::move(flag);
  f.arity = arity;
  f.value_name = std::move(value_name);
  f.help = std::move(help);
  f.set_text = [&codec, ref](CaptureSpec& s, const std::string& what, const std::string& text) -> Status {
    Result<T> r = codec.text(what, text);
    if (!r) return named(r.error(), what);
    ref(s) = std::move(r).value();
    return {};
  };
  f.set_json = [&codec, ref](CaptureSpec& s, const std::string& what, const json& v) -> Status {
    Result<T> r = codec.json_in(what, v);
    if (!r) return named(r.error(), what);
    ref(s) = std::move(r).value();
    return {};
  };
  f.get_json = [&codec, ref](const CaptureSpec& s) { return codec.json_out(ref(s)); };
  return f;
}

#define WEIR_REF(member) [](auto& s) -> auto& { return s.member; }

std::vector<SpecField> make_fields() {
  using A = FieldArity;
  std::vector<SpecField> t;
  t.push_back(field("outboundPort", "outbound-port", A::Value, "PORT",
                    "Port the proxy listens on for outbound traffic (default 15001)", kPort, WEIR_REF(outbound_port)));
  t.push_back(field("inboundPort", "inbound-port", A::Value, "PORT",
                    "Port the proxy listens on for inbound traffic (default 15006)", kPort, WEIR_REF(inbound_port)));
  t.push_back(field("proxyUids", "proxy-uid", A::List, "IDS",
                    "UIDs of the proxy, never captured (default 1337; numeric only)", kIds, WEIR_REF(proxy_uids)));
  t.push_back(field("proxyGids", "proxy-gid", A::List, "IDS", "GIDs of the proxy, never captured (default: the UIDs)",
                    kIds, WEIR_REF(proxy_gids)));
  t.push_back(field("inboundPorts", "inbound-ports", A::List, "PORTS",
                    "Inbound ports to capture: \"*\" (all, default) or a list with ranges", kPortSelector,
                    WEIR_REF(inbound_ports)));
  t.push_back(field("excludeInboundPorts", "exclude-inbound-ports", A::List, "PORTS",
                    "Inbound ports never captured (default 15020,15021,15090)", kPortList,
                    WEIR_REF(exclude_inbound_ports)));
  t.push_back(field("excludeInboundCidrs", "exclude-inbound-cidrs", A::List, "CIDRS",
                    "Source CIDRs whose inbound traffic is never captured", kCidrList,
                    WEIR_REF(exclude_inbound_cidrs)));
  t.push_back(field("inboundTunnelPort", "inbound-tunnel-port", A::Value, "PORT",
                    "Inbound port never captured (default 15008; 0 = none)", kPortOrNone,
                    WEIR_REF(inbound_tunnel_port)));
  t.push_back(field("outboundCidrs", "outbound-cidrs", A::List, "CIDRS",
                    "Destination CIDRs to capture outbound: \"*\" (all, default) or a list", kCidrSelector,
                    WEIR_REF(outbound_cidrs)));
  t.push_back(field("excludeOutboundCidrs", "exclude-outbound-cidrs", A::List, "CIDRS",
                    "Destination CIDRs never captured outbound", kCidrList, WEIR_REF(exclude_outbound_cidrs)));
  t.push_back(field("outboundPorts", "outbound-ports", A::List, "PORTS",
                    "Destination ports to capture outbound: \"*\" (all, default) or a list", kPortSelector,
                    WEIR_REF(outbound_ports)));
  t.push_back(field("excludeOutboundPorts", "exclude-outbound-ports", A::List, "PORTS",
                    "Destination ports never captured outbound", kPortList, WEIR_REF(exclude_outbound_ports)));
  t.push_back(field("excludeInterfaces", "exclude-interfaces", A::List, "IFACES",
                    "Interfaces whose traffic is never captured", kInterfaces, WEIR_REF(exclude_interfaces)));
  t.push_back(field("kubeVirtInterfaces", "kube-virt-interfaces", A::List, "IFACES",
                    "Interfaces whose inbound traffic is treated as outbound", kInterfaces,
                    WEIR_REF(kube_virt_interfaces)));
  t.push_back(field("kubeVirtExcludes", "kube-virt-excludes", A::Value, "APPLY|IGNORE",
                    "Whether the outbound excludes (CIDRs, ports) apply to traffic arriving on kube-virt "
                    "interfaces: apply (default) or ignore (as istio-iptables)",
                    kNamed<KubeVirtExcludes, parse_kube_virt_excludes>, WEIR_REF(kube_virt_excludes)));
  t.push_back(field("ipFamilies", "ip-families", A::Value, "FAMILIES", "ipv4, ipv6 or dual (default dual)",
                    kNamed<IpFamilies, parse_ip_families>, WEIR_REF(ip_families)));
  t.push_back(field("mode", "inbound-mode", A::Value, "MODE", "redirect (default) or tproxy",
                    kNamed<InboundMode, parse_inbound_mode>, WEIR_REF(mode)));
  t.push_back(field("tproxyMark", "tproxy-mark", A::Value, "MARK",
                    "Packet mark for TPROXY mode, decimal or 0x-hex (default 1337)", kNumber32,
                    WEIR_REF(tproxy_mark)));
  t.push_back(field("tproxyRouteTable", "tproxy-route-table", A::Value, "TABLE",
                    "Route table for TPROXY mode (default 133)", kNumber32, WEIR_REF(tproxy_route_table)));
  t.push_back(field("dns.capture", "redirect-dns", A::Switch, "", "Capture the applications' DNS to the DNS port",
                    kBool, WEIR_REF(dns.capture)));
  t.push_back(field("dns.captureAll", "capture-all-dns", A::Switch, "",
                    "Capture all port-53 traffic, not only to the pod's nameservers (default)", kBool,
                    WEIR_REF(dns.capture_all)));
  t.push_back(field("dns.servers", "dns-servers", A::List, "ADDRS", "Capture DNS only to these nameservers",
                    kCidrList, WEIR_REF(dns.servers)));
  t.push_back(field("dns.port", "dns-port", A::Value, "PORT", "Port the proxy's DNS listens on (default 15053)",
                    kPort, WEIR_REF(dns.port)));
  t.push_back(field("dropInvalid", "drop-invalid", A::Switch, "", "Drop packets conntrack finds INVALID", kBool,
                    WEIR_REF(drop_invalid)));
  t.push_back(field("backend", "backend", A::Value, "BACKEND",
                    "Packet filter interface: auto (default: nftables when the kernel takes it, else iptables), "
                    "nftables or iptables (legacy xtables)",
                    kNamed<FilterBackend, parse_filter_backend>, WEIR_REF(backend)));

  // What the text forms of the DNS fields did as flags, kept in every text input.
  for (SpecField& f : t) {
    if (f.key == "dns.servers") {
      f.set_text = [set = f.set_text](CaptureSpec& s, const std::string& w, const std::string& v) -> Status {
        s.dns.capture_all = false;
        return set(s, w, v);
      };
    } else if (f.key == "dns.captureAll") {
      f.set_text = [set = f.set_text](CaptureSpec& s, const std::string& w, const std::string& v) -> Status {
        Status st = set(s, w, v);
        if (st && s.dns.capture_all) s.dns.servers.clear();
        return st;
      };
    }
  }
  return t;
}

#undef WEIR_REF

}  // namespace

const std::vector<SpecField>& spec_fields() {
  static const std::vector<SpecField> kFields = make_fields();
  return kFields;
}

const SpecField* find_spec_field(std::string_view key) {
  for (const SpecField& f : spec_fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::string field_annotation(const SpecField& f) { return kFieldAnnotationPrefix + f.key; }

std::string flag_env_name(const std::string& prefix, const std::string& flag) {
  std::string name = prefix;
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

Result<uint16_t> parse_port_text(const std::string& what, const std::string& text) {
  const std::string t = trim(text);
  Result<PortRange> r = parse_port_range(t);
  if (!r) return named(r.error(), what);
  if (r->first != r->last) return spec_error(what + ": " + clip(t) + " is a range; want one port (1-65535)");
  return r->first;
}

Result<uint16_t> parse_port_or_none_text(const std::string& what, const std::string& text) {
  const NumberText n = read_number(trim(text));
  if (n.problem == NumberText::None && n.value == 0) return static_cast<uint16_t>(0);
  return parse_port_text(what, text);
}

Result<uint32_t> parse_u32_text(const std::string& what, const std::string& text) {
  const std::string t = trim(text);
  const NumberText n = read_number(t);
  switch (n.problem) {
    case NumberText::None: return n.value;
    case NumberText::Fraction:
      return spec_error(what + ": \"" + clip(t) + "\" is not a whole number (0-4294967295, decimal or 0x-hex)");
    case NumberText::NotNumber:
    case NumberText::TooLarge: break;
  }
  return spec_error(what + ": \"" + clip(t) + "\" is not a number from 0 to 4294967295 (decimal or 0x-hex)");
}

Result<bool> parse_bool_text(const std::string& what, const std::string& text) {
  const std::string t = lower(trim(text));
  if (t == "true" || t == "1") return true;
  if (t == "false" || t == "0") return false;
  return spec_error(what + ": \"" + clip(text) + "\" is not true or false (or 1 or 0)");
}

}  // namespace weir
