// What front ends call: plan-and-apply, check, clean and read against a
// network namespace. Each enters the namespace, takes the namespace's lock
// (writers only), verifies the kernel can take what the spec asks for, and
// delegates to a Backend.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernel/backend.h"
#include "rules/diff.h"
#include "rules/model.h"
#include "rules/spec.h"

namespace weir {

struct NetnsTarget {
  std::string netns_path;        // resolved path (see netns_path())
  bool allow_own_netns = false;  // refuse the caller's own namespace unless set
  int lock_timeout_ms = 10000;  // waiting for another writer to the namespace (see NetnsLock)
};

struct ApplyReport {
  RulePlan plan;                      // what was installed
  std::vector<std::string> warnings;  // e.g. "excluded interface eth7 does not exist"
};

// Opens the target as apply() and clean() do before they act, and changes
// nothing: NetnsNotFound when it does not exist, InvalidArgument when it is
// not a network namespace, OwnNetns when it is the caller's own and
// allow_own_netns is not set.
Status open_target(const NetnsTarget& t);

// Runs `fn` with the calling thread inside the target's namespace (opened as
// check() opens it; no lock: for readers, e.g. a validation that dials from
// inside, or reading the pod's addresses) and brings the thread back before
// returning. The error of entering, or fn's own. `entered` (if given) says
// whether fn ran.
Status in_netns(const NetnsTarget& t, const std::function<Status()>& fn, bool* entered = nullptr);

// Validates the spec, plans it, and installs the plan in the target namespace.
// Error (and nothing changed) when the spec asks for IPv6 and the namespace has
// IPv6 but weir cannot install IPv6 rules.
Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec, Backend* backend = nullptr);

struct CheckReport {
  RulePlan wanted, live;
  PlanDiff diff;  // empty when the live rules are the plan
};
Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec, Backend* backend = nullptr);

// Removes weir's rules and routes for both families. Succeeds when none exist.
Status clean(const NetnsTarget& t, Backend* backend = nullptr);

// weir's live rules (with counters) for both families.
Result<RulePlan> show(const NetnsTarget& t, Backend* backend = nullptr);

}  // namespace weir
