#include "rules/spec.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace weir {

using json = nlohmann::json;

namespace {

Error spec_error(const std::string& message) {
  return Error{ErrorKind::InvalidSpec, message};
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

// Splits a comma list into trimmed items. An empty (or all-blank) text is an
// empty list; an empty item inside a list is an error.
Result<std::vector<std::string>> split_list(const std::string& what, const std::string& text) {
  std::vector<std::string> items;
  if (trim(text).empty()) return items;
  size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    const std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty()) return spec_error(what + ": \"" + text + "\": empty item in list");
    items.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

// "what: "whole text": item problem", leaving out the whole text when the
// list is that one item (the item problem already quotes it).
Error item_error(const std::string& what, const std::string& text, const std::string& item, const Error& e) {
  if (trim(text) == item) return spec_error(what + ": " + e.message);
  return spec_error(what + ": \"" + text + "\": " + e.message);
}

std::optional<uint32_t> parse_u32(const std::string& s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > 0xffffffffull) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// Linux's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':' or space.
Status check_interface(const std::string& what, const std::string& name) {
  if (name.empty()) return spec_error(what + ": empty interface name");
  if (name.size() > 15) {
    return spec_error(what + ": interface name \"" + name + "\" is longer than 15 characters");
  }
  if (name == "." || name == "..") return spec_error(what + ": \"" + name + "\" is not an interface name");
  for (unsigned char c : name) {
    if (c == '/' || c == ':' || std::isspace(c) || c < 0x20) {
      return spec_error(what + ": interface name \"" + name + "\" contains '/', ':' or whitespace");
    }
  }
  return {};
}

Status check_port(const std::string& what, uint16_t port) {
  if (port == 0) return spec_error(what + ": 0 is not a port (1-65535)");
  return {};
}

Status check_ports(const std::string& what, const std::vector<PortRange>& ports) {
  for (const auto& r : ports) {
    if (r.first == 0) return spec_error(what + ": 0 is not a port (1-65535)");
    if (r.last < r.first) {
      return spec_error(what + ": \"" + format_port_range(r) + "\": reversed range (first port above last)");
    }
  }
  return {};
}

bool wants(const CaptureSpec& spec, Family f) {
  if (spec.ip_families == IpFamilies::Dual) return true;
  return (spec.ip_families == IpFamilies::V4) == (f == Family::V4);
}

Status check_cidrs(const std::string& what, const std::vector<Cidr>& cidrs, const CaptureSpec& spec) {
  for (const auto& c : cidrs) {
    const int maxp = c.family == Family::V4 ? 32 : 128;
    if (c.prefix > maxp) {
      return spec_error(what + ": prefix /" + std::to_string(c.prefix) + " is too long for " + to_string(c.family));
    }
    // Re-parsing the formatted text catches host bits set in a hand-built Cidr.
    auto reparsed = parse_cidr(format_cidr(c));
    if (!reparsed) return spec_error(what + ": " + reparsed.error().message);
    if (!wants(spec, c.family)) {
      return spec_error(what + ": " + format_cidr(c) + " is an " + (c.family == Family::V4 ? "IPv4" : "IPv6") +
                        " CIDR but ipFamilies is " + to_string(spec.ip_families));
    }
  }
  return {};
}

// ---- JSON readers. Each names the key in its errors. ----

std::string type_error(const std::string& key, const char* expected, const json& v) {
  return key + ": expected " + expected + ", got " + v.type_name();
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
  return spec_error(type_error(key, expected, v));
}

Result<uint16_t> json_port(const std::string& key, const json& v) {
  if (v.is_number_integer() && (v.get<int64_t>() < 0 || v.get<int64_t>() > 65535)) {
    return spec_error(key + ": " + v.dump() + " is not a port (1-65535)");
  }
  auto n = json_uint(key, v, 65535, "a port number");
  if (!n) return n.error();
  return static_cast<uint16_t>(*n);
}

Result<bool> json_bool(const std::string& key, const json& v) {
  if (!v.is_boolean()) return spec_error(type_error(key, "true or false", v));
  return v.get<bool>();
}

Result<std::string> json_string(const std::string& key, const json& v) {
  if (!v.is_string()) return spec_error(type_error(key, "a string", v));
  return v.get<std::string>();
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
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    const json& e = v[i];
    if (e.is_number()) {
      auto p = json_port(item_key, e);
      if (!p) return p.error();
      if (*p == 0) return spec_error(item_key + ": 0 is not a port (1-65535)");
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
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    if (!v[i].is_string()) return spec_error(type_error(item_key, "an interface name", v[i]));
    const auto name = v[i].get<std::string>();
    if (auto st = check_interface(item_key, name); !st) return st.error();
    out.push_back(name);
  }
  return out;
}

Status merge_dns(DnsCapture& dns, const json& j) {
  if (!j.is_object()) return spec_error(type_error("dns", "an object", j));
  for (const auto& [key, v] : j.items()) {
    const std::string k = "dns." + key;
    if (key == "capture") {
      auto b = json_bool(k, v);
      if (!b) return b.error();
      dns.capture = *b;
    } else if (key == "captureAll") {
      auto b = json_bool(k, v);
      if (!b) return b.error();
      dns.capture_all = *b;
    } else if (key == "port") {
      auto p = json_port(k, v);
      if (!p) return p.error();
      dns.port = *p;
    } else if (key == "servers") {
      auto c = json_cidrs(k, v, false);
      if (!c) return c.error();
      dns.servers = std::move(**c);
    } else {
      return spec_error("unknown key \"" + k + "\" in capture spec");
    }
  }
  return {};
}

// Reads every key of `j` into `spec`; does not validate.
Status merge_keys(CaptureSpec& spec, const json& j) {
  if (!j.is_object()) return spec_error(std::string("capture spec: expected a JSON object, got ") + j.type_name());
  bool gids_set = false;
  bool uids_set = false;
  for (const auto& item : j.items()) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    const std::string& key = item.key();
    const json& v = item.value();
    auto port_field = [&](uint16_t& field) -> Status {
      auto p = json_port(key, v);
      if (!p) return p.error();
      field = *p;
      return {};
    };
    Status st;
    if (key == "outboundPort") {
      st = port_field(spec.outbound_port);
    } else if (key == "inboundPort") {
      st = port_field(spec.inbound_port);
    } else if (key == "inboundTunnelPort") {
      st = port_field(spec.inbound_tunnel_port);
    } else if (key == "proxyUids" || key == "proxyGids") {
      auto ids = json_ids(key, v);
      if (!ids) return ids.error();
      (key == "proxyUids" ? spec.proxy_uids : spec.proxy_gids) = std::move(*ids);
      (key == "proxyUids" ? uids_set : gids_set) = true;
    } else if (key == "inboundPorts" || key == "outboundPorts") {
      auto p = json_ports(key, v, true);
      if (!p) return p.error();
      (key == "inboundPorts" ? spec.inbound_ports : spec.outbound_ports) = std::move(*p);
    } else if (key == "excludeInboundPorts" || key == "excludeOutboundPorts") {
      auto p = json_ports(key, v, false);
      if (!p) return p.error();
      (key == "excludeInboundPorts" ? spec.exclude_inbound_ports : spec.exclude_outbound_ports) = std::move(**p);
    } else if (key == "outboundCidrs") {
      auto c = json_cidrs(key, v, true);
      if (!c) return c.error();
      spec.outbound_cidrs = std::move(*c);
    } else if (key == "excludeInboundCidrs" || key == "excludeOutboundCidrs") {
      auto c = json_cidrs(key, v, false);
      if (!c) return c.error();
      (key == "excludeInboundCidrs" ? spec.exclude_inbound_cidrs : spec.exclude_outbound_cidrs) = std::move(**c);
    } else if (key == "excludeInterfaces" || key == "kubeVirtInterfaces") {
      auto i = json_interfaces(key, v);
      if (!i) return i.error();
      (key == "excludeInterfaces" ? spec.exclude_interfaces : spec.kube_virt_interfaces) = std::move(*i);
    } else if (key == "ipFamilies") {
      auto s = json_string(key, v);
      if (!s) return s.error();
      auto f = parse_ip_families(*s);
      if (!f) return f.error();
      spec.ip_families = *f;
    } else if (key == "mode") {
      auto s = json_string(key, v);
      if (!s) return s.error();
      auto m = parse_inbound_mode(*s);
      if (!m) return m.error();
      spec.mode = *m;
    } else if (key == "tproxyMark" || key == "tproxyRouteTable") {
      auto n = json_uint(key, v, 0xffffffff, "a number");
      if (!n) return n.error();
      (key == "tproxyMark" ? spec.tproxy_mark : spec.tproxy_route_table) = static_cast<uint32_t>(*n);
    } else if (key == "dns") {
      st = merge_dns(spec.dns, v);
    } else if (key == "dropInvalid") {
      auto b = json_bool(key, v);
      if (!b) return b.error();
      spec.drop_invalid = *b;
    } else {
      return spec_error("unknown key \"" + key + "\" in capture spec");
    }
    if (!st) return st;
  }
  // As in istio-iptables: the proxy's GIDs default to its UIDs.
  if (uids_set && !gids_set) spec.proxy_gids = spec.proxy_uids;
  return {};
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

}  // namespace

const char* to_string(IpFamilies f) {
  switch (f) {
    case IpFamilies::V4: return "ipv4";
    case IpFamilies::V6: return "ipv6";
    case IpFamilies::Dual: return "dual";
  }
  return "dual";
}

const char* to_string(InboundMode m) {
  return m == InboundMode::Tproxy ? "tproxy" : "redirect";
}

std::vector<Family> families(const CaptureSpec& spec) {
  std::vector<Family> out;
  if (wants(spec, Family::V4)) out.push_back(Family::V4);
  if (wants(spec, Family::V6)) out.push_back(Family::V6);
  return out;
}

Status validate(const CaptureSpec& spec) {
  if (auto st = check_port("outboundPort", spec.outbound_port); !st) return st;
  if (auto st = check_port("inboundPort", spec.inbound_port); !st) return st;
  if (spec.outbound_port == spec.inbound_port) {
    return spec_error("outboundPort and inboundPort are both " + std::to_string(spec.inbound_port) +
                      "; the proxy needs two different ports");
  }
  if (spec.proxy_uids.empty() && spec.proxy_gids.empty()) {
    return spec_error("proxyUids and proxyGids are both empty: the proxy's own connections would be "
                      "captured and sent back to the proxy (a loop); give the proxy's UID or GID");
  }
  if (spec.dns.capture) {
    if (auto st = check_port("dns.port", spec.dns.port); !st) return st;
    if (spec.dns.port == spec.outbound_port || spec.dns.port == spec.inbound_port) {
      return spec_error("dns.port " + std::to_string(spec.dns.port) + " collides with " +
                        (spec.dns.port == spec.outbound_port ? "outboundPort" : "inboundPort"));
    }
  }
  if (spec.inbound_ports) {
    if (auto st = check_ports("inboundPorts", *spec.inbound_ports); !st) return st;
  }
  if (spec.outbound_ports) {
    if (auto st = check_ports("outboundPorts", *spec.outbound_ports); !st) return st;
  }
  if (auto st = check_ports("excludeInboundPorts", spec.exclude_inbound_ports); !st) return st;
  if (auto st = check_ports("excludeOutboundPorts", spec.exclude_outbound_ports); !st) return st;
  if (spec.outbound_cidrs) {
    if (auto st = check_cidrs("outboundCidrs", *spec.outbound_cidrs, spec); !st) return st;
  }
  if (auto st = check_cidrs("excludeInboundCidrs", spec.exclude_inbound_cidrs, spec); !st) return st;
  if (auto st = check_cidrs("excludeOutboundCidrs", spec.exclude_outbound_cidrs, spec); !st) return st;
  if (auto st = check_cidrs("dns.servers", spec.dns.servers, spec); !st) return st;
  for (const auto& name : spec.exclude_interfaces) {
    if (auto st = check_interface("excludeInterfaces", name); !st) return st;
  }
  for (const auto& name : spec.kube_virt_interfaces) {
    if (auto st = check_interface("kubeVirtInterfaces", name); !st) return st;
  }
  if (spec.tproxy_mark == 0) {
    return spec_error("tproxyMark: 0 cannot be used (an unmarked packet has mark 0)");
  }
  if (spec.tproxy_mark == 0xffffffff) {
    // The proxy's lo traffic carries tproxyMark + 1, which would wrap to 0.
    return spec_error("tproxyMark: 4294967295 cannot be used (weir marks the proxy's lo traffic with "
                      "tproxyMark + 1, which would be 0)");
  }
  // 0 is "unspecified"; 253-255 are the kernel's default, main and local tables.
  if (spec.tproxy_route_table == 0 || (spec.tproxy_route_table >= 253 && spec.tproxy_route_table <= 255)) {
    return spec_error("tproxyRouteTable: " + std::to_string(spec.tproxy_route_table) +
                      " is reserved (0, 253 default, 254 main, 255 local)");
  }
  return {};
}

Status merge_json(CaptureSpec& spec, const json& j, MergeCheck check) {
  // nlohmann throws on misuse; none of it may escape the library.
  try {
    CaptureSpec merged = spec;
    if (auto st = merge_keys(merged, j); !st) return st;
    if (check == MergeCheck::Validate) {
      if (auto st = validate(merged); !st) return st;
    }
    spec = std::move(merged);
    return {};
  } catch (const std::exception& e) {
    return spec_error(std::string("capture spec: ") + e.what());
  }
}

Result<CaptureSpec> spec_from_json(const json& j) {
  CaptureSpec spec;
  if (auto st = merge_json(spec, j); !st) return st.error();
  return spec;
}

json to_json(const CaptureSpec& spec) {
  json j = json::object();
  j["outboundPort"] = spec.outbound_port;
  j["inboundPort"] = spec.inbound_port;
  j["proxyUids"] = spec.proxy_uids;
  j["proxyGids"] = spec.proxy_gids;
  j["inboundPorts"] = spec.inbound_ports ? ports_json(*spec.inbound_ports) : json("*");
  j["excludeInboundPorts"] = ports_json(spec.exclude_inbound_ports);
  j["excludeInboundCidrs"] = cidrs_json(spec.exclude_inbound_cidrs);
  j["inboundTunnelPort"] = spec.inbound_tunnel_port;
  j["outboundCidrs"] = spec.outbound_cidrs ? cidrs_json(*spec.outbound_cidrs) : json("*");
  j["excludeOutboundCidrs"] = cidrs_json(spec.exclude_outbound_cidrs);
  j["outboundPorts"] = spec.outbound_ports ? ports_json(*spec.outbound_ports) : json("*");
  j["excludeOutboundPorts"] = ports_json(spec.exclude_outbound_ports);
  j["excludeInterfaces"] = spec.exclude_interfaces;
  j["kubeVirtInterfaces"] = spec.kube_virt_interfaces;
  j["ipFamilies"] = to_string(spec.ip_families);
  j["mode"] = to_string(spec.mode);
  j["tproxyMark"] = spec.tproxy_mark;
  j["tproxyRouteTable"] = spec.tproxy_route_table;
  j["dns"] = json{{"capture", spec.dns.capture},
                  {"captureAll", spec.dns.capture_all},
                  {"port", spec.dns.port},
                  {"servers", cidrs_json(spec.dns.servers)}};
  j["dropInvalid"] = spec.drop_invalid;
  return j;
}

Result<std::vector<PortRange>> parse_port_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  std::vector<PortRange> out;
  for (const auto& item : *items) {
    auto r = parse_port_range(item);
    if (!r) return item_error(what, text, item, r.error());
    out.push_back(*r);
  }
  return out;
}

