#include "frontend/capture_flags.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace weir {
namespace {

// How a flag takes its value.
enum class Arity {
  Value,   // one value; given twice, the last wins
  List,    // comma list; may be repeated, the parts are joined
  Switch,  // no value (true/false from the environment)
};

// Sets the flag's value into the spec. `what` is the flag's name for messages.
using ApplyFn = Status (*)(CaptureSpec& s, const std::string& what, const std::string& value, bool on);

struct FlagDef {
  const char* name;  // long name without "--"
  Arity arity;
  const char* value_name;  // shown in --help: "--inbound-ports PORTS"
  const char* help;
  ApplyFn apply;
};

Status prefixed(const Error& e, const std::string& what) {
  // The library's list parsers already start with `what`; the others do not.
  if (e.message.rfind(what, 0) == 0) return e;
  return e.wrap(what);
}

template <typename T>
Status assign(Result<T> r, T& out, const std::string& what) {
  if (!r) return prefixed(r.error(), what);
  out = std::move(r).value();
  return {};
}

// The table of capture flags, in the order they are applied (and listed in
// --help). Order matters once: --proxy-uid also sets the GIDs, so --proxy-gid
// comes after it.
const FlagDef kFlags[] = {
    {"outbound-port", Arity::Value, "PORT", "Port the proxy listens on for outbound traffic (default 15001)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_value(w, v), s.outbound_port, w);
     }},
    {"inbound-port", Arity::Value, "PORT", "Port the proxy listens on for inbound traffic (default 15006)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_value(w, v), s.inbound_port, w);
     }},
    {"proxy-uid", Arity::List, "IDS", "UIDs of the proxy, never captured (default 1337; numeric only)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       // As istio-iptables: the GIDs default to the UIDs. GIDs that were set
       // apart from the UIDs (proxyGids in --config) stay as they are.
       const bool gids_follow = s.proxy_gids == s.proxy_uids;
       Status st = assign(parse_id_list(w, v), s.proxy_uids, w);
       if (st && gids_follow) s.proxy_gids = s.proxy_uids;
       return st;
     }},
    {"proxy-gid", Arity::List, "IDS", "GIDs of the proxy, never captured (default: the UIDs)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_id_list(w, v), s.proxy_gids, w);
     }},
    {"inbound-ports", Arity::List, "PORTS", "Inbound ports to capture: \"*\" (all, default) or a list with ranges",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_selector(w, v), s.inbound_ports, w);
     }},
    {"exclude-inbound-ports", Arity::List, "PORTS", "Inbound ports never captured (default 15020,15021,15090)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_list(w, v), s.exclude_inbound_ports, w);
     }},
    {"exclude-inbound-cidrs", Arity::List, "CIDRS", "Source CIDRs whose inbound traffic is never captured",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_cidr_list(w, v), s.exclude_inbound_cidrs, w);
     }},
    {"inbound-tunnel-port", Arity::Value, "PORT", "Inbound port never captured (default 15008; 0 = none)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) -> Status {
       if (v == "0") {
         s.inbound_tunnel_port = 0;
         return {};
       }
       return assign(parse_port_value(w, v), s.inbound_tunnel_port, w);
     }},
    {"outbound-cidrs", Arity::List, "CIDRS", "Destination CIDRs to capture outbound: \"*\" (all, default) or a list",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_cidr_selector(w, v), s.outbound_cidrs, w);
     }},
    {"exclude-outbound-cidrs", Arity::List, "CIDRS", "Destination CIDRs never captured outbound",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_cidr_list(w, v), s.exclude_outbound_cidrs, w);
     }},
    {"outbound-ports", Arity::List, "PORTS", "Destination ports to capture outbound: \"*\" (all, default) or a list",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_selector(w, v), s.outbound_ports, w);
     }},
    {"exclude-outbound-ports", Arity::List, "PORTS", "Destination ports never captured outbound",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_list(w, v), s.exclude_outbound_ports, w);
     }},
    {"exclude-interfaces", Arity::List, "IFACES", "Interfaces whose traffic is never captured",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_interface_list(w, v), s.exclude_interfaces, w);
     }},
    {"kube-virt-interfaces", Arity::List, "IFACES", "Interfaces whose inbound traffic is treated as outbound",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_interface_list(w, v), s.kube_virt_interfaces, w);
     }},
    {"ip-families", Arity::Value, "FAMILIES", "ipv4, ipv6 or dual (default dual)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_ip_families(v), s.ip_families, w);
     }},
    {"inbound-mode", Arity::Value, "MODE", "redirect (default) or tproxy",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_inbound_mode(v), s.mode, w);
     }},
    {"tproxy-mark", Arity::Value, "MARK", "Packet mark for TPROXY mode (default 1337)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_u32_value(w, v), s.tproxy_mark, w);
     }},
    {"tproxy-route-table", Arity::Value, "TABLE", "Route table for TPROXY mode (default 133)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_u32_value(w, v), s.tproxy_route_table, w);
     }},
    {"redirect-dns", Arity::Switch, "", "Capture the applications' DNS to the DNS port",
     [](CaptureSpec& s, const std::string&, const std::string&, bool on) -> Status {
       s.dns.capture = on;
       return {};
     }},
    {"capture-all-dns", Arity::Switch, "", "Capture all port-53 traffic, not only to the pod's nameservers (default)",
     [](CaptureSpec& s, const std::string&, const std::string&, bool on) -> Status {
       s.dns.capture_all = on;
       if (on) s.dns.servers.clear();
       return {};
     }},
    {"dns-servers", Arity::List, "ADDRS", "Capture DNS only to these nameservers",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       s.dns.capture_all = false;
       return assign(parse_cidr_list(w, v), s.dns.servers, w);
     }},
    {"resolv-conf", Arity::Value, "PATH", "Capture DNS only to the nameservers in this resolv.conf",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       s.dns.capture_all = false;
       return assign(read_resolv_conf(v), s.dns.servers, w);
     }},
    {"dns-port", Arity::Value, "PORT", "Port the proxy's DNS listens on (default 15053)",
     [](CaptureSpec& s, const std::string& w, const std::string& v, bool) {
       return assign(parse_port_value(w, v), s.dns.port, w);
     }},
    {"drop-invalid", Arity::Switch, "", "Drop packets conntrack finds INVALID",
     [](CaptureSpec& s, const std::string&, const std::string&, bool on) -> Status {
       s.drop_invalid = on;
       return {};
     }},
};

