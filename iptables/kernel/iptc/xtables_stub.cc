// TEMPORARY, for linking only until the lead's rules/xtables/lower.cc lands
// on main: delete this file then (and its line in kernel/CMakeLists.txt).
// One rule <-> one step, no packing: exact for what today's planner emits
// (single ports as -m tcp/udp, groups as multiport, one CIDR per rule), so
// lower(raise(plan)) == plan and the libiptc filter installs what it did.
#include <string>

#include "rules/xtables/lower.h"

namespace weir::xtables {
namespace {

bool stage_of(const std::string& table, Stage* out) {
  if (table == "raw") *out = Stage::Raw;
  else if (table == "mangle") *out = Stage::Mangle;
  else if (table == "nat") *out = Stage::Nat;
  else return false;
  return true;
}

const char* table_of(Stage s) {
  switch (s) {
    case Stage::Raw: return "raw";
    case Stage::Mangle: return "mangle";
    case Stage::Nat: return "nat";
  }
  return "nat";
}

std::optional<Hook> hook_of(const std::string& chain) {
  if (chain == "PREROUTING") return Hook::Prerouting;
  if (chain == "OUTPUT") return Hook::Output;
  return std::nullopt;
}

Step raise_rule(const Rule& r) {
  Step s;
  Match& m = s.match;
  if (r.src) m.src = CidrSet{{*r.src}, r.src_negated};
  if (r.dst) m.dst = CidrSet{{*r.dst}, r.dst_negated};
  if (!r.in_iface.empty()) m.in = IfaceMatch{r.in_iface, r.in_negated};
  if (!r.out_iface.empty()) m.out = IfaceMatch{r.out_iface, r.out_negated};
  m.proto = r.proto;
  m.proto_negated = r.proto_negated;
  if (r.sport) m.sport = PortSet{{r.sport->range}, r.sport->negated};
  if (r.dport) m.dport = PortSet{{r.dport->range}, r.dport->negated};
  if (r.multiport) m.dport = PortSet{r.multiport->ports, r.multiport->negated};
  m.owner = r.owner;
  m.conntrack = r.conntrack;
  m.mark = r.mark;
  m.connmark = r.connmark;
  m.unknown = r.unknown_matches;
  s.action = r.target;
  s.reason = r.comment;
  s.counters = r.counters;
  return s;
}

Result<Rule> lower_step(const Step& s) {
  Rule r;
  const Match& m = s.match;
  auto one = [](const std::optional<CidrSet>& set, std::optional<Cidr>& cidr, bool& neg) -> Status {
    if (!set) return {};
    if (set->cidrs.size() != 1) return Error{ErrorKind::InvalidSpec, "xtables stub: one CIDR per step", 0};
    cidr = set->cidrs[0];
    neg = set->negated;
    return {};
  };
  if (Status st = one(m.src, r.src, r.src_negated); !st) return st.error();
  if (Status st = one(m.dst, r.dst, r.dst_negated); !st) return st.error();
  if (m.in) { r.in_iface = m.in->name; r.in_negated = m.in->negated; }
  if (m.out) { r.out_iface = m.out->name; r.out_negated = m.out->negated; }
  r.proto = m.proto;
  r.proto_negated = m.proto_negated;
  if (m.sport) {
    if (m.sport->ports.size() != 1) return Error{ErrorKind::InvalidSpec, "xtables stub: one source port range per step", 0};
    r.sport = PortMatch{m.sport->ports[0], m.sport->negated};
  }
  if (m.dport) {
    if (m.dport->ports.size() == 1) r.dport = PortMatch{m.dport->ports[0], m.dport->negated};
    else r.multiport = Multiport{m.dport->ports, m.dport->negated};
  }
  r.owner = m.owner;
  r.conntrack = m.conntrack;
  r.mark = m.mark;
  r.connmark = m.connmark;
  r.unknown_matches = m.unknown;
  r.target = s.action;
  r.comment = s.reason;
  r.counters = s.counters;
  return r;
}

}  // namespace

Result<RulePlan> lower(const CapturePolicy& policy) {
  RulePlan out;
  for (const FamilyPolicy& fp : policy.families) {
    Ruleset rs{fp.family, {}};
    for (const StagePolicy& sp : fp.stages) {
      Table t{table_of(sp.stage), {}};
      for (const PolicyChain& pc : sp.chains) {
        Chain c{pc.name, {}, pc.foreign_before};
        for (const Step& s : pc.steps) {
          auto r = lower_step(s);
          if (!r) return r.error();
          c.rules.push_back(std::move(*r));
        }
        t.chains.push_back(std::move(c));
      }
      rs.tables.push_back(std::move(t));
    }
    out.rulesets.push_back(std::move(rs));
  }
  out.routes = policy.routes;
  return out;
}

CapturePolicy raise(const RulePlan& plan) {
  CapturePolicy out;
  for (const Ruleset& rs : plan.rulesets) {
    FamilyPolicy fp{rs.family, {}};
    for (const Table& t : rs.tables) {
      StagePolicy sp;
      if (!stage_of(t.name, &sp.stage)) continue;
      for (const Chain& c : t.chains) {
        PolicyChain pc{c.name, hook_of(c.name), {}, c.foreign_before};
        for (const Rule& r : c.rules) pc.steps.push_back(raise_rule(r));
        sp.chains.push_back(std::move(pc));
      }
      fp.stages.push_back(std::move(sp));
    }
    out.families.push_back(std::move(fp));
  }
  out.routes = plan.routes;
  return out;
}

CapturePolicy canonical(const CapturePolicy& policy) {
  auto lowered = lower(policy);
  if (!lowered) return policy;
  return raise(*lowered);
}

}  // namespace weir::xtables
