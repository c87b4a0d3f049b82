// What every fuzz target shares: splitting the input, bounding JSON nesting,
// failing loudly when a property does not hold, and running a valid
// CaptureSpec through everything downstream of parsing (validate, the planner,
// the xtables lowering, rendering and parsing back, diff, explain), so that a
// crash in planning is found from whichever front end's parser reached it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/diff.h"
#include "rules/explain.h"
#include "rules/plan.h"
#include "rules/policy.h"
#include "rules/spec.h"
#include "rules/xtables/lower.h"
#include "rules/xtables/parse.h"
#include "rules/xtables/render.h"

namespace weir::fuzz {

// A property the code promises does not hold: print what and abort, which
// libFuzzer reports as a crash with the input saved.
[[noreturn]] inline void property_failed(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "weir fuzz: property violated: %s\n%s\n", what, detail.c_str());
  std::abort();
}
#define WEIR_FUZZ_CHECK(cond, ...) \
  do {                             \
    if (!(cond)) ::weir::fuzz::property_failed(#cond __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// Splits on NUL bytes (argv from the fuzz input); a trailing NUL ends the
// last element rather than starting an empty one.
inline std::vector<std::string> split_nul(std::string_view in) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < in.size()) {
    size_t end = in.find('\0', start);
    if (end == std::string_view::npos) end = in.size();
    out.emplace_back(in.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A command line from the fuzz input: NUL-separated elements; leading ones
// of the form NAME=VALUE (NAME in upper case) are environment variables, set
// for one run with ScopedEnv, the rest is argv after argv[0].
struct CommandLine {
  std::vector<std::string> env;   // "NAME=VALUE"
  std::vector<std::string> args;  // without argv[0]
};
inline CommandLine command_line(std::string_view in) {
  CommandLine out;
  bool env_part = true;
  for (auto& e : split_nul(in)) {
    const auto eq = e.find('=');
    const bool is_env = env_part && eq != std::string::npos && eq > 0 &&
                        e.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == eq;
    if (is_env) out.env.push_back(std::move(e));
    else {
      env_part = false;
      out.args.push_back(std::move(e));
    }
  }
  return out;
}

// Sets the variables for its lifetime. putenv keeps our buffers (setenv would
// copy every value ever set into memory glibc never frees); the destructor
// removes them before the buffers go.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::vector<std::string> vars) : vars_(std::move(vars)) {
    for (auto& v : vars_) ::putenv(v.data());
  }
  ~ScopedEnv() {
    for (auto& v : vars_) ::unsetenv(v.substr(0, v.find('=')).c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::string> vars_;
};

// argv for CLI11's parse(argc, argv), pointing into `args`.
inline std::vector<char*> argv_of(const char* name, std::vector<std::string>& args) {
  std::vector<char*> argv{const_cast<char*>(name)};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

// The deepest nesting of [ and { in JSON text, outside strings.
//
// weir-cni bounds its stdin's depth itself (cni/bounded_json.h, 512), so the
// cni_config target has no cap. spec_from_json (the spec target: `weir
// --spec FILE`) does not: nlohmann's recursive copy and dump overflow the
// stack on deeply nested documents, so that target skips inputs nested deeper
// than kMaxFuzzNesting. Nesting inside JSON strings is not capped on purpose.
inline constexpr int kMaxFuzzNesting = 200;
inline int json_nesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if ((c == ']' || c == '}') && depth > 0) --depth;
  }
  return deepest;
}

// Dumps JSON as `weir plan/show/check/explain -o json` print it: bytes that
// are not UTF-8 (a live chain name or comment: iptables and the kernel take
// any bytes) are replaced, never thrown about (fuzz finding 1,
// fuzz/crashes/iptables_save/json-dump-*).
inline void dump_json(const nlohmann::json& j) {
  (void)j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Chains in the order parse_ruleset reads render_ruleset's output: chains
// declared with ':' first, then built-ins in the order of their first rule
// (as render_test.cc's parse_order). Rule order within a chain is kept.
inline Ruleset parse_order(Ruleset rs) {
  for (auto& t : rs.tables) {
    std::stable_partition(t.chains.begin(), t.chains.end(),
                          [&](const Chain& c) { return !is_builtin_chain(t.name, c.name); });
  }
  return rs;
}

inline std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Where two rulesets first differ, for a property's message.
inline std::string first_difference(const Ruleset& a, const Ruleset& b) {
  if (a.tables.size() != b.tables.size())
    return std::to_string(a.tables.size()) + " tables vs " + std::to_string(b.tables.size());
  for (size_t t = 0; t < a.tables.size(); ++t) {
    const Table& ta = a.tables[t];
    const Table& tb = b.tables[t];
    const std::string where = "table " + std::to_string(t) + " (" + ta.name + "/" + tb.name + ")";
    if (ta.name != tb.name || ta.chains.size() != tb.chains.size())
      return where + ": " + std::to_string(ta.chains.size()) + " chains vs " + std::to_string(tb.chains.size());
    for (size_t c = 0; c < ta.chains.size(); ++c) {
      const Chain& ca = ta.chains[c];
      const Chain& cb = tb.chains[c];
      const std::string cw = where + " chain " + std::to_string(c) + " (" + ca.name + "/" + cb.name + ")";
      if (ca.name != cb.name || ca.rules.size() != cb.rules.size() || ca.foreign_before != cb.foreign_before)
        return cw + ": " + std::to_string(ca.rules.size()) + " rules vs " + std::to_string(cb.rules.size());
      for (size_t r = 0; r < ca.rules.size(); ++r) {
        if (!(ca.rules[r] == cb.rules[r]))
          return cw + " rule " + std::to_string(r) + ":\n  " + render_rule_args(ca.rules[r], a.family) + "\n  " +
                 render_rule_args(cb.rules[r], b.family) + "\n  " + json_text(to_json(ca.rules[r], a.family)) +
                 "\n  " + json_text(to_json(cb.rules[r], b.family));
      }
    }
  }
  return "no difference";
}

// A few packets explain() walks through a plan: one per direction and family,
// DNS, the proxy's own traffic, and loopback.
inline std::vector<Packet> sample_packets() {
  auto cidr = [](const char* text) { return *parse_cidr(text); };
  std::vector<Packet> out;
  for (Family f : {Family::V4, Family::V6}) {
    const bool v4 = f == Family::V4;
    Packet outbound;
    outbound.family = f;
    outbound.hook = Packet::Hook::Output;
    outbound.src = cidr(v4 ? "198.18.0.1" : "fd00::1");
    outbound.dst = cidr(v4 ? "198.19.0.9" : "fd00::9");
    outbound.sport = 40000;
    outbound.dport = 443;
    outbound.uid = 1000;
    outbound.gid = 1000;
    out.push_back(outbound);

    Packet proxy = outbound;
    proxy.uid = 1337;
    proxy.gid = 1337;
    out.push_back(proxy);

    Packet dns = outbound;
    dns.proto = Proto::Udp;
    dns.dport = 53;
    out.push_back(dns);

    Packet loopback = outbound;
    loopback.dst = cidr(v4 ? "127.0.0.1" : "::1");
    loopback.out_iface = "lo";
    loopback.dport = 8080;
    out.push_back(loopback);

    Packet inbound;
    inbound.family = f;
    inbound.hook = Packet::Hook::Prerouting;
    inbound.src = cidr(v4 ? "198.18.0.10" : "fd00::10");
    inbound.dst = cidr(v4 ? "198.18.0.1" : "fd00::1");
    inbound.sport = 40000;
    inbound.dport = 8080;
    inbound.in_iface = "eth0";
    out.push_back(inbound);

    Packet established = inbound;
    established.ct_state = Packet::CtState::Established;
    established.mark = 1337;
    out.push_back(established);
  }
  return out;
}

// Walks every sample packet through `policy` (whatever its origin: the
// planner or a parsed dump, raised) and renders the result; explain() must
// terminate and never crash, even on rulesets the kernel would refuse (loops,
// unknown chains).
inline void explain_all(const CapturePolicy& policy) {
  for (const Packet& p : sample_packets()) {
    Explanation e = explain(policy, p);
    (void)render_explanation(e);
    dump_json(to_json(e));
  }
}

// Everything downstream of a spec a front end accepted. `spec` must be what a
// front end would hand to apply or `weir plan`.
inline void exercise_spec(const CaptureSpec& spec) {
  Status valid = validate(spec);
  WEIR_FUZZ_CHECK(valid.ok(), "a front end accepted a spec validate() refuses: " + valid.error().message);

  // The spec's JSON form reads back as the same spec (configs are written
  // from `weir plan -o json`-like dumps and layered).
  const nlohmann::json j = to_json(spec);
  dump_json(j);
  auto again = spec_from_json(j);
  WEIR_FUZZ_CHECK(again.ok(), "to_json(spec) does not read back: " + (again.ok() ? "" : again.error().message) +
                                  "\n" + json_text(j));
  WEIR_FUZZ_CHECK(*again == spec, "to_json(spec) reads back as another spec: " + json_text(j));

  const CapturePolicy policy = capture_policy(spec);
  for (const auto& fp : policy.families)
    for (const auto& st : fp.stages)
      for (const auto& ch : st.chains)
        for (const auto& step : ch.steps) {
          (void)fill_reason(step);
          (void)xtables::step_text(step, fp.family);
        }
  auto lowered = xtables::lower(policy);
  WEIR_FUZZ_CHECK(lowered.ok(),
                  "the planner's policy has no xtables spelling: " + (lowered.ok() ? "" : lowered.error().message));
  const RulePlan rp = plan(spec);
  WEIR_FUZZ_CHECK(rp == *lowered, "plan(spec) differs from lower(capture_policy(spec))");
  const CapturePolicy raised = xtables::raise(rp);
  const CapturePolicy canon = xtables::canonical(policy);
  (void)render_plan(rp);
  (void)render_plan(rp, RenderOptions{.counters = true});
  dump_json(to_json(rp));
  WEIR_FUZZ_CHECK(diff(canon, canon).empty(), "a policy differs from itself");
  WEIR_FUZZ_CHECK(diff(canon, raised).empty(), "canonical(policy) differs from raise(plan(spec)): " +
                                                   render_diff(diff(canon, raised)));

  // What `weir plan` prints, iptables-save reads back as the same rules (check
  // compares a live dump with the plan).
  // (An interface name with a quote, fuzz finding 5, is refused by validate().)
  for (const Ruleset& rs : rp.rulesets) {
    const std::string text = render_ruleset(rs);
    auto parsed = parse_ruleset(text, rs.family);
    WEIR_FUZZ_CHECK(parsed.ok(), "render_ruleset output does not parse: " + (parsed.ok() ? "" : parsed.error().message) + "\n" + text);
    WEIR_FUZZ_CHECK(*parsed == parse_order(rs), "render_ruleset output parses as other rules: " +
                                                    first_difference(parse_order(rs), *parsed) + "\n" + text);
  }
  explain_all(canon);
}

}  // namespace weir::fuzz
