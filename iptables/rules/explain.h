// Explain: walks weir's rules as netfilter would for one packet and reports
// the path, rule by rule, and the verdict. Pure: works on a RulePlan, whether
// planned from a spec or read from a live namespace.
//
// Model of netfilter used (only weir's rules are walked; foreign rules in a
// live namespace are not, and the output says so):
//   prerouting (a packet arriving on in_iface): raw, mangle, then nat when the
//     conntrack state is NEW;
//   output (a locally generated packet leaving via out_iface): raw, mangle,
//     then nat when NEW.
// A TPROXY or REDIRECT ends the walk with that verdict; DROP ends it; ACCEPT
// ends the table; RETURN from a weir chain goes back to the caller; falling
// off a built-in chain's weir rules continues with the next table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/model.h"

namespace weir {

struct Packet {
  Family family = Family::V4;
  enum class Hook { Prerouting, Output } hook = Hook::Output;
  Proto proto = Proto::Tcp;
  Cidr src, dst;  // host addresses (full-length prefix)
  uint16_t sport = 0, dport = 0;
  std::optional<uint32_t> uid, gid;  // sending process (output only); neither = no socket
  std::string in_iface;   // prerouting
  std::string out_iface;  // output; empty = "lo" when dst is loopback, else "eth0".
                          // Traffic to the pod's own IP leaves via lo: set "lo".
  enum class CtState { New, Established, Related, Invalid } ct_state = CtState::New;
  uint32_t mark = 0;
  uint32_t connmark = 0;
};

struct TraceStep {
  std::string table;
  std::string chain;
  int rule = 0;           // 1-based index in the chain
  std::string rule_text;  // as iptables-save prints it ("-A CHAIN ...")
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
  Packet packet;                  // as walked: interface defaults filled in
  std::vector<TraceStep> steps;   // only rules that were evaluated
  std::vector<std::string> notes; // what the walk did not cover (tables skipped, foreign chains)
  ExplainVerdict verdict;
  std::string summary;  // one line: "redirected to port 15001 by nat WEIR_REDIRECT rule 1 (outbound capture)"
};

Explanation explain(const RulePlan& plan, const Packet& p);

// Human-readable, rule by rule; JSON with the same content.
std::string render_explanation(const Explanation& e);
nlohmann::json to_json(const Explanation& e);

// True when `r` matches `p` (all of its matches), given the packet's current
// mark. Exposed for tests.
bool rule_matches(const Rule& r, const Packet& p);

}  // namespace weir
