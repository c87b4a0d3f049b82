// The xtables form of a capture policy, and back. Pure: the libiptc filter
// (kernel/iptc/) and `weir plan` (iptables-save text) lower a policy with it;
// the libiptc filter raises what it reads from the kernel with it.
//
// Lowering: a stage becomes the table of its name (raw, mangle, nat); a base
// chain becomes weir's rules at the head of the built-in chain of its name; a
// port set becomes -m tcp/udp --dport (one port or range) or -m multiport
// groups of at most 15 ports (kMultiportMaxPorts); a CIDR set becomes one rule
// per CIDR; a step spelled as several rules gets its reason filled per rule.
#pragma once

#include <string>

#include "rules/error.h"
#include "rules/model.h"
#include "rules/policy.h"

namespace weir::xtables {

// Error (InvalidSpec) when a set cannot be spelled in xtables: a negated port
// set larger than one multiport match, a negated CIDR set of more than one,
// sets for both source and destination ports.
Result<RulePlan> lower(const CapturePolicy& policy);

// Each rule becomes one step (its comment the reason, its unknown matches
// Match::unknown), each built-in chain a base chain. Routes are carried over.
CapturePolicy raise(const RulePlan& plan);

// lower then raise: the policy at xtables granularity (what
// PacketFilter::canonical returns for the libiptc filter). A policy that
// cannot be lowered comes back as it was.
CapturePolicy canonical(const CapturePolicy& policy);

// One step as iptables-save prints it after the chain name, for a step that
// lowers to one rule ("-o lo -p tcp -m tcp ! --dport 15008 -j RETURN"); the
// rules of a step that lowers to several are joined with " ; ".
std::string step_text(const Step& step, Family family);

}  // namespace weir::xtables
