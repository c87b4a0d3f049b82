// Parsing iptables-save text back into the model: the inverse of render for
// everything weir renders, and tolerant of the rest of an iptables-save dump
// (foreign chains and rules are skipped unless asked for).
#pragma once

#include <string>

#include "rules/model.h"

namespace weir {

// Parses one rule's arguments (what follows "-A CHAIN").
Result<Rule> parse_rule_args(const std::string& args, Family f);

struct ParseOptions {
  bool only_weir = true;  // keep only weir's chains and weir's jumps in built-ins
};

// Parses iptables-save output for one family. Lines starting with '#' are
// ignored. Errors name the line number.
Result<Ruleset> parse_ruleset(const std::string& text, Family f, ParseOptions opts = {});

}  // namespace weir
