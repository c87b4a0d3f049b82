// plan, apply, check, clean, show: each reads its flags, calls the library
// (plan.h, ops.h) and prints the result. No logic of their own.
#include <cstdio>
#include <chrono>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "frontend/capture_flags.h"
#include "cmd/command.h"
#include "rules/diff.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
#include "rules/nft/ruleset.h"
#include "rules/plan.h"
#include "rules/xtables/render.h"

namespace weir {

void NetnsFlags::bind(CLI::App& app, bool required, bool writer) {
  CLI::Option* o = app.add_option(
      "--netns", netns,
      "Target network namespace: a path, a name (/var/run/netns/NAME), pid:N, or \"self\" "
      "(the only way to act on weir's own namespace)")
      ->type_name("NETNS");
  if (required) o->required();
  if (!writer) return;
  app.add_option("--lock-timeout", lock_timeout_ms, "Milliseconds to wait for the namespace's lock (default 10000)")
      ->type_name("MS");
}

Result<NetnsTarget> NetnsFlags::target() const {
  constexpr uint32_t kMaxLockTimeoutMs = 3600 * 1000;
  Result<uint32_t> timeout = parse_u32_value("--lock-timeout", lock_timeout_ms);
  if (!timeout) return timeout.error();
  if (*timeout > kMaxLockTimeoutMs) {
    return Error{ErrorKind::InvalidArgument, "--lock-timeout: " + lock_timeout_ms + " ms is more than an hour"};
  }
  NetnsTarget t;
  t.netns_path = netns_path(netns);
  // A typo must never capture the node's own traffic: only the literal word
  // "self" lets the library act on the namespace weir runs in.
  t.allow_own_netns = netns == "self";
  t.lock_timeout_ms = static_cast<int>(*timeout);
  return t;
}

void OutputFlag::bind(CLI::App& app) {
  app.add_option("--output,-o", format, "Output format: text (default) or json")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "json"}));
}

namespace {

std::size_t count_rules(const RulePlan& p) {
  std::size_t n = 0;
  for (const Ruleset& rs : p.rulesets)
    for (const Table& t : rs.tables)
      for (const Chain& c : t.chains) n += c.rules.size();
  return n;
}

void print_plan(const RulePlan& p, const OutputFlag& output, RenderOptions opts = {}) {
  if (output.json()) {
    std::cout << to_json(p).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    std::cout << render_plan(p, opts);
  }
}

// What apply and check act on: the spec of the capture flags, and the target.
struct SpecAndTarget {
  CaptureSpec spec;
  NetnsTarget target;
};

Result<SpecAndTarget> spec_and_target(const CaptureFlags& flags, const NetnsFlags& netns) {
  Result<CaptureSpec> spec = flags.build();
  if (!spec) return spec.error();
  Result<NetnsTarget> t = netns.target();
  if (!t) return t.error();
  return SpecAndTarget{std::move(*spec), std::move(*t)};
}

class PlanCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override {
    flags_.bind(app);
    output_.bind(app);
  }
  Result<int> run() override {
    Result<CaptureSpec> spec = flags_.build();
    if (!spec) return spec.error();
    // auto plans the iptables form (a plan has no kernel to probe); the
    // nftables form is one flag away. Both are the same capture policy.
    if (spec->backend == FilterBackend::Nftables) {
      const CapturePolicy policy = capture_policy(*spec);
      if (Status s = nft::check(policy); !s) return s.error();
      if (output_.json()) {
        std::cout << nft::render_json(policy).dump(2) << '\n';
      } else {
        std::cout << "# weir: nftables rules (nft -f input)\n" << nft::render_text(policy);
      }
      return kExitOk;
    }
    print_plan(plan(*spec), output_);
    return kExitOk;
  }

 private:
  CaptureFlags flags_;
  OutputFlag output_;
};

class ApplyCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override {
    netns_.bind(app, true, true);
    flags_.bind(app);
  }
  Result<int> run() override {
    Result<SpecAndTarget> in = spec_and_target(flags_, netns_);
    if (!in) return in.error();
    spdlog::debug("spec: {}", to_json(in->spec).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    const auto start = std::chrono::steady_clock::now();
    Result<ApplyReport> report = apply(in->target, in->spec);
    if (!report) return report.error();
    for (const std::string& w : report->warnings) spdlog::warn("{}", w);
    spdlog::info("applied {} rules to {} with the {} backend", count_rules(report->plan), in->target.netns_path,
                 report->backend);
    spdlog::debug("apply took {:.3f} ms (lock, enter, plan, filter transaction, routes)",
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    return kExitOk;
  }

 private:
  NetnsFlags netns_;
  CaptureFlags flags_;
};

const char* to_string(DiffLine::Kind k) {
  switch (k) {
    case DiffLine::Missing: return "missing";
    case DiffLine::Extra: return "extra";
    case DiffLine::Changed: return "changed";
  }
  return "?";
}

// inSync: weir's rules are the plan. foreign: other capture tools' rules
// (not drift, but check fails on them too).
nlohmann::json to_json(const CheckReport& r) {
  nlohmann::json lines = nlohmann::json::array();
  for (const DiffLine& l : r.diff.lines) {
    lines.push_back({{"kind", to_string(l.kind)}, {"where", l.where}, {"wanted", l.wanted}, {"live", l.live}});
  }
  nlohmann::json foreign = nlohmann::json::array();
  for (const ForeignRules& f : r.foreign) {
    foreign.push_back({{"tool", f.tool}, {"backend", f.backend}, {"table", f.table}, {"chains", f.chains},
                       {"message", describe(f)}});
  }
  return {{"inSync", r.diff.empty()}, {"diff", lines}, {"foreign", foreign}};
}

class CheckCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override {
    netns_.bind(app, true, false);
    output_.bind(app);
    flags_.bind(app);
  }
  Result<int> run() override {
    Result<SpecAndTarget> in = spec_and_target(flags_, netns_);
    if (!in) return in.error();
    Result<CheckReport> report = check(in->target, in->spec);
    if (!report) return report.error();
    if (output_.json()) {
      std::cout << to_json(*report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    } else {
      if (!report->diff.empty()) std::cout << render_diff(report->diff);
      // A pod two tools capture is a problem weir cannot fix (it never
      // touches another tool's rules): check fails on it, as on drift.
      for (const ForeignRules& f : report->foreign) std::cout << "other capture tool: " << describe(f) << '\n';
      if (report->diff.empty())
        spdlog::info("{}: weir's rules match the plan{}", in->target.netns_path,
                     report->foreign.empty() ? "" : ", but another capture tool's rules are there too");
    }
    return report->in_sync() ? kExitOk : kExitDrift;
  }

 private:
  NetnsFlags netns_;
  OutputFlag output_;
  CaptureFlags flags_;
};

class CleanCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override { netns_.bind(app, true, true); }
  Result<int> run() override {
    Result<NetnsTarget> t = netns_.target();
    if (!t) return t.error();
    std::vector<std::string> remaining;
    if (Status st = clean(*t, &remaining); !st) return st.error();
    spdlog::info("removed weir's rules from {}", t->netns_path);
    for (const std::string& r : remaining) spdlog::warn("{}", r);
    return kExitOk;
  }

 private:
  NetnsFlags netns_;
};

class ShowCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override {
    netns_.bind(app, true, false);
    output_.bind(app);
  }
  Result<int> run() override {
    Result<NetnsTarget> t = netns_.target();
    if (!t) return t.error();
    Result<ShowReport> live = show(*t);
    if (!live) return live.error();
    if (live->rules.rulesets.empty() && live->rules.routes.empty() && !output_.json()) {
      // Silence would read as "nothing printed"; say what was found.
      std::cout << "# weir: no weir rules in " << t->netns_path << " (nothing of weir's is installed there)\n";
      return kExitOk;
    }
    if (!output_.json()) std::cout << "# weir: rules read from the " << live->backend << " backend\n";
    if (live->backend == std::string("nftables")) {
      // As `nft list table inet weir` (or `nft --json list ...`) shows it,
      // with each rule's counter.
      const nft::TextOptions listing{.counters = true, .listing = true};
      if (output_.json())
        std::cout << nft::render_json(live->live, listing).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
      else
        std::cout << nft::render_text(live->live, listing);
      return kExitOk;
    }
    print_plan(live->rules, output_, RenderOptions{.counters = true});
    return kExitOk;
  }

 private:
  NetnsFlags netns_;
  OutputFlag output_;
};

}  // namespace

std::unique_ptr<Subcommand> make_plan_command() { return std::make_unique<PlanCommand>(); }
std::unique_ptr<Subcommand> make_apply_command() { return std::make_unique<ApplyCommand>(); }
std::unique_ptr<Subcommand> make_check_command() { return std::make_unique<CheckCommand>(); }
std::unique_ptr<Subcommand> make_clean_command() { return std::make_unique<CleanCommand>(); }
std::unique_ptr<Subcommand> make_show_command() { return std::make_unique<ShowCommand>(); }

}  // namespace weir
