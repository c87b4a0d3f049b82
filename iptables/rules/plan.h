// The planner: a pure function from a CaptureSpec to the capture policy weir
// installs (rules/policy.h). No syscalls, no globals; the same spec always
// gives the same policy.
#pragma once

#include "rules/model.h"
#include "rules/policy.h"
#include "rules/spec.h"

namespace weir {

// Chain names weir uses (each table has its own subset).
namespace chains {
inline constexpr const char* kInbound = "WEIR_INBOUND";        // nat/mangle/raw, from PREROUTING
inline constexpr const char* kInRedirect = "WEIR_IN_REDIRECT"; // nat: REDIRECT to inboundPort
inline constexpr const char* kOutput = "WEIR_OUTPUT";          // nat/mangle/raw, from OUTPUT
inline constexpr const char* kOutbound = "WEIR_OUTBOUND";      // nat: destination include/exclude
inline constexpr const char* kRedirect = "WEIR_REDIRECT";      // nat: REDIRECT to outboundPort
inline constexpr const char* kDns = "WEIR_DNS";                // nat: DNS to dns.port
inline constexpr const char* kDivert = "WEIR_DIVERT";          // mangle: mark + accept
inline constexpr const char* kTproxy = "WEIR_TPROXY";          // mangle: TPROXY to inboundPort
}  // namespace chains

// Builds weir's capture policy for a valid spec (call validate() first; an
// invalid spec gives an unspecified policy). One FamilyPolicy per requested
// family, V4 first; policy routes when TPROXY captures inbound.
CapturePolicy capture_policy(const CaptureSpec& spec);

// The same, lowered to the xtables model (xtables::lower(capture_policy(spec))):
// what the libiptc backend installs and `weir plan` prints as iptables-save text.
RulePlan plan(const CaptureSpec& spec);

// The loopback and passthrough addresses of a family: 127.0.0.1/::1 and the
// proxy's passthrough source 127.0.0.6/::6.
Cidr loopback_addr(Family f);
Cidr passthrough_addr(Family f);

}  // namespace weir
