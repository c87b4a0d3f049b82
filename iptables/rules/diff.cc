#include "rules/diff.h"

#include <algorithm>
#include <cstdio>

#include "rules/xtables/render.h"

namespace weir {

namespace {

std::string rule_line(const std::string& chain, const Rule& r, Family f) {
  return "-A " + chain + " " + render_rule_args(r, f);
}

std::string chain_text(const std::string& table, const Chain& c, Family f) {
  std::string out;
  if (!is_builtin_chain(table, c.name)) out = ":" + c.name + " - [0:0]";
  for (const auto& r : c.rules) {
    if (!out.empty()) out += "\n";
    out += rule_line(c.name, r, f);
  }
  return out;
}

std::string route_line(const PolicyRoute& r) {
  char mark[16];
  std::snprintf(mark, sizeof mark, "0x%x", r.fwmark);
  return std::string("fwmark ") + mark + " lookup " + std::to_string(r.table) + ", local " +
         (r.family == Family::V4 ? "0.0.0.0/0" : "::/0") + " dev lo table " + std::to_string(r.table);
}

// Names from `a` in order, then those only in `b`.
template <typename T>
std::vector<std::string> union_names(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<std::string> names;
  for (const auto& x : a) names.push_back(x.name);
  for (const auto& x : b) {
    if (std::find(names.begin(), names.end(), x.name) == names.end()) names.push_back(x.name);
  }
  return names;
}

// Rule-by-rule diff of one chain. Rules are aligned on their longest common
// subsequence, so one deleted rule shows as one missing rule, not as every
// later rule changed; within a gap, rules at the same offset pair up as changed.
void diff_rules(const std::string& where, const std::string& chain, const std::vector<Rule>& want,
                const std::vector<Rule>& live, Family f, PlanDiff& out) {
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
      out.lines.push_back(DiffLine{DiffLine::Changed, rule_where(wi), rule_line(chain, want[wi], f),
                                   rule_line(chain, live[li], f)});
      ++wi;
      ++li;
    }
    for (; wi < wend; ++wi) {
      out.lines.push_back(DiffLine{DiffLine::Missing, rule_where(wi), rule_line(chain, want[wi], f), ""});
    }
    for (; li < lend; ++li) {
      out.lines.push_back(DiffLine{DiffLine::Extra, rule_where(li), "", rule_line(chain, live[li], f)});
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

void diff_tables(const std::string& family_where, const Table& want, const Table& live, Family f, PlanDiff& out) {
  const std::string where = family_where + " " + (want.name.empty() ? live.name : want.name);
  const std::string table = want.name.empty() ? live.name : want.name;
  for (const auto& name : union_names(want.chains, live.chains)) {
    const Chain* w = want.find(name);
    const Chain* l = live.find(name);
    const bool builtin = is_builtin_chain(table, name);
    // A built-in chain always exists; only its rules can be missing.
    if (!builtin && w && !l) {
      out.lines.push_back(DiffLine{DiffLine::Missing, where + " chain " + name, chain_text(table, *w, f), ""});
    } else if (!builtin && !w && l) {
      out.lines.push_back(DiffLine{DiffLine::Extra, where + " chain " + name, "", chain_text(table, *l, f)});
    } else {
      static const std::vector<Rule> kNone;
      diff_rules(where, name, w ? w->rules : kNone, l ? l->rules : kNone, f, out);
      if (builtin && w && l && !l->rules.empty() && l->foreign_before != w->foreign_before) {
        out.lines.push_back(DiffLine{DiffLine::Changed, where + " " + name + " position of weir's jump",
                                     "weir's jump first in " + name,
                                     std::to_string(l->foreign_before) + " rule(s) of another tool before weir's jump "
                                     "in " + name + ": traffic they accept or redirect bypasses capture"});
      }
    }
  }
}

void diff_rulesets(const Ruleset& want, const Ruleset& live, PlanDiff& out) {
  const std::string where = to_string(want.family);
  for (const auto& name : union_names(want.tables, live.tables)) {
    const Table* w = want.find(name);
    const Table* l = live.find(name);
    diff_tables(where, w ? *w : Table{name, {}}, l ? *l : Table{name, {}}, want.family, out);
  }
}

}  // namespace

PlanDiff diff(const RulePlan& wanted, const RulePlan& live) {
  PlanDiff out;
  for (Family f : {Family::V4, Family::V6}) {
    const Ruleset* w = wanted.find(f);
    const Ruleset* l = live.find(f);
    if (w && !l) {
      out.lines.push_back(DiffLine{DiffLine::Missing, std::string(to_string(f)) + " rules",
                                   render_ruleset(*w), ""});
    } else if (!w && l) {
      // An empty live ruleset is no rules at all, not drift.
      bool any = false;
      for (const auto& t : l->tables) any = any || !t.chains.empty();
      if (any) {
        out.lines.push_back(DiffLine{DiffLine::Extra, std::string(to_string(f)) + " rules", "",
                                     render_ruleset(*l)});
      }
    } else if (w && l) {
      diff_rulesets(*w, *l, out);
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
