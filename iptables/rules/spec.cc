#include "rules/spec.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <string_view>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "rules/spec_fields.h"

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

// A list's text is quoted in an error only when it is short; past that the
// bad item is named by its position ("item 9871 of 10000").
constexpr std::size_t kQuoteWholeList = 100;

// Splits a comma list into trimmed items. An empty (or all-blank) text is an
// empty list; an empty item inside a list is an error.
Result<std::vector<std::string>> split_list(const std::string& what, const std::string& text) {
  std::vector<std::string> items;
  if (trim(text).empty()) return items;
  const std::size_t count = static_cast<std::size_t>(std::count(text.begin(), text.end(), ',')) + 1;
  items.reserve(count);
  size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.empty()) {
      if (text.size() <= kQuoteWholeList) return spec_error(what + ": \"" + text + "\": empty item in list");
      return spec_error(what + ": item " + std::to_string(items.size() + 1) + " of " + std::to_string(count) +
                        ": empty item in list");
    }
    items.push_back(std::move(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

// "what: "whole text": item problem", leaving out the whole text when the
// list is that one item (the item problem already quotes it), and naming the
// item by position instead when the text is long.
Error item_error(const std::string& what, const std::string& text, std::size_t index, std::size_t count,
                 const Error& e) {
  if (count == 1) return spec_error(what + ": " + e.message);
  if (text.size() <= kQuoteWholeList) return spec_error(what + ": \"" + text + "\": " + e.message);
  return spec_error(what + ": item " + std::to_string(index + 1) + " of " + std::to_string(count) + ": " + e.message);
}

// A name as it can be printed in a message: quotes, backslashes and bytes
// that are not printable ASCII as \xNN (the text stays valid UTF-8).
std::string printable_name(const std::string& name) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : clip(name)) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\'' || c == '\\') {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Linux's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':' or
// whitespace. Also refused, so every name can be printed as it is (an
// iptables-save line, a JSON string, a log line): quotes, backslashes,
// control characters and bytes that are not ASCII.
Status check_interface(const std::string& what, const std::string& name) {
  if (name.empty()) return spec_error(what + ": empty interface name");
  if (name.size() > 15) {
    return spec_error(what + ": interface name \"" + printable_name(name) + "\" is longer than 15 characters");
  }
  if (name == "." || name == "..") return spec_error(what + ": \"" + name + "\" is not an interface name");
  for (unsigned char c : name) {
    if (c == '/' || c == ':' || std::isspace(c)) {
      return spec_error(what + ": interface name \"" + printable_name(name) + "\" contains '/', ':' or whitespace");
    }
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\'' || c == '\\') {
      return spec_error(what + ": interface name \"" + printable_name(name) +
                        "\" contains a quote, a backslash, a control character or a byte that is not ASCII");
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

// Reads every key of `j` into `spec` through the table of fields (dns keys
// as "dns.<key>"); does not validate.
Status merge_keys(CaptureSpec& spec, const json& j) {
  if (!j.is_object()) return spec_error(std::string("capture spec: expected a JSON object, got ") + j.type_name());
  bool gids_set = false;
  bool uids_set = false;
  auto set = [&](const std::string& key, const json& v) -> Status {
    const SpecField* f = find_spec_field(key);
    if (f == nullptr) return spec_error("unknown key \"" + key + "\" in capture spec");
    uids_set = uids_set || key == "proxyUids";
    gids_set = gids_set || key == "proxyGids";
    return f->set_json(spec, key, v);
  };
  for (const auto& [key, v] : j.items()) {
    if (key == "dns") {
      if (!v.is_object()) return spec_error(std::string("dns: expected an object, got ") + v.type_name());
      for (const auto& [sub, sv] : v.items()) {
        if (Status st = set("dns." + sub, sv); !st) return st;
      }
      continue;
    }
    if (key.find('.') != std::string::npos) return spec_error("unknown key \"" + key + "\" in capture spec");
    if (Status st = set(key, v); !st) return st;
  }
  // As in istio-iptables: the proxy's GIDs default to its UIDs.
  if (uids_set && !gids_set) spec.proxy_gids = spec.proxy_uids;
  return {};
}

template <typename T, typename Hash>
void append_unique_impl(std::vector<T>& to, const std::vector<T>& items, Hash hash) {
  std::unordered_set<T, Hash> seen(to.begin(), to.end(), to.size() + items.size(), hash);
  to.reserve(to.size() + items.size());
  for (const auto& i : items) {
    if (seen.insert(i).second) to.push_back(i);
  }
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

const char* to_string(FilterBackend b) {
  switch (b) {
    case FilterBackend::Auto: return "auto";
    case FilterBackend::Nftables: return "nftables";
    case FilterBackend::Iptables: return "iptables";
  }
  return "auto";
}

const char* to_string(KubeVirtExcludes k) { return k == KubeVirtExcludes::Ignore ? "ignore" : "apply"; }

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
  for (const SpecField& f : spec_fields()) {
    const auto dot = f.key.find('.');
    if (dot == std::string::npos) {
      j[f.key] = f.get_json(spec);
    } else {
      j[f.key.substr(0, dot)][f.key.substr(dot + 1)] = f.get_json(spec);
    }
  }
  return j;
}

void append_unique(std::vector<PortRange>& to, const std::vector<PortRange>& items) {
  append_unique_impl(to, items, [](const PortRange& r) { return std::hash<uint32_t>{}(uint32_t{r.first} << 16 | r.last); });
}

void append_unique(std::vector<Cidr>& to, const std::vector<Cidr>& items) {
  append_unique_impl(to, items, [](const Cidr& c) {
    const std::string_view bytes(reinterpret_cast<const char*>(c.addr.data()), c.addr.size());
    return std::hash<std::string_view>{}(bytes) ^ (std::size_t{c.prefix} << 1) ^ static_cast<std::size_t>(c.family);
  });
}

void append_unique(std::vector<std::string>& to, const std::vector<std::string>& items) {
  append_unique_impl(to, items, std::hash<std::string>{});
}

Result<std::vector<PortRange>> parse_port_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  std::vector<PortRange> out;
  out.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    auto r = parse_port_range((*items)[i]);
    if (!r) return item_error(what, text, i, items->size(), r.error());
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
  out.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    auto c = parse_cidr((*items)[i]);
    if (!c) return item_error(what, text, i, items->size(), c.error());
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
  out.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    const std::string& item = (*items)[i];
    const NumberText n = read_number(item);
    if (n.problem == NumberText::None) {
      out.push_back(n.value);
      continue;
    }
    const char* problem = n.problem == NumberText::Fraction ? "\" is not a whole number (an id is 0-4294967295)"
                                                            : "\" is not a numeric id (0-4294967295)";
    return item_error(what, text, i, items->size(), spec_error("\"" + clip(item) + problem));
  }
  return out;
}

Result<std::vector<std::string>> parse_interface_list(const std::string& what, const std::string& text) {
  auto items = split_list(what, text);
  if (!items) return items.error();
  for (std::size_t i = 0; i < items->size(); ++i) {
    if (auto st = check_interface(what, (*items)[i]); !st) {
      if (items->size() == 1 || text.size() <= kQuoteWholeList) return st.error();
      return spec_error(what + ": item " + std::to_string(i + 1) + " of " + std::to_string(items->size()) +
                        st.error().message.substr(what.size()));
    }
  }
  return std::move(*items);
}

Result<IpFamilies> parse_ip_families(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "ipv4") return IpFamilies::V4;
  if (t == "ipv6") return IpFamilies::V6;
  if (t == "dual") return IpFamilies::Dual;
  return spec_error("ipFamilies: \"" + clip(text) + "\" is not one of ipv4, ipv6, dual");
}

Result<InboundMode> parse_inbound_mode(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "redirect") return InboundMode::Redirect;
  if (t == "tproxy") return InboundMode::Tproxy;
  return spec_error("mode: \"" + clip(text) + "\" is not one of redirect, tproxy");
}

Result<FilterBackend> parse_filter_backend(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "auto") return FilterBackend::Auto;
  if (t == "nftables") return FilterBackend::Nftables;
  if (t == "iptables") return FilterBackend::Iptables;
  return spec_error("backend: \"" + clip(text) + "\" is not one of auto, nftables, iptables");
}

Result<KubeVirtExcludes> parse_kube_virt_excludes(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "apply") return KubeVirtExcludes::Apply;
  if (t == "ignore") return KubeVirtExcludes::Ignore;
  return spec_error("kubeVirtExcludes: \"" + clip(text) + "\" is not one of apply, ignore");
}

}  // namespace weir
