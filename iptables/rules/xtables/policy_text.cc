#include "rules/xtables/policy_text.h"

#include "rules/model.h"
#include "rules/xtables/lower.h"

namespace weir::xtables {

namespace {

std::string step_line(const std::string& chain, const Step& step, Family f) {
  return "-A " + chain + " " + step_text(step, f);
}

// A chain the kernel has anyway (a built-in chain) is not declared.
bool declared(Stage stage, const PolicyChain& c) { return !c.hook && !is_builtin_chain(to_string(stage), c.name); }

}  // namespace

PolicyText policy_text() {
  PolicyText t;
  t.step = step_line;
  t.chain = [](Stage stage, const PolicyChain& c, Family f) {
    std::string out;
    if (declared(stage, c)) out = ":" + c.name + " - [0:0]";
    for (const auto& s : c.steps) {
      if (!out.empty()) out += "\n";
      out += step_line(c.name, s, f);
    }
    return out;
  };
  // As render_ruleset prints the lowered family: per stage its table, the
  // declarations, the rules, COMMIT.
  t.family = [](const FamilyPolicy& fp) {
    std::string out;
    for (const auto& st : fp.stages) {
      out += std::string("*") + to_string(st.stage) + "\n";
      for (const auto& c : st.chains) {
        if (declared(st.stage, c)) out += ":" + c.name + " - [0:0]\n";
      }
      for (const auto& c : st.chains) {
        for (const auto& s : c.steps) out += step_line(c.name, s, fp.family) + "\n";
      }
      out += "COMMIT\n";
    }
    return out;
  };
  return t;
}

}  // namespace weir::xtables
