// Test support: capture policies from specs until the planner returns one.
// plan() still returns the xtables RulePlan and rules/xtables/lower.cc
// (xtables::raise) is not on main yet; this is a minimal raise of the same
// shape (each rule one step, each built-in chain a base chain, its comment the
// reason). Replace with xtables::raise(plan(spec)) or plan(spec) when they land.
#pragma once

#include "rules/model.h"
#include "rules/policy.h"
#include "rules/spec.h"

namespace weir::nft::testing {

CapturePolicy raise_plan(const RulePlan& plan);
// raise_plan(plan(spec)); the spec must be valid.
CapturePolicy policy_for(const CaptureSpec& spec);

}  // namespace weir::nft::testing
