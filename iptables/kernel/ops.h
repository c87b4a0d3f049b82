// What front ends call: plan-and-apply, check, clean and show against a
// network namespace. Each enters the namespace, takes the namespace's lock
// (writers only), and works through the kernel side: a packet filter, the
// policy routes and lo's addresses. apply and clean are one all-or-nothing
// transaction across the three.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernel/links.h"
#include "kernel/packet_filter.h"
#include "kernel/routing.h"
#include "rules/diff.h"
#include "rules/foreign.h"
#include "rules/model.h"
#include "rules/spec.h"

namespace weir {

struct NetnsTarget {
  std::string netns_path;        // resolved path (see netns_path())
  bool allow_own_netns = false;  // refuse the caller's own namespace unless set
  int lock_timeout_ms = 10000;  // waiting for another writer to the namespace (see NetnsLock)
};

// The kernel side ops works through. Each works on the calling thread's
// namespace; ops calls them only from inside the target.
struct KernelSide {
  // The packet filters weir can write with, in auto's order of preference
  // (the real kernel side: nftables, then libiptc). The spec's `backend`
  // picks one, or (auto) apply takes the first whose kernel interface takes
  // the rules; after a successful apply, weir's rules leave the others.
  std::vector<PacketFilter*> filters;
  PolicyRouting& routing;
  Links& links;
};

struct ApplyReport {
  std::string backend;                // the filter that installed it: "nftables" or "iptables"
  RulePlan plan;                      // what was installed, in xtables form
  std::vector<std::string> warnings;  // e.g. "excluded interface eth7 does not exist"
  // Other capture tools' rules in the namespace (also one warning each).
  std::vector<ForeignRules> foreign;
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

// Validates the spec, plans it, and installs the plan in the target
// namespace, all or nothing. In order: ::6 on lo (when the plan has IPv6
// rules; skipped with a warning when IPv6 is disabled on lo), the packet
// filter's rules, the policy routes. When a step fails, the steps before it
// are undone in reverse (routes back, the filter's previous rules back, ::6
// removed if this apply added it) and the error says what failed.
// A spec asking for IPv6 in a namespace without IPv6 gets IPv4 only (with a
// warning); IPv6 only is then an error. Error (and nothing changed) when the
// namespace has IPv6 but weir cannot install IPv6 rules.
// Other capture tools' rules found there (Istio's, Linkerd's; every filter
// looks in its kernel interface, rules/foreign.h) are left as they are and
// reported, each as a warning.
Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec, KernelSide& kernel);
Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec);  // the real kernel

// weir's live rules (with counters): from the filter that holds them.
struct ShowReport {
  std::string backend;  // "nftables" or "iptables"
  CapturePolicy live;   // with the policy routes
  RulePlan rules;       // the same in xtables form (iptables-save text)
};

struct CheckReport {
  // What the spec asks for, at the filter's granularity (its canonical()),
  // and what was read (the filter's rules and the policy routes).
  CapturePolicy wanted, live;
  std::string backend;  // the filter whose rules were compared
  PlanDiff diff;  // empty when the live rules are the plan
  // Other capture tools' rules in the namespace, in any backend. Not drift:
  // apply leaves them (they are not weir's), so applying again cannot make
  // them go; but the pod may be captured twice, so front ends report them
  // as a problem (`weir check` and CNI CHECK fail).
  std::vector<ForeignRules> foreign;
  bool in_sync() const { return diff.empty() && foreign.empty(); }
};
Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec, KernelSide& kernel);
Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec);

// Removes weir's rules and policy routes for both families (not ::6: weir
// cannot tell its own from one the pod's runtime added). Succeeds when none
// exist. All or nothing like apply. Other capture tools' rules stay; when
// `remaining` is given, it gets one line (describe()) for each.
Status clean(const NetnsTarget& t, KernelSide& kernel, std::vector<std::string>* remaining = nullptr);
Status clean(const NetnsTarget& t, std::vector<std::string>* remaining = nullptr);

// weir's live rules (with counters) and policy routes for both families.
Result<ShowReport> show(const NetnsTarget& t, KernelSide& kernel);
Result<ShowReport> show(const NetnsTarget& t);

// Which packet filter would take the spec's rules in this kernel (for CNI
// STATUS), without changing anything in the calling thread's namespace: the
// first candidate whose probe() succeeds, by name; Unsupported naming why
// each was refused.
Result<std::string> probe(const CaptureSpec& spec, KernelSide& kernel);
Result<std::string> probe(const CaptureSpec& spec);

// Whether this build has the nftables filter: "built in", or "not built in
// (built without libmnl.a)" (CMake WEIR_NFTABLES=OFF; the static build leaves
// it out when libmnl.a could not be built). For --version and logs. Without
// it, auto uses legacy iptables and `backend: nftables` fails saying why.
const char* nftables_backend();

}  // namespace weir
