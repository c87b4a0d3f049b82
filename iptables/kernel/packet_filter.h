// The packet filter seam: one implementation per kernel interface (libiptc for
// legacy xtables, kernel/iptc/; nf_tables over netlink, kernel/nft/). A filter
// receives what to do (a CapturePolicy) and decides for itself how its kernel
// interface says it. It works on the network namespace of the calling thread:
// ops (kernel/ops.h) enters the target namespace, takes its lock and runs the
// transaction across the filter, the policy routes and lo's addresses.
// Policy routes are not the filter's: CapturePolicy::routes is ignored here.
#pragma once

#include <vector>

#include "rules/error.h"
#include "rules/foreign.h"
#include "rules/policy.h"

namespace weir {

class PacketFilter {
 public:
  virtual ~PacketFilter() = default;

  // "iptables" or "nftables": what weir calls the backend in specs and messages.
  virtual const char* name() const = 0;

  // Whether this namespace's kernel can take `policy` through this filter
  // (its tables or table type, hooks, matches and targets). Changes nothing a
  // user can see. An error says what is missing, e.g. "ipv4 nat table: the
  // kernel has no iptable_nat (legacy xtables)". Errors of kind Unsupported
  // mean "not here"; others mean the probe itself failed.
  virtual Status probe(const CapturePolicy& policy) = 0;

  // Makes weir's rules of the `scope` families exactly `policy`'s (a family in
  // scope but not in policy loses weir's rules). Touches nothing that is not
  // weir's. All-or-nothing: on error, what this call changed is put back.
  // Idempotent: when the live rules already are the policy, nothing is
  // written (counters stay). Returns weir's rules as they were before, in
  // scope, so the caller can put them back with apply(previous, scope) when a
  // later step of its transaction fails.
  virtual Result<CapturePolicy> apply(const CapturePolicy& policy, const std::vector<Family>& scope) = 0;

  // weir's live rules (with counters) of the given families; families or
  // tables the kernel does not have read as absent, not as errors.
  virtual Result<CapturePolicy> read(const std::vector<Family>& families) = 0;

  // `policy` as this filter would read it back after applying it: its own
  // granularity (the libiptc filter splits port sets into multiport groups and
  // CIDR sets into one rule each, and fills the reasons per rule). check
  // compares canonical(wanted) with read(); explain walks canonical(wanted),
  // so its rule numbers are the live rules' numbers. Pure.
  virtual CapturePolicy canonical(const CapturePolicy& policy) const = 0;

  // Other capture tools' rules that this filter's kernel interface holds
  // (rules/foreign.h), for apply's warnings and check's problems. Lists
  // table and chain names only: never another tool's rules (dumping them is
  // what crashes a tool on a ruleset a newer one wrote, NFTABLES.md), and
  // never changes anything. A missing kernel interface, family or table has
  // none. A filter that cannot see any reports none.
  virtual Result<std::vector<ForeignRules>> foreign_rules() { return std::vector<ForeignRules>{}; }
};

}  // namespace weir
