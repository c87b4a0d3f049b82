#include "rules/xtables/lower.h"

#include <utility>

#include "rules/xtables/render.h"

namespace weir::xtables {
namespace {

std::string ports_text(const std::vector<PortRange>& group) {
  std::string s;
  for (const auto& p : group) {
    if (!s.empty()) s += ",";
    s += format_port_range(p);
  }
  return s;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// One address condition as xtables spells it: a CIDR and its negation.
struct AddrPart {
  std::optional<Cidr> cidr;
  bool negated = false;
};

Result<std::vector<AddrPart>> addr_parts(const std::optional<CidrSet>& set, const char* what) {
  if (!set) return std::vector<AddrPart>{AddrPart{}};
  if (set->cidrs.empty()) return Error{ErrorKind::InvalidSpec, std::string("empty ") + what + " set"};
  if (set->negated && set->cidrs.size() > 1)
    return Error{ErrorKind::InvalidSpec,
                 std::string("a negated set of ") + std::to_string(set->cidrs.size()) + " " + what +
                     " addresses has no xtables spelling (one -s/-d per rule)"};
  std::vector<AddrPart> parts;
  for (const Cidr& c : set->cidrs) parts.push_back(AddrPart{c, set->negated});
  return parts;
}

// One destination-port condition: -m tcp/udp --dport (one port or range) or
// one multiport group.
struct PortPart {
  std::optional<PortMatch> single;
  std::optional<Multiport> multi;
  std::string text;  // fills {dport}/{sport}
};

Result<std::vector<PortPart>> dport_parts(const std::optional<PortSet>& set) {
  if (!set) return std::vector<PortPart>{PortPart{}};
  if (set->ports.empty()) return Error{ErrorKind::InvalidSpec, "empty destination port set"};
  std::vector<PortPart> parts;
  const auto groups = pack_multiport(set->ports);
  if (set->negated && groups.size() > 1)
    return Error{ErrorKind::InvalidSpec, "a negated set of destination ports larger than one multiport match (" +
                                             std::to_string(kMultiportMaxPorts) + " ports) has no xtables spelling"};
  for (const auto& g : groups) {
    PortPart p;
    if (g.size() == 1) {
      p.single = PortMatch{g[0], set->negated};
    } else {
      p.multi = Multiport{g, set->negated};
    }
    p.text = (set->negated ? "!" : "") + ports_text(g);
    parts.push_back(std::move(p));
  }
  return parts;
}

Result<std::optional<PortMatch>> sport_match(const std::optional<PortSet>& set) {
  if (!set) return std::optional<PortMatch>{};
  if (set->ports.size() != 1)
    return Error{ErrorKind::InvalidSpec, "a source port set of " + std::to_string(set->ports.size()) +
                                             " ranges has no xtables spelling here (one --sport per rule)"};
  return std::optional<PortMatch>{PortMatch{set->ports[0], set->negated}};
}

std::string addr_text(const AddrPart& a) { return a.cidr ? (a.negated ? "!" : "") + format_cidr(*a.cidr) : ""; }

Status lower_step(const Step& s, std::vector<Rule>& out) {
  auto srcs = addr_parts(s.match.src, "source");
  if (!srcs) return srcs.error();
  auto dsts = addr_parts(s.match.dst, "destination");
  if (!dsts) return dsts.error();
  auto dports = dport_parts(s.match.dport);
  if (!dports) return dports.error();
  auto sport = sport_match(s.match.sport);
  if (!sport) return sport.error();
  const bool one = srcs->size() == 1 && dsts->size() == 1 && dports->size() == 1;
  for (const AddrPart& src : *srcs) {
    for (const AddrPart& dst : *dsts) {
      for (const PortPart& dport : *dports) {
        Rule r;
        r.src = src.cidr;
        r.src_negated = src.negated;
        r.dst = dst.cidr;
        r.dst_negated = dst.negated;
        if (s.match.in) {
          r.in_iface = s.match.in->name;
          r.in_negated = s.match.in->negated;
        }
        if (s.match.out) {
          r.out_iface = s.match.out->name;
          r.out_negated = s.match.out->negated;
        }
        r.proto = s.match.proto;
        r.proto_negated = s.match.proto_negated;
        r.sport = *sport;
        r.dport = dport.single;
        r.multiport = dport.multi;
        r.owner = s.match.owner;
        r.conntrack = s.match.conntrack;
        r.mark = s.match.mark;
        r.connmark = s.match.connmark;
        r.unknown_matches = s.match.unknown;
        r.target = s.action;
        r.comment = s.reason;
        replace_all(r.comment, "{src}", addr_text(src));
        replace_all(r.comment, "{dst}", addr_text(dst));
        replace_all(r.comment, "{dport}", dport.text);
        if (s.match.sport)
          replace_all(r.comment, "{sport}", (s.match.sport->negated ? "!" : "") + ports_text(s.match.sport->ports));
        if (one) r.counters = s.counters;
        out.push_back(std::move(r));
      }
    }
  }
  return {};
}

std::optional<Stage> stage_of(const std::string& table) {
  if (table == "raw") return Stage::Raw;
  if (table == "mangle") return Stage::Mangle;
  if (table == "nat") return Stage::Nat;
  return std::nullopt;
}

std::optional<Hook> hook_of(const std::string& table, const std::string& chain) {
  if (!is_builtin_chain(table, chain)) return std::nullopt;
  if (chain == "PREROUTING") return Hook::Prerouting;
  if (chain == "OUTPUT") return Hook::Output;
  return std::nullopt;
}

Step raise_rule(const Rule& r) {
  Step s;
  if (r.src) s.match.src = CidrSet{{*r.src}, r.src_negated};
  if (r.dst) s.match.dst = CidrSet{{*r.dst}, r.dst_negated};
  if (!r.in_iface.empty()) s.match.in = IfaceMatch{r.in_iface, r.in_negated};
  if (!r.out_iface.empty()) s.match.out = IfaceMatch{r.out_iface, r.out_negated};
  s.match.proto = r.proto;
  s.match.proto_negated = r.proto_negated;
  if (r.sport) s.match.sport = PortSet{{r.sport->range}, r.sport->negated};
  if (r.multiport) {
    s.match.dport = PortSet{r.multiport->ports, r.multiport->negated};
    // Both a --dport and a multiport match: the policy has one port
    // condition, so the plain one is kept as text (it is not weir's shape).
    if (r.dport)
      s.match.unknown.push_back(std::string(r.dport->negated ? "! " : "") + "--dport " +
                                format_port_range(r.dport->range, ':'));
  } else if (r.dport) {
    s.match.dport = PortSet{{r.dport->range}, r.dport->negated};
  }
  s.match.owner = r.owner;
  s.match.conntrack = r.conntrack;
  s.match.mark = r.mark;
  s.match.connmark = r.connmark;
  for (const auto& m : r.unknown_matches) s.match.unknown.push_back(m);
  s.action = r.target;
  s.reason = r.comment;
  s.counters = r.counters;
  return s;
}

}  // namespace

Result<RulePlan> lower(const CapturePolicy& policy) {
  RulePlan out;
  for (const FamilyPolicy& fp : policy.families) {
    Ruleset rs;
    rs.family = fp.family;
    for (const StagePolicy& sp : fp.stages) {
      Table t;
      t.name = to_string(sp.stage);
      for (const PolicyChain& pc : sp.chains) {
        Chain c;
        c.name = pc.name;
        c.foreign_before = pc.foreign_before;
        for (size_t i = 0; i < pc.steps.size(); ++i) {
          if (Status s = lower_step(pc.steps[i], c.rules); !s)
            return s.error().wrap(std::string(to_string(fp.family)) + " " + t.name + " " + pc.name + " step " +
                                  std::to_string(i + 1));
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
    FamilyPolicy fp;
    fp.family = rs.family;
    for (const Table& t : rs.tables) {
      auto stage = stage_of(t.name);
      if (!stage) continue;  // weir uses raw, mangle and nat only
      StagePolicy sp;
      sp.stage = *stage;
      for (const Chain& c : t.chains) {
        PolicyChain pc;
        pc.name = c.name;
        pc.hook = hook_of(t.name, c.name);
        pc.foreign_before = c.foreign_before;
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

std::string step_text(const Step& step, Family family) {
  std::vector<Rule> rules;
  if (Status s = lower_step(step, rules); !s) return "(no xtables spelling: " + s.error().message + ")";
  std::string out;
  for (const Rule& r : rules) {
    if (!out.empty()) out += " ; ";
    out += render_rule_args(r, family);
  }
  return out;
}

}  // namespace weir::xtables
