// Explain: walks weir's rules as netfilter would for one packet and reports
// the path, step by step, and the verdict. Pure: works on a CapturePolicy,
// whether planned from a spec or read from a live namespace, whatever the
// backend. Callers explain PacketFilter::canonical(wanted) for a planned
// policy, so that the step numbers are those of the live rules.
//
// Model of netfilter used (only weir's rules are walked; foreign rules in a
// live namespace are not, and the output says so):
//   prerouting (a packet arriving on in_iface): stages raw, mangle, then nat
//     when the conntrack state is NEW;
//   output (a locally generated packet leaving via out_iface): raw, mangle,
//     then nat when NEW.
// In each stage the base chains of the hook are walked, in order, and the
// regular chains they jump to. A TPROXY or REDIRECT ends the walk with that
// verdict; DROP ends it; ACCEPT ends the stage; RETURN from a regular chain
// goes back to the caller; falling off a base chain continues with the next.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/error.h"
#include "rules/model.h"
#include "rules/policy.h"
#include "rules/xtables/policy_text.h"

namespace weir {

struct Packet {
  using Hook = weir::Hook;
  Family family = Family::V4;
  Hook hook = Hook::Output;
  Proto proto = Proto::Tcp;
  Cidr src, dst;  // host addresses (full-length prefix)
  uint16_t sport = 0, dport = 0;
  std::optional<uint32_t> uid, gid;  // sending process (output only); neither = no socket
  std::string in_iface;   // prerouting; empty = kDefaultIface
  std::string out_iface;  // output; empty = "lo" when dst is loopback or the pod's
                          // own address (src), else kDefaultIface
  enum class CtState { New, Established, Related, Invalid } ct_state = CtState::New;
  uint32_t mark = 0;
  uint32_t connmark = 0;
};

// explain's defaults for what a user leaves out of a packet (make_packet), and
// for the interfaces of a Packet (explain); set here and nowhere else. The
// addresses are from the ranges weir's tests use.
struct PacketAddrDefaults {
  const char* pod;       // destination of an inbound packet, source of an outbound one
  const char* peer;      // the other end, outside the pod
  const char* loopback;  // source of an outbound packet to a loopback destination
};
inline constexpr PacketAddrDefaults kV4PacketDefaults{"198.18.0.1", "198.18.0.10", "127.0.0.1"};
inline constexpr PacketAddrDefaults kV6PacketDefaults{"fd00::1", "fd00::10", "::1"};
inline constexpr uint16_t kDefaultSourcePort = 40000;
inline constexpr uint32_t kDefaultAppId = 1000;   // uid and gid of the process sending an outbound packet
inline constexpr const char* kDefaultIface = "eth0";  // in (prerouting) or out (output, not to the pod itself)

// A packet as a user describes it (weir explain's flags): what is not given
// gets the defaults above.
struct PacketQuery {
  Packet::Hook hook = Packet::Hook::Output;
  Proto proto = Proto::Tcp;
  std::optional<Cidr> src, dst;      // host addresses; the family follows them
  Family family = Family::V4;        // when neither address is given
  std::optional<uint16_t> sport;     // default kDefaultSourcePort
  uint16_t dport = 0;
  std::optional<uint32_t> uid, gid;  // output only; default kDefaultAppId
  std::string in_iface, out_iface;   // empty = the default of Packet
  Packet::CtState ct_state = Packet::CtState::New;
  uint32_t mark = 0, connmark = 0;
};

// The packet with every default filled in; the fields of the other hook
// (uid, gid and out_iface at prerouting, in_iface at output) are dropped.
// Error (InvalidArgument) when src and dst are of different families.
Result<Packet> make_packet(const PacketQuery& q);

struct TraceStep {
  std::string table;
  std::string chain;
  int rule = 0;           // 1-based index in the chain
  std::string rule_text;  // as the PolicyText's step prints it (iptables-save: "-A CHAIN ...")
  bool matched = false;
  std::string effect;     // for matched rules: "jump to WEIR_OUTPUT", "return", "REDIRECT to 15001", "mark 0x539"
};

struct ExplainVerdict {
  enum Kind {
    Redirected,  // REDIRECT: lands on 127.0.0.1/::1 port `port`, SO_ORIGINAL_DST = original dst
    Tproxied,    // TPROXY: lands on port `port` with the client's address kept, mark `mark`
    Untouched,   // goes where it was going
    Dropped,
  } kind = Untouched;
  uint16_t port = 0;
  uint32_t mark = 0;
  std::string decided_by;  // "nat WEIR_REDIRECT rule 1" or "no weir rule matched"
};

struct Explanation {
  Packet packet;                  // as walked: interface defaults filled in (as make_packet does)
  std::vector<TraceStep> steps;   // only rules that were evaluated
  std::vector<std::string> notes; // what the walk did not cover (tables skipped, foreign chains)
  ExplainVerdict verdict;
  std::string summary;  // one line: "redirected to port 15001 by nat WEIR_REDIRECT rule 1 (outbound capture)"
};

// `text` prints each step for TraceStep::rule_text (the backend's own form).
Explanation explain(const CapturePolicy& policy, const Packet& p, const PolicyText& text = xtables::policy_text());

// Human-readable, rule by rule; JSON with the same content.
std::string render_explanation(const Explanation& e);
nlohmann::json to_json(const Explanation& e);

// True when `m` matches `p` (all of its conditions), given the packet's own
// mark, outside the raw stage. Exposed for tests.
bool matches(const Match& m, const Packet& p);

}  // namespace weir
