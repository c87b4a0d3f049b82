#include "rules/xtables/policy_text.h"

#include "rules/model.h"
#include "rules/xtables/lower.h"
#include "rules/xtables/render.h"

namespace weir::xtables {

namespace {

std::string step_line(const std::string& chain, const Step& step, Family f) {
  return "-A " + chain + " " + step_text(step, f);
}

// A chain the kernel has anyway (a built-in chain) is not declared.
bool declared(Stage stage, const PolicyChain& c) { return !c.hook && !is_builtin_chain(to_string(stage), c.name); }

// One family as iptables-restore input. A step that lowers to several rules
// prints as several lines; a step with no xtables spelling as step_text says.
std::string family_text(const FamilyPolicy& fp) {
  if (auto lowered = lower(CapturePolicy{{fp}, {}}); lowered && lowered->rulesets.size() == 1) {
    return render_ruleset(lowered->rulesets[0]);
  }
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
}

}  // namespace

PolicyText policy_text() {
  PolicyText t;
  t.step = step_line;
  t.chain = [](Stage stage, const PolicyChain& c, Family f) {
    // The chain's part of its family's text, without the table lines.
    const std::string text = family_text(FamilyPolicy{f, {StagePolicy{stage, {c}}}});
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t nl = text.find('\n', pos);
      const std::string line = text.substr(pos, nl - pos);
      pos = nl == std::string::npos ? text.size() : nl + 1;
      if (line.empty() || line[0] == '*' || line == "COMMIT") continue;
      out += (out.empty() ? "" : "\n") + line;
    }
    return out;
  };
  t.family = family_text;
  return t;
}

}  // namespace weir::xtables
