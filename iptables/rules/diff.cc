#include "rules/diff.h"

#include <algorithm>
#include <cstdio>

namespace weir {

namespace {

std::string route_line(const PolicyRoute& r) {
  char mark[16];
  std::snprintf(mark, sizeof mark, "0x%x", r.fwmark);
  return std::string("fwmark ") + mark + " lookup " + std::to_string(r.table) + ", local " +
         (r.family == Family::V4 ? "0.0.0.0/0" : "::/0") + " dev lo table " + std::to_string(r.table);
}

// Keys from `a` in order, then those only in `b`.
template <typename T, typename Key>
auto union_keys(const std::vector<T>& a, const std::vector<T>& b, Key key) {
  std::vector<decltype(key(a.front()))> keys;
  for (const auto& x : a) keys.push_back(key(x));
  for (const auto& x : b) {
    if (std::find(keys.begin(), keys.end(), key(x)) == keys.end()) keys.push_back(key(x));
  }
  return keys;
}

// Step-by-step diff of one chain. Steps are aligned on their longest common
// subsequence, so one deleted step shows as one missing step, not as every
// later step changed; within a gap, steps at the same offset pair up as changed.
void diff_steps(const std::string& where, const std::string& chain, const std::vector<Step>& want,
                const std::vector<Step>& live, Family f, const PolicyText& text, PlanDiff& out) {
  const size_t n = want.size();
  const size_t m = live.size();
  std::vector<std::vector<size_t>> lcs(n + 1, std::vector<size_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      lcs[i][j] = want[i] == live[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  auto rule_where = [&](size_t index) { return where + " " + chain + " rule " + std::to_string(index + 1); };
  // Reports a gap: want[wi..wend) against live[li..lend).
  auto gap = [&](size_t wi, size_t wend, size_t li, size_t lend) {
    while (wi < wend && li < lend) {
      out.lines.push_back(DiffLine{DiffLine::Changed, rule_where(wi), text.step(chain, want[wi], f),
                                   text.step(chain, live[li], f)});
      ++wi;
      ++li;
    }
    for (; wi < wend; ++wi) {
      out.lines.push_back(DiffLine{DiffLine::Missing, rule_where(wi), text.step(chain, want[wi], f), ""});
    }
    for (; li < lend; ++li) {
      out.lines.push_back(DiffLine{DiffLine::Extra, rule_where(li), "", text.step(chain, live[li], f)});
    }
  };
  size_t i = 0, j = 0, gi = 0, gj = 0;
  while (i < n && j < m) {
    if (want[i] == live[j] && lcs[i][j] == lcs[i + 1][j + 1] + 1) {
      gap(gi, i, gj, j);
      gi = ++i;
      gj = ++j;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      ++i;
    } else {
      ++j;
    }
  }
  gap(gi, n, gj, m);
}

void diff_stages(const std::string& family_where, const StagePolicy& want, const StagePolicy& live, Family f,
                 const PolicyText& text, PlanDiff& out) {
  const std::string where = family_where + " " + to_string(want.stage);
  auto name_of = [](const PolicyChain& c) { return c.name; };
  for (const auto& name : union_keys(want.chains, live.chains, name_of)) {
    const PolicyChain* w = want.find(name);
    const PolicyChain* l = live.find(name);
    const bool builtin = (w && w->hook) || (l && l->hook);
    // A base chain always exists; only its steps can be missing.
    if (!builtin && w && !l) {
      out.lines.push_back(DiffLine{DiffLine::Missing, where + " chain " + name, text.chain(want.stage, *w, f), ""});
    } else if (!builtin && !w && l) {
      out.lines.push_back(DiffLine{DiffLine::Extra, where + " chain " + name, "", text.chain(live.stage, *l, f)});
    } else {
      static const std::vector<Step> kNone;
      diff_steps(where, name, w ? w->steps : kNone, l ? l->steps : kNone, f, text, out);
      if (builtin && w && l && !l->steps.empty() && l->foreign_before != w->foreign_before) {
        out.lines.push_back(DiffLine{DiffLine::Changed, where + " " + name + " position of weir's jump",
                                     "weir's jump first in " + name,
                                     std::to_string(l->foreign_before) + " rule(s) of another tool before weir's jump "
                                     "in " + name + ": traffic they accept or redirect bypasses capture"});
      }
    }
  }
}

void diff_families(const FamilyPolicy& want, const FamilyPolicy& live, const PolicyText& text, PlanDiff& out) {
  const std::string where = to_string(want.family);
  auto stage_of = [](const StagePolicy& s) { return s.stage; };
  for (Stage stage : union_keys(want.stages, live.stages, stage_of)) {
    const StagePolicy* w = want.find(stage);
    const StagePolicy* l = live.find(stage);
    diff_stages(where, w ? *w : StagePolicy{stage, {}}, l ? *l : StagePolicy{stage, {}}, want.family, text, out);
  }
}

}  // namespace

PlanDiff diff(const CapturePolicy& wanted, const CapturePolicy& live, const PolicyText& text) {
  PlanDiff out;
  for (Family f : {Family::V4, Family::V6}) {
    const FamilyPolicy* w = wanted.find(f);
    const FamilyPolicy* l = live.find(f);
    if (w && !l) {
      out.lines.push_back(DiffLine{DiffLine::Missing, std::string(to_string(f)) + " rules", text.family(*w), ""});
    } else if (!w && l) {
      // An empty live family is no rules at all, not drift.
      bool any = false;
      for (const auto& st : l->stages) any = any || !st.chains.empty();
      if (any) {
        out.lines.push_back(DiffLine{DiffLine::Extra, std::string(to_string(f)) + " rules", "", text.family(*l)});
      }
    } else if (w && l) {
      diff_families(*w, *l, text, out);
    }
  }
  for (const auto& r : wanted.routes) {
    if (std::find(live.routes.begin(), live.routes.end(), r) == live.routes.end()) {
      out.lines.push_back(DiffLine{DiffLine::Missing,
                                   std::string(to_string(r.family)) + " route fwmark " + std::to_string(r.fwmark),
                                   route_line(r), ""});
    }
  }
  for (const auto& r : live.routes) {
    if (std::find(wanted.routes.begin(), wanted.routes.end(), r) == wanted.routes.end()) {
      out.lines.push_back(DiffLine{DiffLine::Extra,
                                   std::string(to_string(r.family)) + " route fwmark " + std::to_string(r.fwmark),
                                   "", route_line(r)});
    }
  }
  return out;
}

std::string render_diff(const PlanDiff& d) {
  std::string out;
  auto lines = [&](const std::string& text, const char* sign) {
    size_t pos = 0;
    while (pos < text.size()) {
      const auto nl = text.find('\n', pos);
      const std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? text.size() : nl + 1;
      out += std::string("  ") + sign + " " + line + "\n";
    }
  };
  for (const auto& l : d.lines) {
    const char* what = l.kind == DiffLine::Missing ? "missing" : l.kind == DiffLine::Extra ? "extra" : "changed";
    out += l.where + ": " + what + "\n";
    lines(l.wanted, "-");
    lines(l.live, "+");
  }
  return out;
}

}  // namespace weir
