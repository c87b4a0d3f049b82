// The iptables-save parser (rules/xtables/parse.h): tolerant of whole dumps,
// with or without only_weir. For every dump it accepts: rendering it and
// parsing that again gives the same rules (render inverts parse for what parse
// keeps), one rule's arguments render and parse back alone, and diff, explain
// and raise work on it (a live dump is what check, show and explain read).
//
// Input: one byte of options (bit 0: IPv6, bit 1: keep foreign chains), then
// the dump.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_support.h"

namespace {

// What render_ruleset keeps: it prints a ':' line for each chain that is not
// built in and built-in chains only through their rules, so a built-in chain
// without rules (kept by only_weir = false from its ':' line) is not rendered.
weir::Ruleset renderable(weir::Ruleset rs) {
  for (auto& t : rs.tables) {
    std::erase_if(t.chains, [&](const weir::Chain& c) { return c.rules.empty() && weir::is_builtin_chain(t.name, c.name); });
  }
  return weir::fuzz::parse_order(std::move(rs));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weir;
  if (size < 1) return -1;
  const Family family = (data[0] & 1) ? Family::V6 : Family::V4;
  ParseOptions opts;
  opts.only_weir = (data[0] & 2) == 0;
  const std::string text = fuzz::as_string(data + 1, size - 1);

  auto parsed = parse_ruleset(text, family, opts);
  if (!parsed.ok()) {
    WEIR_FUZZ_CHECK(!parsed.error().message.empty(), "a parse error without a message");
    return 0;
  }
  const Ruleset& rs = *parsed;
  WEIR_FUZZ_CHECK(rs.family == family, "parse_ruleset changed the family");

  // parse_ruleset refuses every name render_ruleset could not print back
  // (fuzz findings 2-4, fuzz/crashes/iptables_save/roundtrip-*).
  {
    for (const RenderOptions ro : {RenderOptions{}, RenderOptions{.counters = true}}) {
      const std::string rendered = render_ruleset(rs, ro);
      auto again = parse_ruleset(rendered, family, opts);
      WEIR_FUZZ_CHECK(again.ok(), "render(parse(x)) does not parse: " + (again.ok() ? "" : again.error().message) +
                                      "\n--- rendered:\n" + rendered);
      WEIR_FUZZ_CHECK(renderable(*again) == renderable(rs), "parse(render(parse(x))) != parse(x): " +
                                                    fuzz::first_difference(renderable(rs), renderable(*again)) +
                                                    "\n--- rendered:\n" + rendered);
    }
    for (const Table& t : rs.tables)
      for (const Chain& c : t.chains)
        for (const Rule& r : c.rules) {
          const std::string args = render_rule_args(r, family);
          auto back = parse_rule_args(args, family);
          WEIR_FUZZ_CHECK(back.ok(), "render_rule_args output does not parse: " + (back.ok() ? "" : back.error().message) +
                                         "\n" + args);
          WEIR_FUZZ_CHECK(*back == r, "parse_rule_args(render_rule_args(r)) != r: " + args);
          fuzz::dump_json(to_json(r, family));
        }
  }

  RulePlan live;
  live.rulesets.push_back(rs);
  fuzz::dump_json(to_json(live));
  const CapturePolicy raised = xtables::raise(live);
  WEIR_FUZZ_CHECK(diff(raised, raised).empty(), "a dump differs from itself");
  CaptureSpec spec;
  spec.ip_families = family == Family::V4 ? IpFamilies::V4 : IpFamilies::V6;
  (void)render_diff(diff(xtables::canonical(capture_policy(spec)), raised));
  fuzz::explain_all(raised);
  return 0;
}
