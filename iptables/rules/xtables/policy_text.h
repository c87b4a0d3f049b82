// The iptables-save form of a capture policy, for check and explain: each step
// as the "-A" line(s) its rule(s) print as, chains declared as iptables-save
// declares them, a family as iptables-restore input. For a policy at xtables
// granularity (xtables::canonical, what the libiptc filter reads back) every
// step is one rule and the text is exactly iptables-save's.
#pragma once

#include "rules/policy_text.h"

namespace weir::xtables {

PolicyText policy_text();

}  // namespace weir::xtables