std::string env_name(const std::string& prefix, const std::string& flag) {
  std::string name = prefix;
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

Status merge_config_file(CaptureSpec& spec, const std::string& path, bool* gids_set) {
  const std::string what = "--config " + path;
  std::ifstream in(path);
  if (!in) return system_error(ErrorKind::Io, what, errno);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return Error{ErrorKind::InvalidSpec, what + ": not JSON: " + e.what()};
  }
  // Validated in build(), once the flags are on top: a flag may fix what the
  // file alone gets wrong (e.g. --inbound-port over a file's clashing port).
  Status st = merge_json(spec, j, MergeCheck::Defer);
  if (!st) return st.error().wrap(what);
  *gids_set = j.is_object() && j.contains("proxyGids");
  return {};
}

}  // namespace

void CaptureFlags::bind(CLI::App& app, const CaptureFlagOptions& opts) {
  for (std::size_t i = 0; i < std::size(kFlags); ++i) {
    const FlagDef& def = kFlags[i];
    Bound& b = bound_.emplace_back();
    b.def = i;
    const std::string name = std::string("--") + def.name;
    switch (def.arity) {
      case Arity::Switch:
        b.option = app.add_flag(name, b.on, def.help);
        break;
      case Arity::Value:
        b.option = app.add_option(name, b.values, def.help)
                       ->expected(1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
                       ->type_name(def.value_name);
        break;
      case Arity::List:
        b.option = app.add_option(name, b.values, def.help)
                       ->expected(1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                       ->type_name(def.value_name);
        break;
    }
    b.option->group(opts.group);
    if (!opts.env_prefix.empty()) b.option->envname(env_name(opts.env_prefix, def.name));
  }
  if (opts.config_flag) {
    config_option_ = app.add_option("--config", config_path_,
                                    "JSON capture spec (keys as in spec.h); flags given override it")
                         ->type_name("FILE")
                         ->group(opts.group);
    if (!opts.env_prefix.empty()) config_option_->envname(env_name(opts.env_prefix, "config"));
  }
}

Result<CaptureSpec> CaptureFlags::build(CaptureSpec base) const {
  CaptureSpec spec = std::move(base);
  bool file_gids = false;  // the file set proxyGids itself: --proxy-uid leaves them
  if (config_option_ && config_option_->count() > 0) {
    if (Status st = merge_config_file(spec, config_path_, &file_gids); !st) return st.error();
  }
  const std::vector<uint32_t> gids_from_file = spec.proxy_gids;
  bool gid_flag = false;
  bool servers_given = false;
  for (const Bound& b : bound_) {
    if (b.option->count() == 0) continue;
    const FlagDef& def = kFlags[b.def];
    const std::string what = std::string("--") + def.name;
    const std::string value = def.arity == Arity::List    ? join(b.values)
                              : def.arity == Arity::Value ? (b.values.empty() ? "" : b.values.back())
                                                          : "";
    if (Status st = def.apply(spec, what, value, b.on); !st) return st.error();
    if (def.name == std::string("proxy-gid")) gid_flag = true;
    if (def.name == std::string("dns-servers") || def.name == std::string("resolv-conf")) servers_given = true;
  }
  if (file_gids && !gid_flag) spec.proxy_gids = gids_from_file;
  // Nameservers without DNS capture would silently capture nothing.
  if (servers_given && !spec.dns.capture) {
    return Error{ErrorKind::InvalidSpec,
                 "--dns-servers/--resolv-conf: DNS capture is off; add --redirect-dns"};
  }
  if (Status st = validate(spec); !st) return st.error();
  return spec;
}

bool CaptureFlags::any_given() const {
  if (config_option_ && config_option_->count() > 0) return true;
  return std::any_of(bound_.begin(), bound_.end(), [](const Bound& b) { return b.option->count() > 0; });
}

Result<uint16_t> parse_port_value(const std::string& what, const std::string& text) {
  Result<PortRange> r = parse_port_range(text);
  if (!r) return prefixed(r.error(), what).error();
  if (r->first != r->last) {
    return Error{ErrorKind::InvalidSpec, what + ": " + text + " is a range; want one port (1-65535)"};
  }
  return r->first;
}

Result<uint32_t> parse_u32_value(const std::string& what, const std::string& text) {
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  const std::string digits = hex ? text.substr(2) : text;
  const bool ok_chars = !digits.empty() && std::all_of(digits.begin(), digits.end(), [&](char c) {
    return hex ? std::isxdigit(static_cast<unsigned char>(c)) : std::isdigit(static_cast<unsigned char>(c));
  });
  if (ok_chars && digits.size() <= 10) {
    const unsigned long long v = std::strtoull(digits.c_str(), nullptr, hex ? 16 : 10);
    if (v <= 0xffffffffULL) return static_cast<uint32_t>(v);
  }
  return Error{ErrorKind::InvalidSpec,
               what + ": \"" + text + "\" is not a number from 0 to 4294967295 (decimal or 0x-hex)"};
}

Result<std::vector<Cidr>> read_resolv_conf(const std::string& path) {
  std::ifstream in(path);
  if (!in) return system_error(ErrorKind::Io, "read " + path, errno);
  std::vector<Cidr> servers;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    std::istringstream words(line);
    std::string key, addr;
    if (!(words >> key) || key != "nameserver" || !(words >> addr)) continue;
    addr = addr.substr(0, addr.find('%'));  // fe80::1%eth0: the zone is not part of a match
    Result<Cidr> c = parse_cidr(addr);
    if (!c) return c.error().wrap(path + " line " + std::to_string(lineno));
    if (std::find(servers.begin(), servers.end(), *c) == servers.end()) servers.push_back(*c);
  }
  if (servers.empty()) {
    return Error{ErrorKind::InvalidSpec, path + ": no nameserver line, so no DNS server to capture"};
  }
  return servers;
}

}  // namespace weir