Result<std::optional<std::vector<PortRange>>> parse_port_selector(const std::string& what, const std::string& text) {
  if (trim(text) == "*") return std::optional<std::vector<PortRange>>();
  auto list = parse_port_list(what, text);
  if (!list) return list.error();
  return std::optional<std::vector<PortRange>>(std::move(*list));
}

Result<std::vector<Cidr>> parse_cidr_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  std::vector<Cidr> out;
  for (const auto& item : *items) {
    auto c = parse_cidr(item);
    if (!c) return item_error(what, text, item, c.error());
    out.push_back(*c);
  }
  return out;
}

Result<std::optional<std::vector<Cidr>>> parse_cidr_selector(const std::string& what, const std::string& text) {
  if (trim(text) == "*") return std::optional<std::vector<Cidr>>();
  auto list = parse_cidr_list(what, text);
  if (!list) return list.error();
  return std::optional<std::vector<Cidr>>(std::move(*list));
}

Result<std::vector<uint32_t>> parse_id_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  std::vector<uint32_t> out;
  for (const auto& item : *items) {
    auto id = parse_u32(item);
    if (!id) {
      return item_error(what, text, item, spec_error("\"" + item + "\" is not a numeric id (0-4294967295)"));
    }
    out.push_back(*id);
  }
  return out;
}

Result<std::vector<std::string>> parse_interface_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  for (const auto& item : *items) {
    if (auto st = check_interface(what, item); !st) return st.error();
  }
  return std::move(*items);
}

Result<IpFamilies> parse_ip_families(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "ipv4") return IpFamilies::V4;
  if (t == "ipv6") return IpFamilies::V6;
  if (t == "dual") return IpFamilies::Dual;
  return spec_error("ipFamilies: \"" + text + "\" is not one of ipv4, ipv6, dual");
}

Result<InboundMode> parse_inbound_mode(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "redirect") return InboundMode::Redirect;
  if (t == "tproxy") return InboundMode::Tproxy;
  return spec_error("mode: \"" + text + "\" is not one of redirect, tproxy");
}

}  // namespace weir
