#include "rules/nft/test_support.h"

#include "rules/plan.h"

namespace weir::nft::testing {

CapturePolicy raise_plan(const RulePlan& plan) {
  CapturePolicy out;
  for (const Ruleset& rs : plan.rulesets) {
    FamilyPolicy fp{rs.family, {}};
    for (const Table& t : rs.tables) {
      StagePolicy sp;
      sp.stage = t.name == "raw" ? Stage::Raw : t.name == "mangle" ? Stage::Mangle : Stage::Nat;
      for (const Chain& c : t.chains) {
        PolicyChain pc{c.name, std::nullopt, {}, c.foreign_before};
        if (c.name == "PREROUTING") pc.hook = Hook::Prerouting;
        if (c.name == "OUTPUT") pc.hook = Hook::Output;
        for (const Rule& r : c.rules) {
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
          pc.steps.push_back(std::move(s));
        }
        sp.chains.push_back(std::move(pc));
      }
      fp.stages.push_back(std::move(sp));
    }
    out.families.push_back(std::move(fp));
  }
  out.routes = plan.routes;
  return out;
}

CapturePolicy policy_for(const CaptureSpec& spec) { return raise_plan(plan(spec)); }

}  // namespace weir::nft::testing
