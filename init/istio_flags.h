// The istio-iptables command line (what Istio's sidecar injector writes into
// the istio-init / istio-validation containers), read into a CaptureSpec with
// Istio's meanings and defaults. Flag names, short forms and environment
// variables are Istio's (tools/istio-iptables/pkg/cmd/root.go); see
// init/README.md for where weir differs on purpose.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"
#include "rules/spec.h"
#include "init/validate.h"

namespace CLI {
class App;
}

namespace weir {

// The flags as given, as text (Istio reads them as strings too). Defaults are
// Istio's.
struct IstioFlags {
  std::string envoy_port = "15001";           // -p
  std::string inbound_capture_port = "15006"; // -z
  std::string inbound_tunnel_port = "15008";  // -e
  std::string proxy_uid;                      // -u, default 1337
  std::string proxy_gid;                      // -g, default: the UIDs
  std::string interception_mode;              // -m REDIRECT|TPROXY
  std::string tproxy_mark = "1337";           // -t
  std::string tproxy_route_table = "133";     // -r
  std::string inbound_ports;                  // -b ("" none, "*" all)
  std::string local_exclude_ports;            // -d
  std::string service_cidr;                   // -i ("" none, "*" all)
  std::string service_exclude_cidr;           // -x
  std::string outbound_ports;                 // -q
  std::string local_outbound_ports_exclude;   // -o
  std::string kube_virt_interfaces;           // -k
  std::string exclude_interfaces;             // -c
  bool redirect_dns = false;
  bool capture_all_dns = false;
  bool drop_invalid = false;
  bool dual_stack = false;
  bool dry_run = false;       // -n
  bool run_validation = false;
  bool skip_rule_apply = false;
  bool cleanup_only = false;
  bool reconcile = false;     // accepted: every weir apply reconciles
  std::string network_namespace;
  std::string iptables_probe_port = "15002";
  std::string probe_timeout = "5s";
  std::string log_output_level;  // Istio's logging flag ("default:info")
  bool log_as_json = false;      // Istio's logging flag: JSON lines
  bool force_apply = false;      // accepted: every weir apply reconciles
  bool native_nftables = false;  // spec.backend = nftables
};

// Adds Istio's flags and environment variables to `app`. `f` must outlive
// the parse. After parsing call apply_istio_env_fallbacks().
void bind_istio_flags(CLI::App& app, IstioFlags& f);

// Istio's second-chance variables: REDIRECT_DNS defaults to
// ISTIO_META_DNS_CAPTURE, DROP_INVALID to INVALID_DROP, DUAL_STACK to
// ISTIO_AGENT_DUAL_STACK. Applies them to flags the user did not give.
// Istio's environment-only settings that change what is captured and that
// weir's spec cannot say (ISTIO_OUTBOUND_OWNER_GROUPS,
// ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE, ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR) are
// an Unsupported error naming the variable unless they hold Istio's default
// ("*", "", "127.0.0.1/32"): never ignored.
Status apply_istio_env_fallbacks(const CLI::App& app, IstioFlags& f);

// What an istio-iptables command line asks weir-init to do, in order:
// clean (cleanup_only) or apply (unless skip_rule_apply), then validate.
struct IstioCommand {
  CaptureSpec spec;
  std::string netns;  // --network-namespace; empty = weir-init's own
  bool dry_run = false;
  bool cleanup_only = false;
  bool apply = true;
  bool validate = false;
  ValidationOptions validation;
  // IPv6 rules because the pod has only IPv6 addresses (no --dual-stack).
  bool ipv6_only_pod = false;
  // Lines for the log: what weir did differently from what was asked, as
  // Istio does (e.g. DNS capture turned off for want of a nameserver).
  std::vector<std::string> warnings;
};

// The nameservers DNS capture is limited to without --capture-all-dns; called
// only then (Istio reads /etc/resolv.conf). An empty list (resolv.conf has no
// nameserver line) turns DNS capture off with a warning and installs the
// rest, as Istio does; an error fails the command.
using NameserverSource = std::function<Result<std::vector<Cidr>>()>;

// Whether the pod is IPv6-only: the namespace the rules go to (`netns`, from
// --network-namespace; empty: weir-init's own) has a global IPv6 address and
// no global IPv4 one. Istio enables IPv6 rules when the pod's own address is
// IPv6, --dual-stack or not. Called only without --dual-stack and only when
// rules are planned (not for cleanup or validation alone).
using Ipv6OnlySource = std::function<Result<bool>(const std::string& netns)>;

// Translates the flags. IPv6 rules with --dual-stack or in an IPv6-only pod
// (`ipv6_only`); otherwise IPv6 entries of -i, -x and the nameservers are
// dropped, as Istio's IPv4 rules ignore them. `uid`/`gid` are the caller's,
// for the validation target: as a proxy UID/GID (Istio's validation
// container runs as 1337) the dial goes from 127.0.0.1 to
// 127.0.0.6:PROBE_PORT, which the proxy-on-lo rule captures as inbound,
// exactly as Istio's validator does; as any other user it goes to
// 198.19.255.254:PROBE_PORT, which outbound capture takes.
// Errors name the flag.
Result<IstioCommand> istio_command(const IstioFlags& f, const NameserverSource& nameservers,
                                   const Ipv6OnlySource& ipv6_only, uint32_t uid, uint32_t gid);

}  // namespace weir
