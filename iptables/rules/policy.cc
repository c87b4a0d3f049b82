#include "rules/policy.h"

#include <algorithm>

#include "rules/order.h"

namespace weir {
namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

std::string set_text(const std::optional<PortSet>& set) {
  if (!set) return "";
  std::string s = set->negated ? "!" : "";
  for (size_t i = 0; i < set->ports.size(); ++i) s += (i ? "," : "") + format_port_range(set->ports[i]);
  return s;
}

std::string set_text(const std::optional<CidrSet>& set) {
  if (!set) return "";
  std::string s = set->negated ? "!" : "";
  for (size_t i = 0; i < set->cidrs.size(); ++i) s += (i ? "," : "") + format_cidr(set->cidrs[i]);
  return s;
}

}  // namespace

const char* to_string(Hook h) { return h == Hook::Prerouting ? "prerouting" : "output"; }

const char* to_string(Stage s) {
  switch (s) {
    case Stage::Raw: return "raw";
    case Stage::Mangle: return "mangle";
    case Stage::Nat: return "nat";
  }
  return "nat";
}

int priority(Stage s) {
  switch (s) {
    case Stage::Raw: return -300;
    case Stage::Mangle: return -150;
    case Stage::Nat: return -100;
  }
  return -100;
}

const PolicyChain* StagePolicy::find(const std::string& name) const {
  for (const auto& c : chains)
    if (c.name == name) return &c;
  return nullptr;
}

const StagePolicy* FamilyPolicy::find(Stage s) const {
  for (const auto& sp : stages)
    if (sp.stage == s) return &sp;
  return nullptr;
}

const FamilyPolicy* CapturePolicy::find(Family f) const {
  for (const auto& fp : families)
    if (fp.family == f) return &fp;
  return nullptr;
}

std::string fill_reason(const Step& s) {
  std::string r = s.reason;
  if (r.find('{') == std::string::npos) return r;
  replace_all(r, "{src}", set_text(s.match.src));
  replace_all(r, "{dst}", set_text(s.match.dst));
  replace_all(r, "{sport}", set_text(s.match.sport));
  replace_all(r, "{dport}", set_text(s.match.dport));
  return r;
}

CapturePolicy restrict_to(CapturePolicy p, const std::vector<Family>& fams) {
  auto drop = [&](Family f) { return std::find(fams.begin(), fams.end(), f) == fams.end(); };
  std::erase_if(p.families, [&](const FamilyPolicy& fp) { return drop(fp.family); });
  std::erase_if(p.routes, [&](const PolicyRoute& r) { return drop(r.family); });
  return p;
}

CapturePolicy order_like(const CapturePolicy& live, const CapturePolicy& wanted) {
  CapturePolicy out = live;
  out.families = ordered_like(live.families, wanted.families, [](const FamilyPolicy& f) { return f.family; });
  for (FamilyPolicy& fp : out.families) {
    const FamilyPolicy* w = wanted.find(fp.family);
    if (!w) continue;
    fp.stages = ordered_like(fp.stages, w->stages, [](const StagePolicy& s) { return s.stage; });
    for (StagePolicy& sp : fp.stages) {
      const StagePolicy* ws = w->find(sp.stage);
      if (ws) sp.chains = ordered_like(sp.chains, ws->chains, [](const PolicyChain& c) { return c.name; });
    }
  }
  out.routes = ordered_like(live.routes, wanted.routes, [](const PolicyRoute& r) { return r; });
  return out;
}

}  // namespace weir
