// How check and explain print a capture policy: in the words of the backend
// that installs it, so what a user reads is what the backend's own tools show
// (iptables-save for the libiptc filter, `nft list` for nftables). diff() and
// explain() take one; the default is xtables::policy_text()
// (rules/xtables/policy_text.h), the iptables-save form.
#pragma once

#include <functional>
#include <string>

#include "rules/policy.h"

namespace weir {

struct PolicyText {
  // One step of `chain` as one line: "-A WEIR_OUTPUT -o lo -j RETURN".
  std::function<std::string(const std::string& chain, const Step& step, Family f)> step;
  // A whole chain of `stage`, for a chain missing or extra: its declaration
  // (":WEIR_DNS - [0:0]") and its steps, one per line.
  std::function<std::string(Stage stage, const PolicyChain& chain, Family f)> chain;
  // One family's whole policy, for a family missing or extra.
  std::function<std::string(const FamilyPolicy& family)> family;
};

}  // namespace weir
