// TEMPORARY, until the lead's rules/xtables/lower.cc is on main: raise() and
// step_text() of lower.h, enough for diff, check and explain to work on a
// CapturePolicy while the planner still returns a RulePlan. Delete this file
// (and its line in rules/CMakeLists.txt) when lower.cc lands: the linker
// reports both definitions.
#include <string>
#include <vector>

#include "rules/xtables/lower.h"
#include "rules/xtables/render.h"

namespace weir::xtables {

namespace {

std::optional<Stage> stage_of(const std::string& table) {
  if (table == "raw") return Stage::Raw;
  if (table == "mangle") return Stage::Mangle;
  if (table == "nat") return Stage::Nat;
  return std::nullopt;
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
  if (r.multiport) {
    if (m.dport) {
      std::string ports;
      for (const auto& p : r.multiport->ports) ports += (ports.empty() ? "" : ",") + format_port_range(p, ':');
      m.unknown.push_back(std::string("-m multiport ") + (r.multiport->negated ? "! " : "") + "--dports " + ports);
    } else {
      m.dport = PortSet{r.multiport->ports, r.multiport->negated};
    }
  }
  m.owner = r.owner;
  m.conntrack = r.conntrack;
  m.mark = r.mark;
  m.connmark = r.connmark;
  for (const auto& name : r.unknown_matches) m.unknown.push_back("-m " + name);
  s.action = r.target;
  s.reason = r.comment;
  s.counters = r.counters;
  return s;
}

// The rules one step lowers to: one per source CIDR, destination CIDR and
// destination port group (at most 15 ports each), reasons filled per rule.
std::vector<Rule> lower_step(const Step& s) {
  const Match& m = s.match;
  Rule base;
  if (m.in) {
    base.in_iface = m.in->name;
    base.in_negated = m.in->negated;
  }
  if (m.out) {
    base.out_iface = m.out->name;
    base.out_negated = m.out->negated;
  }
  base.proto = m.proto;
  base.proto_negated = m.proto_negated;
  if (m.sport && m.sport->ports.size() == 1) {
    base.sport = PortMatch{m.sport->ports[0], m.sport->negated};
  } else if (m.sport) {
    std::string ports;
    for (const auto& p : m.sport->ports) ports += (ports.empty() ? "" : ",") + format_port_range(p, ':');
    base.unknown_matches.push_back(std::string("multiport ") + (m.sport->negated ? "! " : "") + "--sports " + ports);
  }
  base.owner = m.owner;
  base.conntrack = m.conntrack;
  base.mark = m.mark;
  base.connmark = m.connmark;
  for (const auto& u : m.unknown) base.unknown_matches.push_back(u.rfind("-m ", 0) == 0 ? u.substr(3) : u);
  base.target = s.action;

  std::vector<std::optional<Cidr>> srcs{std::nullopt}, dsts{std::nullopt};
  if (m.src) srcs.assign(m.src->cidrs.begin(), m.src->cidrs.end());
  if (m.dst) dsts.assign(m.dst->cidrs.begin(), m.dst->cidrs.end());
  std::vector<std::optional<std::vector<PortRange>>> groups{std::nullopt};
  if (m.dport) {
    groups.clear();
    for (auto& g : pack_multiport(m.dport->ports)) groups.push_back(std::move(g));
  }
  std::vector<Rule> out;
  for (const auto& src : srcs) {
    for (const auto& dst : dsts) {
      for (const auto& g : groups) {
        Rule r = base;
        Step part = s;
        if (src) {
          r.src = *src;
          r.src_negated = m.src->negated;
          part.match.src->cidrs = {*src};
        }
        if (dst) {
          r.dst = *dst;
          r.dst_negated = m.dst->negated;
          part.match.dst->cidrs = {*dst};
        }
        if (g && g->size() == 1) r.dport = PortMatch{g->front(), m.dport->negated};
        if (g && g->size() > 1) r.multiport = Multiport{*g, m.dport->negated};
        if (g) part.match.dport->ports = *g;
        r.comment = fill_reason(part);
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

}  // namespace

CapturePolicy raise(const RulePlan& plan) {
  CapturePolicy p;
  for (const auto& rs : plan.rulesets) {
    FamilyPolicy fp{rs.family, {}};
    for (const auto& t : rs.tables) {
      const auto stage = stage_of(t.name);
      if (!stage) continue;
      StagePolicy st{*stage, {}};
      for (const auto& c : t.chains) {
        PolicyChain pc{c.name, is_builtin_chain(t.name, c.name) ? hook_of(c.name) : std::nullopt, {}, c.foreign_before};
        for (const auto& r : c.rules) pc.steps.push_back(raise_rule(r));
        st.chains.push_back(std::move(pc));
      }
      fp.stages.push_back(std::move(st));
    }
    p.families.push_back(std::move(fp));
  }
  p.routes = plan.routes;
  return p;
}

std::string step_text(const Step& step, Family family) {
  std::string out;
  for (const auto& r : lower_step(step)) out += (out.empty() ? "" : " ; ") + render_rule_args(r, family);
  return out;
}

}  // namespace weir::xtables
