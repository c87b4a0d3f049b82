#include "rules/policy.h"

#include <algorithm>
#include <utility>

namespace weir {

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
  for (const auto& c : chains) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const StagePolicy* FamilyPolicy::find(Stage s) const {
  for (const auto& st : stages) {
    if (st.stage == s) return &st;
  }
  return nullptr;
}

const FamilyPolicy* CapturePolicy::find(Family f) const {
  for (const auto& fp : families) {
    if (fp.family == f) return &fp;
  }
  return nullptr;
}

namespace {

std::string negation(bool negated) { return negated ? "!" : ""; }

std::string set_text(const CidrSet& s) {
  std::string out;
  for (const auto& c : s.cidrs) out += (out.empty() ? "" : ",") + format_cidr(c);
  return negation(s.negated) + out;
}

std::string set_text(const PortSet& s) {
  std::string out;
  for (const auto& p : s.ports) out += (out.empty() ? "" : ",") + format_port_range(p);
  return negation(s.negated) + out;
}

// Replaces every `{name}` in `text`; a placeholder whose set is absent stays.
void replace_all(std::string& text, const std::string& placeholder, const std::string& with) {
  for (size_t pos = text.find(placeholder); pos != std::string::npos; pos = text.find(placeholder, pos + with.size())) {
    text.replace(pos, placeholder.size(), with);
  }
}

template <typename Item, typename Key>
std::vector<Item> ordered(const std::vector<Item>& live, const std::vector<Item>& wanted, Key key) {
  std::vector<Item> out;
  std::vector<bool> used(live.size(), false);
  for (const Item& w : wanted) {
    for (size_t i = 0; i < live.size(); ++i) {
      if (!used[i] && key(live[i]) == key(w)) {
        out.push_back(live[i]);
        used[i] = true;
        break;
      }
    }
  }
  for (size_t i = 0; i < live.size(); ++i) {
    if (!used[i]) out.push_back(live[i]);
  }
  return out;
}

}  // namespace

std::string fill_reason(const Step& s) {
  std::string out = s.reason;
  if (out.find('{') == std::string::npos) return out;
  const Match& m = s.match;
  if (m.src) replace_all(out, "{src}", set_text(*m.src));
  if (m.dst) replace_all(out, "{dst}", set_text(*m.dst));
  if (m.sport) replace_all(out, "{sport}", set_text(*m.sport));
  if (m.dport) replace_all(out, "{dport}", set_text(*m.dport));
  return out;
}

CapturePolicy restrict_to(CapturePolicy p, const std::vector<Family>& families) {
  auto drop = [&](Family f) { return std::find(families.begin(), families.end(), f) == families.end(); };
  std::erase_if(p.families, [&](const FamilyPolicy& fp) { return drop(fp.family); });
  std::erase_if(p.routes, [&](const PolicyRoute& r) { return drop(r.family); });
  return p;
}

CapturePolicy order_like(const CapturePolicy& live, const CapturePolicy& wanted) {
  CapturePolicy out = live;
  out.families = ordered(live.families, wanted.families, [](const FamilyPolicy& f) { return f.family; });
  for (FamilyPolicy& fp : out.families) {
    const FamilyPolicy* w = wanted.find(fp.family);
    if (w == nullptr) continue;
    fp.stages = ordered(fp.stages, w->stages, [](const StagePolicy& s) { return s.stage; });
    for (StagePolicy& st : fp.stages) {
      const StagePolicy* ws = w->find(st.stage);
      if (ws != nullptr) st.chains = ordered(st.chains, ws->chains, [](const PolicyChain& c) { return c.name; });
    }
  }
  out.routes = ordered(live.routes, wanted.routes, [](const PolicyRoute& r) { return r; });
  return out;
}

}  // namespace weir
