// Comparing two capture policies (the wanted one and the live one) for
// `check`, whatever the backend. Callers compare PacketFilter::canonical(wanted)
// with what the filter read, so that both are at the backend's granularity.
#pragma once

#include <string>
#include <vector>

#include "rules/policy.h"
#include "rules/xtables/policy_text.h"

namespace weir {

struct DiffLine {
  enum Kind { Missing, Extra, Changed } kind;
  std::string where;   // "ipv4 nat WEIR_OUTPUT rule 3", "ipv4 nat chain WEIR_DNS", "ipv6 route fwmark 1337"
  std::string wanted;  // rendered step/chain/family (by the PolicyText), empty for Extra
  std::string live;    // empty for Missing
};

struct PlanDiff {
  std::vector<DiffLine> lines;
  bool empty() const { return lines.empty(); }
};

// Steps are compared as values (counters ignored) and aligned per chain on
// their longest common subsequence; regular chains are matched by name, base
// chains always exist (only their steps can be missing), and a base chain
// that runs after other tools' rules at its hook (foreign_before) is drift.
// `text` prints what differs, in the backend's words.
PlanDiff diff(const CapturePolicy& wanted, const CapturePolicy& live, const PolicyText& text = xtables::policy_text());

// Readable, one item per line, "-" for wanted-but-missing and "+" for live-but-unwanted:
//   ipv4 nat WEIR_OUTPUT rule 3: missing
//     - -A WEIR_OUTPUT -o lo -m owner --uid-owner 1337 -j RETURN
std::string render_diff(const PlanDiff& d);

}  // namespace weir
