#include "init/linkerd_flags.h"

#include <algorithm>
#include <cctype>

#include <CLI/CLI.hpp>

#include "rules/spec_fields.h"

namespace weir {
namespace {

// Joins repeated flag values: "--x 1,2 --x 3" reads as "1,2,3".
std::string join(const std::vector<std::string>& values) {
  std::string s;
  for (const auto& v : values) {
    if (!s.empty()) s += ",";
    s += v;
  }
  return s;
}

Result<uint16_t> required_port(const std::string& what, const std::string& text) {
  if (text.empty()) return Error{ErrorKind::InvalidSpec, what + " is required (the port to redirect to)"};
  return parse_port_text(what, text);  // the spec's grammar, rules/spec_fields.h
}

// -1 means "none", as in proxy-init.
Result<std::vector<uint32_t>> optional_id(const std::string& what, const std::string& text) {
  if (text == "-1" || text.empty()) return std::vector<uint32_t>{};
  return parse_id_list(what, text);
}

}  // namespace

void bind_linkerd_flags(CLI::App& app, LinkerdFlags& f) {
  auto last = CLI::MultiOptionPolicy::TakeLast;
  app.add_option("-p,--incoming-proxy-port", f.incoming_proxy_port, "port inbound TCP is redirected to (4143)")
      ->multi_option_policy(last);
  app.add_option("-o,--outgoing-proxy-port", f.outgoing_proxy_port, "port outbound TCP is redirected to (4140)")
      ->multi_option_policy(last);
  app.add_option("-u,--proxy-uid", f.proxy_uid, "the proxy's UID, not captured (-1: none)")->multi_option_policy(last);
  app.add_option("-g,--proxy-gid", f.proxy_gid, "the proxy's GID, not captured (-1: none)")->multi_option_policy(last);
  app.add_option("-r,--ports-to-redirect", f.ports_to_redirect, "inbound ports to capture (default: all)")
      ->delimiter(',');
  app.add_option("--inbound-ports-to-ignore", f.inbound_ports_to_ignore,
                 "inbound ports or ranges not captured (4190,4191 always)")
      ->delimiter(',');
  app.add_option("--outbound-ports-to-ignore", f.outbound_ports_to_ignore, "outbound ports or ranges not captured")
      ->delimiter(',');
  app.add_option("--subnets-to-ignore", f.subnets_to_ignore, "inbound source CIDRs not captured")->delimiter(',');
  app.add_flag("--simulate", f.simulate, "print the rules, change nothing");
  app.add_option("--netns", f.netns, "target network namespace (path); default: this one")->multi_option_policy(last);
  app.add_flag("--ipv6", f.ipv6, "IPv6 rules as well (default true; --ipv6=false to turn off)");
  app.add_option("--log-format", f.log_format, "plain or json")->multi_option_policy(last);
  app.add_option("--log-level", f.log_level, "debug, info, warn, error")->multi_option_policy(last);
  app.add_option("--iptables-mode", f.iptables_mode,
                 "nft: backend nftables; legacy: backend iptables; plain: backend auto")
      ->multi_option_policy(last);
  app.add_flag("-w,--use-wait-flag", f.use_wait_flag,
               "accepted, changes nothing: weir never takes the xtables lock, it has its own per-namespace lock");
  app.add_option("--firewall-bin-path", f.firewall_bin_path, "accepted; weir runs no iptables binary")
      ->multi_option_policy(last);
  app.add_option("--firewall-save-bin-path", f.firewall_save_bin_path, "accepted; weir runs no iptables binary")
      ->multi_option_policy(last);
}

Result<LinkerdCommand> linkerd_command(const LinkerdFlags& f) {
  LinkerdCommand cmd;
  CaptureSpec& s = cmd.spec;

  auto in_port = required_port("--incoming-proxy-port", f.incoming_proxy_port);
  if (!in_port) return in_port.error();
  s.inbound_port = *in_port;
  auto out_port = required_port("--outgoing-proxy-port", f.outgoing_proxy_port);
  if (!out_port) return out_port.error();
  s.outbound_port = *out_port;

  auto uids = optional_id("--proxy-uid", f.proxy_uid);
  if (!uids) return uids.error();
  s.proxy_uids = *uids;
  auto gids = optional_id("--proxy-gid", f.proxy_gid);  // not defaulted to the UID: Linkerd does not
  if (!gids) return gids.error();
  s.proxy_gids = *gids;

  if (f.ports_to_redirect.empty()) {
    s.inbound_ports = std::nullopt;
  } else {
    auto ports = parse_port_list("--ports-to-redirect", join(f.ports_to_redirect));
    if (!ports) return ports.error();
    s.inbound_ports = *ports;
  }
  s.inbound_tunnel_port = 0;
  s.exclude_inbound_ports = {{kLinkerdProxyControlPort, kLinkerdProxyControlPort},
                             {kLinkerdProxyAdminPort, kLinkerdProxyAdminPort}};
  auto in_ignore = parse_port_list("--inbound-ports-to-ignore", join(f.inbound_ports_to_ignore));
  if (!in_ignore) return in_ignore.error();
  append_unique(s.exclude_inbound_ports, *in_ignore);
  auto out_ignore = parse_port_list("--outbound-ports-to-ignore", join(f.outbound_ports_to_ignore));
  if (!out_ignore) return out_ignore.error();
  s.exclude_outbound_ports = *out_ignore;
  auto subnets = parse_cidr_list("--subnets-to-ignore", join(f.subnets_to_ignore));
  if (!subnets) return subnets.error();
  s.exclude_inbound_cidrs = *subnets;
  // Linkerd returns everything leaving through lo, the proxy's traffic
  // included. weir's plan would send the proxy's lo traffic to the pod's own
  // address to the inbound port (Istio's rule); Linkerd's inbound proxy
  // forwards to exactly that address (since 2.11), so it would loop.
  // Excluding lo gives Linkerd's rule: out via lo -> RETURN, for everyone.
  s.exclude_interfaces = {"lo"};
  s.ip_families = f.ipv6 ? IpFamilies::Dual : IpFamilies::V4;
  if (!f.ipv6) {  // no IPv6 rules, so IPv6 subnets have nothing to apply to
    std::erase_if(s.exclude_inbound_cidrs, [](const Cidr& c) { return c.family == Family::V6; });
  }

  // The spec refuses this too; said here in Linkerd's flags.
  if (s.proxy_uids.empty() && s.proxy_gids.empty())
    return Error{ErrorKind::InvalidSpec, "--proxy-uid and --proxy-gid: neither given (-1 is none), so the proxy's "
                                         "own connections would be captured and loop back into it; give the "
                                         "proxy's UID (Linkerd's is 2102)"};
  if (auto v = validate(s); !v) return v.error();

  if (f.log_format != "plain" && f.log_format != "json")
    return Error{ErrorKind::InvalidSpec, "--log-format: \"" + f.log_format + "\" is not plain or json"};
  if (!f.iptables_mode.empty()) {
    if (f.iptables_mode != "legacy" && f.iptables_mode != "nft" && f.iptables_mode != "plain")
      return Error{ErrorKind::InvalidSpec, "--iptables-mode: \"" + f.iptables_mode + "\" is not legacy, nft or plain"};
    // nft selects weir's nftables backend and legacy its legacy one; plain
    // (whatever `iptables` is on the node) leaves the choice to auto.
    if (f.iptables_mode == "nft") s.backend = FilterBackend::Nftables;
    if (f.iptables_mode == "legacy") s.backend = FilterBackend::Iptables;
    const std::string always = "weir always programs the legacy xtables interface (ip_tables/ip6_tables) "
                               "in-process through libiptc and runs no iptables binary";
    if (f.iptables_mode == "legacy")
      cmd.notes.push_back("--iptables-mode=legacy: backend iptables; " + always);
    else
      cmd.warnings.push_back("--iptables-mode=" + f.iptables_mode + " changes nothing: " + always +
                             ", so the rules are in the legacy tables (iptables-legacy-save), not in nftables "
                             "(it sets backend " + to_string(s.backend) + ", which this build does not use yet)");
  }
  if (f.use_wait_flag)
    cmd.notes.push_back("-w/--use-wait-flag changes nothing: weir never takes the node-wide xtables lock; it "
                        "serializes its own writers with a lock on the namespace and retries a commit that "
                        "raced another writer");
  if (!f.firewall_bin_path.empty() || !f.firewall_save_bin_path.empty())
    cmd.notes.push_back("--firewall-bin-path/--firewall-save-bin-path change nothing: weir runs no iptables "
                        "binary, it programs legacy xtables through libiptc");
  cmd.netns = f.netns;
  cmd.simulate = f.simulate;
  return cmd;
}

}  // namespace weir
