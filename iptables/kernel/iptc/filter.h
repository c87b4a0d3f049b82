// The libiptc (legacy xtables) packet filter: lowers a capture policy to
// xtables tables and chains (rules/xtables/lower.h) and syncs each table with
// one libiptc commit. One handle per table, made on the calling thread (a
// handle talks to the namespace current at init).
#pragma once

#include <memory>
#include <vector>

#include "kernel/packet_filter.h"
#include "rules/model.h"

namespace weir {

struct IptcOptions {
  // Test hook: the Nth table commit this filter makes (1-based, counting
  // every commit including rollbacks) fails with EINVAL without reaching the
  // kernel, so a test can prove that apply puts everything back. 0 = never.
  int fail_commit_number = 0;
  // Test hook: after the Nth table commit succeeds, stop as a kill -9 would
  // there: return an error and put nothing back, so a test can see the half
  // state each point of the commit order leaves. 0 = never.
  int abandon_after_commit = 0;
  // Bounded retries of a commit the kernel refuses with EAGAIN or EINVAL
  // (another writer changed the table between our read and our commit, or
  // between the commit's replace and its counter update).
  int eagain_retries = 10;
  // A commit replaces the whole table, so weir looks at the table again
  // right before committing and starts over when another tool changed
  // anything outside weir's chains since weir read it (else the commit
  // would undo that change). This long at most, while the other tool keeps
  // changing it; then the apply fails with EAGAIN.
  int foreign_change_ms = 2000;
};

class IptcFilter final : public PacketFilter {
 public:
  explicit IptcFilter(IptcOptions options = {});
  ~IptcFilter() override;
  IptcFilter(const IptcFilter&) = delete;
  IptcFilter& operator=(const IptcFilter&) = delete;

  const char* name() const override { return "iptables"; }
  // Opens (through libiptc) every table of every family and stage `policy`
  // has, chains or not; Unsupported naming the first that cannot be opened.
  Status probe(const CapturePolicy& policy) override;
  // Commits are atomic per table only: apply reads weir's part of every
  // table in scope first and, when a later commit fails, puts the tables
  // already committed back from that read.
  Result<CapturePolicy> apply(const CapturePolicy& policy, const std::vector<Family>& scope) override;
  Result<CapturePolicy> read(const std::vector<Family>& families) override;
  CapturePolicy canonical(const CapturePolicy& policy) const override;
  // Istio's, Linkerd's (...) chains in the nat, mangle and raw tables of
  // both families: libiptc's chain names, in the tables this namespace has.
  Result<std::vector<ForeignRules>> foreign_rules() override;

  // The xtables form: what apply() installs for `wanted` (nothing else
  // changes; routes are ignored), and what read() raises. For tests and the
  // benchmark.
  Status apply_rules(const RulePlan& wanted, const std::vector<Family>& scope);
  Result<RulePlan> read_rules(const std::vector<Family>& families);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Returns `live` with its rulesets, tables and chains in the order `wanted`
// has them (the kernel lists user chains alphabetically, the planner in the
// order it creates them); what `wanted` lacks keeps its order, after the rest.
// Rules inside a chain keep their kernel order: that order matters.
RulePlan order_like(const RulePlan& live, const RulePlan& wanted);

}  // namespace weir
