#include "init/istio_flags.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "rules/spec_fields.h"

namespace weir {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Istio treats a list holding "*" anywhere as the wildcard.
bool is_wildcard(const std::string& list) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (trim(list.substr(start, comma - start)) == "*") return true;
    start = comma + 1;
  }
  return false;
}

std::string flag(const char* shorts, const char* name) {
  return std::string("-") + shorts + "/--" + name;
}

// The spec's grammar (rules/spec_fields.h): Istio's port and number flags
// read as every other input does.
Result<uint16_t> port_flag(const std::string& what, const std::string& text) { return parse_port_text(what, text); }

Result<uint32_t> u32_flag(const std::string& what, const std::string& text) { return parse_u32_text(what, text); }

void drop_v6(std::vector<Cidr>& cidrs) {
  std::erase_if(cidrs, [](const Cidr& c) { return c.family == Family::V6; });
}

// Adds a string flag with Istio's short form, long form and variable.
void text_flag(CLI::App& app, const std::string& names, std::string& into, const std::string& env,
               const std::string& help) {
  app.add_option(names, into, help)
      ->envname(env)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

}  // namespace

void bind_istio_flags(CLI::App& app, IstioFlags& f) {
  text_flag(app, "-p,--envoy-port", f.envoy_port, "ENVOY_PORT", "outbound redirect port (15001)");
  text_flag(app, "-z,--inbound-capture-port", f.inbound_capture_port, "INBOUND_CAPTURE_PORT",
            "inbound redirect port (15006)");
  text_flag(app, "-e,--inbound-tunnel-port", f.inbound_tunnel_port, "INBOUND_TUNNEL_PORT",
            "tunnel port, never captured inbound (15008)");
  text_flag(app, "-u,--proxy-uid", f.proxy_uid, "PROXY_UID", "proxy UIDs, comma list; not captured (1337)");
  text_flag(app, "-g,--proxy-gid", f.proxy_gid, "PROXY_GID", "proxy GIDs, comma list (default: the UIDs)");
  text_flag(app, "-m,--istio-inbound-interception-mode", f.interception_mode, "ISTIO_INBOUND_INTERCEPTION_MODE",
            "REDIRECT or TPROXY");
  text_flag(app, "-t,--istio-inbound-tproxy-mark", f.tproxy_mark, "ISTIO_INBOUND_TPROXY_MARK", "TPROXY mark (1337)");
  text_flag(app, "-r,--istio-inbound-tproxy-route-table", f.tproxy_route_table, "ISTIO_INBOUND_TPROXY_ROUTE_TABLE",
            "TPROXY route table (133)");
  text_flag(app, "-b,--istio-inbound-ports", f.inbound_ports, "ISTIO_INBOUND_PORTS",
            "inbound ports to capture; \"*\" all; empty: no inbound capture");
  text_flag(app, "-d,--istio-local-exclude-ports", f.local_exclude_ports, "ISTIO_LOCAL_EXCLUDE_PORTS",
            "inbound ports not captured (with -b \"*\")");
  text_flag(app, "-i,--istio-service-cidr", f.service_cidr, "ISTIO_SERVICE_CIDR",
            "outbound CIDRs to capture; \"*\" all; empty: no outbound capture");
  text_flag(app, "-x,--istio-service-exclude-cidr", f.service_exclude_cidr, "ISTIO_SERVICE_EXCLUDE_CIDR",
            "outbound CIDRs not captured");
  text_flag(app, "-q,--istio-outbound-ports", f.outbound_ports, "ISTIO_OUTBOUND_PORTS",
            "outbound ports captured whatever the destination");
  text_flag(app, "-o,--istio-local-outbound-ports-exclude", f.local_outbound_ports_exclude,
            "ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE", "outbound ports not captured");
  text_flag(app, "-k,--kube-virt-interfaces", f.kube_virt_interfaces, "KUBE_VIRT_INTERFACES",
            "interfaces whose inbound is treated as outbound");
  text_flag(app, "-c,--istio-exclude-interfaces", f.exclude_interfaces, "ISTIO_EXCLUDE_INTERFACES",
            "interfaces never captured");
  app.add_flag("--redirect-dns", f.redirect_dns, "DNS to the proxy's DNS port 15053")->envname("REDIRECT_DNS");
  app.add_flag("--capture-all-dns", f.capture_all_dns, "all port-53 traffic, not only the resolv.conf nameservers")
      ->envname("CAPTURE_ALL_DNS");
  app.add_flag("--drop-invalid", f.drop_invalid, "drop conntrack INVALID packets")->envname("DROP_INVALID");
  app.add_flag("--dual-stack", f.dual_stack, "IPv6 as well as IPv4")->envname("DUAL_STACK");
  app.add_flag("-n,--dry-run", f.dry_run, "print the rules, change nothing")->envname("DRY_RUN");
  app.add_flag("--run-validation", f.run_validation, "validate capture (exit 126 when missing)")
      ->envname("RUN_VALIDATION");
  app.add_flag("--skip-rule-apply", f.skip_rule_apply, "do not install rules (validation only)")
      ->envname("SKIP_RULE_APPLY");
  app.add_flag("--cleanup-only", f.cleanup_only, "remove weir's rules and exit")->envname("CLEANUP_ONLY");
  app.add_flag("--reconcile", f.reconcile, "accepted: weir always replaces drifted rules")->envname("RECONCILE");
  text_flag(app, "--network-namespace", f.network_namespace, "NETWORK_NAMESPACE",
            "target network namespace (path); default: this one");
  text_flag(app, "--iptables-probe-port", f.iptables_probe_port, "IPTABLES_PROBE_PORT",
            "port the validation dials (15002)");
  text_flag(app, "--probe-timeout", f.probe_timeout, "PROBE_TIMEOUT", "validation timeout (5s)");
  text_flag(app, "--log_output_level", f.log_output_level, "LOG_OUTPUT_LEVEL",
            "Istio's log level syntax, e.g. default:info");
  app.add_flag("--log_as_json", f.log_as_json, "log JSON lines")->envname("LOG_AS_JSON");
  app.add_flag("--force-apply", f.force_apply, "accepted: weir always reconciles, so this changes nothing")
      ->envname("FORCE_APPLY");
  app.add_flag("--native-nftables", f.native_nftables, "the nftables backend (spec field backend: nftables)")
      ->envname("NATIVE_NFTABLES");
}

