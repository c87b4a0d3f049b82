// Rendering the model: iptables-save text (accepted by iptables-legacy-restore
// and formatted as iptables-legacy-save prints it) and JSON.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "rules/model.h"

namespace weir {

// One rule's arguments after the chain name, as iptables-save prints them,
// e.g. "-o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j RETURN".
std::string render_rule_args(const Rule& r, Family f);

struct RenderOptions {
  bool counters = false;  // prefix -A lines with [packets:bytes]
};

// One ruleset as iptables-restore input: for each table "*nat", a ":CHAIN - [0:0]"
// line per weir chain, "-A" lines (built-in chains' jumps included), "COMMIT".
std::string render_ruleset(const Ruleset& rs, RenderOptions opts = {});

// The whole plan: each family's ruleset introduced by a comment line
// ("# weir: ipv4 rules (iptables-restore input)"), then the policy routes
// as comment lines. Comments are ignored by iptables-restore, so the output of
// a single-family plan can be fed to it as it is.
std::string render_plan(const RulePlan& plan, RenderOptions opts = {});

nlohmann::json to_json(const Rule& r, Family f);
nlohmann::json to_json(const Ruleset& rs);
nlohmann::json to_json(const RulePlan& plan);

}  // namespace weir
