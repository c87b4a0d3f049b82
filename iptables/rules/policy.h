// The capture policy: what weir does to packets, backend-neutral. The planner
// builds it from a CaptureSpec (plan.h), purely; each backend lowers it to its
// own form (the libiptc backend to xtables tables and chains, rules/xtables/;
// the nftables backend to one inet table); a backend's read-back raises its
// live rules into the same structs, so check, diff and explain compare and walk
// like with like whatever the backend.
//
// The model is netfilter's, without any one interface's encoding:
//  - a packet passes, at each hook weir uses (prerouting, output), the stages
//    raw (priority -300, before conntrack), mangle (-150) and nat (-100, only
//    for the first packet of a connection), in that order;
//  - in each stage of each family weir has base chains (attached to a hook)
//    and regular chains (reached by Jump); a chain is a list of steps, each a
//    match, an action and the reason it exists;
//  - sets of ports and CIDRs have any size: how a backend spells a set (15
//    ports per multiport match, one rule per CIDR, an anonymous nft set) is its
//    own business.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rules/model.h"

namespace weir {

enum class Hook { Prerouting, Output };
const char* to_string(Hook h);  // "prerouting" / "output"

// In the order netfilter runs them at one hook.
enum class Stage { Raw, Mangle, Nat };
const char* to_string(Stage s);  // "raw" / "mangle" / "nat" (also the xtables table names)
int priority(Stage s);           // -300 / -150 / -100

struct PortSet {
  std::vector<PortRange> ports;  // in the spec's order; never empty in a plan
  bool negated = false;          // matches a port in none of them
  bool operator==(const PortSet&) const = default;
};

struct CidrSet {
  std::vector<Cidr> cidrs;  // all of the chain's family; never empty in a plan
  bool negated = false;
  bool operator==(const CidrSet&) const = default;
};

struct IfaceMatch {
  std::string name;  // exact name ("eth0"; a trailing '+' is a prefix, as in xtables)
  bool negated = false;
  bool operator==(const IfaceMatch&) const = default;
};

// Every condition of a step; a step matches when all that are set match.
struct Match {
  std::optional<CidrSet> src;
  std::optional<CidrSet> dst;
  std::optional<IfaceMatch> in;   // prerouting only
  std::optional<IfaceMatch> out;  // output only
  Proto proto = Proto::Any;
  bool proto_negated = false;
  std::optional<PortSet> sport;  // need proto tcp or udp
  std::optional<PortSet> dport;
  std::optional<Owner> owner;  // the sending socket's uid/gid (output only)
  std::optional<Conntrack> conntrack;
  std::optional<MarkMatch> mark;
  std::optional<MarkMatch> connmark;
  // Conditions a backend found in a live rule and cannot express here, in its
  // own words (the libiptc filter: the match name, "statistic"). Never in a plan; explain
  // cannot evaluate them; check reports them as drift.
  std::vector<std::string> unknown;
  bool operator==(const Match&) const = default;
};

// What a matching step does (the types are shared with the xtables model).
using Action = Target;

struct Step {
  Match match;
  Action action = Verdict{Verdict::Accept};
  // Why the step exists, in the operator's words; a backend stores it with
  // the rule (an xtables comment, an nft rule comment), so the rules in a pod
  // explain themselves. It may name the step's sets as {src}, {dst}, {sport},
  // {dport}: a backend that spells one set as several rules fills each with
  // the part it holds ("outbound to 10.0.0.0/8 is not captured"); fill_reason()
  // fills them with the whole set.
  std::string reason;
  Counters counters;  // live steps only; never part of equality
  bool operator==(const Step&) const = default;
};

struct PolicyChain {
  std::string name;  // regular chains: "WEIR_..." (kChainPrefix); base chains: "PREROUTING" / "OUTPUT"
  std::optional<Hook> hook;  // set for a base chain
  std::vector<Step> steps;
  // Base chains read from a namespace: how many rules of other tools run
  // before weir's at this hook and stage, where weir's must run first (the
  // xtables built-in chain's head). More than 0 is drift.
  unsigned foreign_before = 0;
  bool operator==(const PolicyChain&) const = default;
};

struct StagePolicy {
  Stage stage = Stage::Nat;
  std::vector<PolicyChain> chains;  // in the order they are created (base and regular mixed)
  bool operator==(const StagePolicy&) const = default;
  const PolicyChain* find(const std::string& name) const;
};

// weir's policy for one address family: the stages it uses, in commit order
// (raw, mangle, nat: the stage that captures goes last).
struct FamilyPolicy {
  Family family = Family::V4;
  std::vector<StagePolicy> stages;
  bool operator==(const FamilyPolicy&) const = default;
  const StagePolicy* find(Stage s) const;
};

// Everything weir installs in one network namespace: the packet filter's
// part per family (V4 first) and the policy routes TPROXY needs.
struct CapturePolicy {
  std::vector<FamilyPolicy> families;
  std::vector<PolicyRoute> routes;
  bool operator==(const CapturePolicy&) const = default;
  const FamilyPolicy* find(Family f) const;
};

// The step's reason with {src}, {dst}, {sport}, {dport} replaced by the whole
// set ("10.0.0.0/8,192.168.0.0/16", "80,8000-8100"; "!" before a negated set).
std::string fill_reason(const Step& s);

// Keeps only the given families (rules and routes).
CapturePolicy restrict_to(CapturePolicy p, const std::vector<Family>& families);

// `live` reordered like `wanted` (families, stages, chains, routes), so that
// a diff lines them up; what `wanted` lacks keeps its order at the end.
CapturePolicy order_like(const CapturePolicy& live, const CapturePolicy& wanted);

}  // namespace weir