Status apply_istio_env_fallbacks(const CLI::App& app, IstioFlags& f) {
  // Settings Istio reads only from the environment. Each narrows or moves
  // what is captured; weir's spec has no field for them, so a value other
  // than Istio's default is refused by name rather than silently ignored.
  struct EnvOnly {
    const char* env;
    std::vector<std::string> defaults;  // values that mean what weir does anyway
    const char* meaning;
  };
  const EnvOnly env_only[] = {
      {"ISTIO_OUTBOUND_OWNER_GROUPS", {"*"}, "capture outbound traffic only of processes in these groups"},
      {"ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", {}, "leave outbound traffic of processes in these groups uncaptured"},
      {"ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", {"127.0.0.1/32", "127.0.0.1"},
       "the loopback range treated as the pod's own"},
  };
  for (const auto& e : env_only) {
    const char* v = std::getenv(e.env);
    if (v == nullptr) continue;
    const std::string value = trim(v);
    if (value.empty() || std::find(e.defaults.begin(), e.defaults.end(), value) != e.defaults.end()) continue;
    return Error{ErrorKind::Unsupported,
                 std::string(e.env) + "=\"" + clip(value) + "\" (" + e.meaning +
                     ") is not supported by weir: its capture spec cannot say it, and ignoring it would capture "
                     "other traffic than Istio would; unset it (Istio's default is " +
                     (e.defaults.empty() ? std::string("empty") : "\"" + e.defaults.front() + "\"") + ")"};
  }
  struct Fallback {
    const char* option;
    const char* env;
    bool* into;
  };
  const Fallback fallbacks[] = {
      {"--redirect-dns", "ISTIO_META_DNS_CAPTURE", &f.redirect_dns},
      {"--drop-invalid", "INVALID_DROP", &f.drop_invalid},
      {"--dual-stack", "ISTIO_AGENT_DUAL_STACK", &f.dual_stack},
  };
  for (const auto& fb : fallbacks) {
    if (app.count(fb.option) > 0) continue;
    const char* v = std::getenv(fb.env);
    if (v == nullptr || *v == '\0') continue;
    Result<bool> on = parse_bool_text(fb.env, v);  // the spec's booleans: true/false/1/0, any case
    if (!on) return on.error();
    *fb.into = *on;
  }
  return {};
}

