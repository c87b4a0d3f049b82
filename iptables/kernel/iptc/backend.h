// The libiptc backend's knobs, for tests. Front ends use make_iptc_backend()
// from backend.h.
#pragma once

#include <memory>

#include "kernel/backend.h"

namespace weir {

struct IptcOptions {
  // Test hook: the Nth table commit this backend makes (1-based, counting
  // every commit including rollbacks) fails with EINVAL without reaching the
  // kernel, so a test can prove that apply puts everything back. 0 = never.
  int fail_commit_number = 0;
  // Bounded retries of a commit the kernel refuses with EAGAIN or EINVAL
  // (another writer changed the table between our read and our commit, or
  // between the commit's replace and its counter update).
  int eagain_retries = 10;
};

std::unique_ptr<Backend> make_iptc_backend(const IptcOptions& options);

// Returns `live` with its rulesets, tables and chains in the order `wanted`
// has them (the kernel lists user chains alphabetically, the planner in the
// order it creates them); what `wanted` lacks keeps its order, after the rest.
// Rules inside a chain keep their kernel order: that order matters.
RulePlan order_like(const RulePlan& live, const RulePlan& wanted);

}  // namespace weir
