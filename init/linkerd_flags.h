// Linkerd's proxy-init command line (linkerd2-proxy-init proxy-init/cmd/root.go),
// read into a CaptureSpec with Linkerd's meanings: no tunnel port, 4190 and
// 4191 (the proxy's control and admin ports) never captured inbound, and
// nothing Istio-specific excluded. --iptables-mode sets the spec's backend
// (nft: nftables, legacy: iptables, plain: auto). The flags that choose how
// proxy-init runs iptables (-w, the firewall binary paths) are accepted and
// change nothing: weir runs no iptables binary. A log line says so for each;
// a warning while the backend asked for is not the one this build programs.
#pragma once

#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/spec.h"

namespace CLI {
class App;
}

namespace weir {

struct LinkerdFlags {
  std::string incoming_proxy_port;                  // -p, required
  std::string outgoing_proxy_port;                  // -o, required
  std::string proxy_uid = "-1";                     // -u, -1 = none
  std::string proxy_gid = "-1";                     // -g, -1 = none
  std::vector<std::string> ports_to_redirect;       // -r, default all
  std::vector<std::string> inbound_ports_to_ignore;
  std::vector<std::string> outbound_ports_to_ignore;
  std::vector<std::string> subnets_to_ignore;       // inbound source CIDRs
  bool simulate = false;
  std::string netns;
  bool ipv6 = true;
  std::string log_format = "plain";
  std::string log_level = "info";
  // --iptables-mode sets spec.backend; the others are accepted, changing
  // nothing: weir runs no iptables binary and serializes its writers with
  // its own per-namespace lock.
  std::string iptables_mode;
  bool use_wait_flag = false;
  std::string firewall_bin_path;
  std::string firewall_save_bin_path;
};

void bind_linkerd_flags(CLI::App& app, LinkerdFlags& f);

struct LinkerdCommand {
  CaptureSpec spec;
  std::string netns;  // empty = weir-init's own
  bool simulate = false;
  std::vector<std::string> notes;     // info lines: accepted flags that change nothing
  std::vector<std::string> warnings;  // warning lines: a flag asked for what weir does not do
};

// The inbound ports Linkerd never captures: the proxy's control and admin ports.
inline constexpr uint16_t kLinkerdProxyControlPort = 4190;
inline constexpr uint16_t kLinkerdProxyAdminPort = 4191;

// Translates the flags; errors name the flag.
Result<LinkerdCommand> linkerd_command(const LinkerdFlags& f);

}  // namespace weir