Result<IstioCommand> istio_command(const IstioFlags& f, const NameserverSource& nameservers,
                                   const Ipv6OnlySource& ipv6_only, uint32_t uid, uint32_t gid) {
  IstioCommand cmd;
  CaptureSpec& s = cmd.spec;

  auto out_port = port_flag(flag("p", "envoy-port"), f.envoy_port);
  if (!out_port) return out_port.error();
  s.outbound_port = *out_port;
  auto in_port = port_flag(flag("z", "inbound-capture-port"), f.inbound_capture_port);
  if (!in_port) return in_port.error();
  s.inbound_port = *in_port;
  auto tunnel = port_flag(flag("e", "inbound-tunnel-port"), f.inbound_tunnel_port);
  if (!tunnel) return tunnel.error();
  s.inbound_tunnel_port = *tunnel;

  // Istio's default UID comes from an NSS look-up of "istio-proxy"; weir never
  // resolves names, so the default is Istio's fallback, 1337.
  if (!trim(f.proxy_uid).empty()) {
    auto uids = parse_id_list(flag("u", "proxy-uid"), f.proxy_uid);
    if (!uids) return uids.error();
    s.proxy_uids = *uids;
  }
  if (!trim(f.proxy_gid).empty()) {
    auto gids = parse_id_list(flag("g", "proxy-gid"), f.proxy_gid);
    if (!gids) return gids.error();
    s.proxy_gids = *gids;
  } else {
    s.proxy_gids = s.proxy_uids;
  }

  std::string mode = trim(f.interception_mode);
  std::transform(mode.begin(), mode.end(), mode.begin(), ::toupper);
  if (mode.empty() || mode == "REDIRECT") {
    s.mode = InboundMode::Redirect;
  } else if (mode == "TPROXY") {
    s.mode = InboundMode::Tproxy;
  } else {
    return Error{ErrorKind::InvalidSpec, flag("m", "istio-inbound-interception-mode") + ": \"" +
                                             f.interception_mode + "\" is not REDIRECT or TPROXY"};
  }
  auto mark = u32_flag(flag("t", "istio-inbound-tproxy-mark"), f.tproxy_mark);
  if (!mark) return mark.error();
  s.tproxy_mark = *mark;
  auto table = u32_flag(flag("r", "istio-inbound-tproxy-route-table"), f.tproxy_route_table);
  if (!table) return table.error();
  s.tproxy_route_table = *table;

  // Inbound: nothing unless -b; -d applies to "*" only (Istio ignores it
  // with an explicit list, so a port in both lists is captured).
  s.exclude_inbound_ports.clear();
  if (is_wildcard(f.inbound_ports)) {
    s.inbound_ports = std::nullopt;
    auto excl = parse_port_list(flag("d", "istio-local-exclude-ports"), f.local_exclude_ports);
    if (!excl) return excl.error();
    s.exclude_inbound_ports = *excl;
  } else {
    auto in = parse_port_list(flag("b", "istio-inbound-ports"), f.inbound_ports);
    if (!in) return in.error();
    s.inbound_ports = *in;  // empty: no inbound capture
  }

  // Outbound: nothing unless -i or -q. -q ports are captured whatever the
  // destination, -i CIDRs whatever the port.
  auto excl_cidrs = parse_cidr_list(flag("x", "istio-service-exclude-cidr"), f.service_exclude_cidr);
  if (!excl_cidrs) return excl_cidrs.error();
  s.exclude_outbound_cidrs = *excl_cidrs;
  auto excl_ports = parse_port_list(flag("o", "istio-local-outbound-ports-exclude"), f.local_outbound_ports_exclude);
  if (!excl_ports) return excl_ports.error();
  s.exclude_outbound_ports = *excl_ports;
  auto out_ports = parse_port_list(flag("q", "istio-outbound-ports"), f.outbound_ports);
  if (!out_ports) return out_ports.error();
  if (is_wildcard(f.service_cidr)) {
    s.outbound_cidrs = std::nullopt;
    s.outbound_ports = std::nullopt;  // everything; -q adds nothing
  } else {
    auto cidrs = parse_cidr_list(flag("i", "istio-service-cidr"), f.service_cidr);
    if (!cidrs) return cidrs.error();
    if (!cidrs->empty() && !out_ports->empty()) {
      // Istio captures "port in -q OR destination in -i"; weir's spec says
      // "AND". Refusing beats capturing less than the user asked for.
      return Error{ErrorKind::Unsupported,
                   flag("q", "istio-outbound-ports") + " with a CIDR list in " + flag("i", "istio-service-cidr") +
                       ": weir cannot capture \"these ports anywhere or anything to these CIDRs\"; use -i \"*\" "
                       "with excludes, or only one of the two"};
    }
    if (!out_ports->empty()) {
      s.outbound_cidrs = std::nullopt;
      s.outbound_ports = *out_ports;
    } else {
      s.outbound_cidrs = *cidrs;  // empty: no outbound capture
      s.outbound_ports = std::nullopt;
    }
  }

  auto excl_if = parse_interface_list(flag("c", "istio-exclude-interfaces"), f.exclude_interfaces);
  if (!excl_if) return excl_if.error();
  s.exclude_interfaces = *excl_if;
  auto virt_if = parse_interface_list(flag("k", "kube-virt-interfaces"), f.kube_virt_interfaces);
  if (!virt_if) return virt_if.error();
  s.kube_virt_interfaces = *virt_if;
  // Istio redirects TCP arriving on a kube-virt interface to the outbound
  // port whatever -x and -o say (its rule jumps past them); so does its
  // command line here.
  s.kube_virt_excludes = KubeVirtExcludes::Ignore;

  s.drop_invalid = f.drop_invalid;
  // Istio's native nftables mode (1.27): weir's nftables backend.
  if (f.native_nftables) s.backend = FilterBackend::Nftables;
  s.dns.capture = f.redirect_dns;
  s.dns.capture_all = f.capture_all_dns;
  if (f.redirect_dns && !f.capture_all_dns) {
    auto servers = nameservers();
    if (!servers) return servers.error().wrap("--redirect-dns without --capture-all-dns");
    if (servers->empty()) {
      // Istio finds no nameserver to capture and installs everything else.
      s.dns.capture = false;
      cmd.warnings.push_back("--redirect-dns without --capture-all-dns: resolv.conf has no nameserver line, so "
                             "DNS is not captured (as Istio does); everything else is installed");
    } else {
      s.dns.servers = *servers;
    }
  }
  // Istio installs IPv6 rules with --dual-stack or when the pod's own
  // address is IPv6 (an IPv6-only pod).
  bool ipv6 = f.dual_stack;
  if (!f.dual_stack && !f.skip_rule_apply && !f.cleanup_only) {
    auto only6 = ipv6_only(trim(f.network_namespace));
    if (!only6) return only6.error().wrap("read the pod's addresses (is it IPv6-only?)");
    ipv6 = cmd.ipv6_only_pod = *only6;
  }
  s.ip_families = ipv6 ? IpFamilies::Dual : IpFamilies::V4;
  if (!ipv6) {
    // Istio splits every list by family and installs IPv6 rules only for an
    // IPv6 or dual-stack pod: IPv6 entries are dropped, as Istio's IPv4 rules
    // ignore them.
    drop_v6(s.exclude_outbound_cidrs);
    if (s.outbound_cidrs) drop_v6(*s.outbound_cidrs);
    drop_v6(s.dns.servers);
  }

  if (auto v = validate(s); !v) return v.error();

  cmd.netns = trim(f.network_namespace);
  cmd.dry_run = f.dry_run;
  cmd.cleanup_only = f.cleanup_only;
  cmd.apply = !f.skip_rule_apply && !f.cleanup_only;
  cmd.validate = f.run_validation && !f.cleanup_only;

  auto probe_port = port_flag("--iptables-probe-port", f.iptables_probe_port);
  if (!probe_port) return probe_port.error();
  auto timeout = parse_duration("--probe-timeout", trim(f.probe_timeout));
  if (!timeout) return timeout.error();
  ValidationOptions& v = cmd.validation;
  v.outbound_port = s.outbound_port;
  v.inbound_port = s.inbound_port;
  v.timeout = *timeout;
  bool as_proxy = std::find(s.proxy_uids.begin(), s.proxy_uids.end(), uid) != s.proxy_uids.end() ||
                  std::find(s.proxy_gids.begin(), s.proxy_gids.end(), gid) != s.proxy_gids.end();
  if (as_proxy) {
    v.targets = {*parse_endpoint("target", "127.0.0.6:" + std::to_string(*probe_port))};
    v.source = *parse_cidr("127.0.0.1");
    return cmd;
  }
  // Dial something outbound capture takes: inside the first IPv4 include
  // CIDR and on the first include port when those are lists.
  Endpoint target = *parse_endpoint("target", std::string("198.19.255.254:") + std::to_string(*probe_port));
  if (s.outbound_cidrs) {
    for (const auto& c : *s.outbound_cidrs) {
      if (c.family != Family::V4) continue;
      target.addr = c;
      target.addr.prefix = 32;
      if (c.prefix < 32) target.addr.addr[3] |= 1;  // a host, not the network address
      break;
    }
  }
  if (s.outbound_ports && !s.outbound_ports->empty()) target.port = s.outbound_ports->front().first;
  v.targets = {target};
  return cmd;
}

}  // namespace weir
