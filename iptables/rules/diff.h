// Comparing two rule plans (the wanted one and the live one) for `check`.
#pragma once

#include <string>
#include <vector>

#include "rules/model.h"

namespace weir {

struct DiffLine {
  enum Kind { Missing, Extra, Changed } kind;
  std::string where;   // "ipv4 nat WEIR_OUTPUT rule 3", "ipv4 nat chain WEIR_DNS", "ipv6 route fwmark 1337"
  std::string wanted;  // rendered rule/chain, empty for Extra
  std::string live;    // empty for Missing
};

struct PlanDiff {
  std::vector<DiffLine> lines;
  bool empty() const { return lines.empty(); }
};

PlanDiff diff(const RulePlan& wanted, const RulePlan& live);

// Readable, one item per line, "-" for wanted-but-missing and "+" for live-but-unwanted:
//   ipv4 nat WEIR_OUTPUT rule 3: missing
//     - -A WEIR_OUTPUT -o lo -m owner --uid-owner 1337 -j RETURN
std::string render_diff(const PlanDiff& d);

}  // namespace weir
