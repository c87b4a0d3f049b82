// Capture validation: proves, from inside a pod's network namespace, that its
// TCP really goes to the proxy. Listens where the proxy would (the outbound
// and inbound ports on loopback), dials an address the rules must redirect,
// and succeeds only when that very connection arrives on the port it belongs
// to with SO_ORIGINAL_DST equal to the address dialed.
//
// Needs no privilege: plain sockets on ports the caller chooses (use ports
// >= 1024 as a non-root UID), no netfilter access. Bounded by a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"

namespace weir {

// An address and port, as dialed or as SO_ORIGINAL_DST reports it.
struct Endpoint {
  Cidr addr;  // a host: prefix 32 or 128
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

// "198.19.255.254:15999" or "[fd00::1]:15999". `what` names the flag.
Result<Endpoint> parse_endpoint(const std::string& what, const std::string& text);
// The same forms back.
std::string format_endpoint(const Endpoint& e);

// A Go-style duration, as Istio's --probe-timeout takes it: "5s", "500ms",
// "1m30s", "1.5s". A bare number is an error (it has no unit).
Result<std::chrono::milliseconds> parse_duration(const std::string& what, const std::string& text);

// The address `weir-init validate` dials by default: in 198.18.0.0/15 (RFC
// 2544 benchmarking, never routed on the Internet), so an uncaptured dial
// reaches nobody. The address must be routable in the pod (any default route).
inline constexpr const char* kDefaultValidationTarget = "198.19.255.254:15999";
// The default in a namespace with no IPv4 route (an IPv6-only pod), where a
// dial to the IPv4 default fails in connect() before any netfilter hook sees
// it: the last /64 of fd00::/8 (unique local, RFC 4193), not routed on the
// Internet and unlikely to be any cluster's (ULA prefixes are random /48s).
inline constexpr const char* kDefaultValidationTarget6 = "[fdff:ffff:ffff:ffff::fe]:15999";

// Whether this namespace can send to `to`, from `source` when set: the
// kernel's route lookup, as connect() makes it, for a dial in `to`'s family.
using RouteCheck = std::function<bool(const Endpoint& to, const std::optional<Cidr>& source)>;

// The real RouteCheck: connect()s a UDP socket, which looks the route up and
// sends nothing. No route when that fails with ENETUNREACH, EHOSTUNREACH or
// EADDRNOTAVAIL, when the family is missing (EAFNOSUPPORT), or when the
// kernel found a route but no IPv4 address to send from (source 0.0.0.0).
// Any other failure counts as a route: the dial itself will say what is wrong.
bool has_route(const Endpoint& to, const std::optional<Cidr>& source);

// The target dialed when none is given: the IPv4 default when the namespace
// routes it, else the IPv6 default when it routes that. A dual-stack
// namespace is checked on IPv4 only: its rules may rightly be IPv4-only
// (Istio without --dual-stack, proxy-init --ipv6=false). With `source`, only
// the default of its family is a candidate. Error (Unsupported) naming what
// was tried when no candidate is routable.
Result<Endpoint> default_target(const std::optional<Cidr>& source, const RouteCheck& routable);

// Exit codes of validation failures, chosen not to collide with Istio's 126 or
// Linkerd's 95; the istio-iptables dialect uses 126 on purpose (drop-in).
inline constexpr int kExitCaptureMissing = 42;
inline constexpr int kExitIstioValidationFailed = 126;

// Which of the proxy's ports a captured dial must land on. A dial to a
// loopback address (127.0.0.0/8, ::1) or to one of the namespace's own
// addresses leaves through lo, where only the "proxy on lo" rule captures,
// as inbound: the inbound port. Any other dial is outbound capture's.
enum class ProbeDirection { Outbound, Inbound };
ProbeDirection probe_direction(const Endpoint& target, const std::vector<Cidr>& local_addresses);

struct ValidationOptions {
  uint16_t outbound_port = 15001;
  uint16_t inbound_port = 15006;
  // Each must arrive redirected (all of them for success). Empty = the
  // default: default_target(source, has_route).
  std::vector<Endpoint> targets;
  // Binds the dialing socket to this address first (Istio dials from 127.0.0.1).
  std::optional<Cidr> source;
  std::chrono::milliseconds timeout{5000};
};

struct ValidationReport {
  bool captured = false;     // every target arrived on its port with the right SO_ORIGINAL_DST
  bool wrong_port = false;   // a target arrived redirected, but on the other proxy port
  std::string detail;        // what happened, one line per target
  uint16_t landed_port = 0;  // where the (last) captured connection arrived
  std::chrono::microseconds elapsed{0};
};

// Runs the check. Captured or not is a report, not an error; Error only when
// the check itself cannot run (no listener could be opened, e.g. the port is
// in use, or a target's family has no loopback listener; no target given and
// no default routable). A connection that
// arrives on the other proxy port (rules with the outbound and inbound ports
// swapped) is not captured and ends the check at once: waiting will not move it.
Result<ValidationReport> validate_capture(const ValidationOptions& opts);

}  // namespace weir
