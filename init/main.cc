// weir-init: the init-container front end. Runs in the pod's network
// namespace with NET_ADMIN and installs the capture there (its own namespace,
// on purpose), or validates that capture is in place. Reads a command line,
// calls the library, maps the result to one line and an exit code.
//
//   weir-init [capture flags]        native flags, each also WEIR_<FLAG>
//   weir-init istio-iptables ...     Istio's init command line
//   weir-init proxy-init ...         Linkerd's init command line
//   weir-init validate ...           is capture in place? (no privilege needed)
#include <unistd.h>

#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "frontend/capture_flags.h"
#include "frontend/logging.h"
#include "init/istio_flags.h"
#include "init/linkerd_flags.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
#include "rules/nft/ruleset.h"
#include "rules/plan.h"
#include "rules/xtables/render.h"
#include "kernel/links.h"
#include "init/validate.h"

namespace weir {
namespace {

// Native exit codes (README): 0 done, 1 failed, 2 bad command line or spec,
// kExitCaptureMissing (42) validation found no capture. The Istio and Linkerd
// dialects exit 1 on every error, as the originals do, and Istio's
// validation failure is 126.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// How this invocation writes its errors: plain lines, or JSON lines once its
// logging is JSON (Istio's --log_as_json, Linkerd's --log-format json), like
// every other line. Written directly, not through the logger: an error is
// printed at any log level.
struct ErrorWriter {
  bool json = false;
  int operator()(const std::string& what, const std::string& message, int code) const {
    const std::string line = "weir-init: " + what + ": " + message;
    if (json) {
      std::cerr << json_error_line(line);
    } else {
      std::cerr << line << "\n";
    }
    return code;
  }
};

// spdlog to stderr; stdout is kept for plans (dry runs). Callers reject bad
// level names first where they can; any other reads as info.
void setup_logging(ErrorWriter& fail, const std::string& level, bool json = false) {
  (void)weir::setup_logging(
      {.program = "weir-init", .level = level, .pattern = "%Y-%m-%dT%H:%M:%S.%fZ %l weir-init: %v", .json = json});
  fail.json = json;
}

NetnsTarget target_for(const std::string& ref) {
  NetnsTarget t;
  t.netns_path = netns_path(ref.empty() ? "self" : ref);
  t.allow_own_netns = true;  // weir-init's job is its own (the pod's) namespace
  return t;
}

// Runs `fn` inside the namespace `ref` names (ops' session, without the
// writers' lock), or here when `ref` is empty.
Status in_pod_netns(const std::string& ref, const std::function<Status()>& fn, bool* entered = nullptr) {
  if (!ref.empty()) return in_netns(target_for(ref), fn, entered);
  if (entered) *entered = true;
  return fn();
}

// Istio's test for an IPv6-only pod, read in the namespace the rules go to.
// A dry run that cannot enter it (entering needs CAP_SYS_ADMIN, reading
// addresses needs nothing) reads the namespace it runs in, and says so.
Result<bool> pod_is_ipv6_only(const std::string& netns, bool dry_run) {
  bool ipv6_only = false;
  auto read = [&]() -> Status {
    auto families = NetlinkLinks().global_address_families();
    if (!families) return families.error();
    ipv6_only = families->v6 && !families->v4;
    return {};
  };
  bool entered = false;
  if (Status s = in_pod_netns(netns, read, &entered); !s) {
    if (entered || !dry_run) return s.error();
    spdlog::warn("--dry-run: cannot enter {} ({}); reading the addresses of the namespace weir-init runs in",
                 netns, s.error().message);
    if (Status here = read(); !here) return here.error();
  }
  return ipv6_only;
}

enum class Action { Apply, DryRun, Clean };

// The one thing every dialect ends in: print, install or remove.
Status run_action(Action action, const CaptureSpec& spec, const std::string& netns) {
  switch (action) {
    case Action::DryRun:
      // In the backend's own form: what `weir plan` prints for the spec.
      // auto prints the iptables form (a dry run probes no kernel).
      if (spec.backend == FilterBackend::Nftables) {
        const CapturePolicy policy = capture_policy(spec);
        if (Status s = nft::check(policy); !s) return s.error();
        std::cout << "# weir: nftables rules (nft -f input)\n" << nft::render_text(policy);
      } else {
        std::cout << render_plan(plan(spec));
      }
      return {};
    case Action::Clean: {
      auto t = target_for(netns);
      std::vector<std::string> remaining;
      if (auto s = clean(t, &remaining); !s) return s.error().wrap("clean " + t.netns_path);
      spdlog::info("removed weir's rules from {}", t.netns_path);
      for (const auto& r : remaining) spdlog::warn("{}", r);
      return {};
    }
    case Action::Apply: {
      auto t = target_for(netns);
      auto r = apply(t, spec);
      if (!r) return r.error().wrap("apply to " + t.netns_path);
      for (const auto& w : r->warnings) spdlog::warn("{}", w);
      std::string fams;
      for (const auto& rs : r->plan.rulesets) fams += std::string(fams.empty() ? "" : ", ") + to_string(rs.family);
      spdlog::info("capture installed in {} ({}): outbound -> {}, inbound -> {}", t.netns_path, fams,
                   spec.outbound_port, spec.inbound_port);
      return {};
    }
  }
  return {};
}

// Parses with CLI11; returns -1 to go on, or the exit code (help, bad flag).
int parse(CLI::App& app, int argc, char** argv, int usage_code, const ErrorWriter& fail) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version: printed, exit 0
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(app.get_name(), e.what(), usage_code);
  }
  return -1;
}

int run_native(int argc, char** argv) {
  ErrorWriter fail;
  CLI::App app{"Installs sidecar traffic capture in this pod's network namespace (init container)."};
  app.name("weir-init");
  app.footer(
      "Other command lines:\n"
      "  weir-init istio-iptables ...   Istio's init flags (drop-in)\n"
      "  weir-init proxy-init ...       Linkerd's proxy-init flags (drop-in)\n"
      "  weir-init validate ...         check that capture is in place (exit 42 when not)\n"
      "Every flag can also be set by WEIR_<FLAG> (upper case, '-' -> '_'), e.g. WEIR_INBOUND_PORTS.");
  CaptureFlags flags;
  flags.bind(app, {.env_prefix = "WEIR_", .group = "Capture", .config_flag = true});
  bool dry_run = false, cleanup = false;
  std::string netns, log_level = "info";
  app.add_flag("--dry-run", dry_run,
               "print the rules (iptables-save text; nft -f input with --backend nftables), change nothing")
      ->envname("WEIR_DRY_RUN");
  app.add_flag("--cleanup", cleanup, "remove weir's rules instead of installing them")->envname("WEIR_CLEANUP");
  app.add_option("--netns", netns, "target network namespace (path, name, pid:N); default: this one")
      ->envname("WEIR_NETNS");
  app.add_option("--log-level", log_level, log_levels_text())->envname("WEIR_LOG_LEVEL");
  if (int rc = parse(app, argc, argv, kExitUsage, fail); rc >= 0) return rc;
  if (!is_spdlog_level(log_level)) return fail("--log-level", "\"" + log_level + "\" is not a log level", kExitUsage);
  setup_logging(fail, log_level);

  if (cleanup) {
    if (dry_run) {
      spdlog::info("--dry-run: would remove weir's rules; nothing changed");
      return kExitOk;
    }
    if (auto s = run_action(Action::Clean, {}, netns); !s) return fail("cleanup", s.error().message, kExitFailed);
    return kExitOk;
  }
  auto spec = flags.build();
  if (!spec) return fail("capture flags", spec.error().message, kExitUsage);
  if (auto s = run_action(dry_run ? Action::DryRun : Action::Apply, *spec, netns); !s)
    return fail("apply", s.error().message, kExitFailed);
  return kExitOk;
}

int run_istio(int argc, char** argv) {
  ErrorWriter fail;
  CLI::App app{"Istio's istio-iptables command line, carried out by weir."};
  app.name("weir-init istio-iptables");
  IstioFlags f;
  bind_istio_flags(app, f);
  if (int rc = parse(app, argc, argv, kExitFailed, fail); rc >= 0) return rc;
  std::string level = f.log_output_level;
  if (auto colon = level.rfind(':'); colon != std::string::npos) level = level.substr(colon + 1);
  setup_logging(fail, level.empty() ? "info" : level, f.log_as_json);
  if (auto s = apply_istio_env_fallbacks(app, f); !s) return fail("istio-iptables", s.error().message, kExitFailed);

  auto cmd = istio_command(
      f, [] { return read_nameservers("/etc/resolv.conf"); },
      [&](const std::string& netns) { return pod_is_ipv6_only(netns, f.dry_run); }, ::getuid(), ::getgid());
  if (!cmd) return fail("istio-iptables", cmd.error().message, kExitFailed);
  for (const std::string& w : cmd->warnings) spdlog::warn("{}", w);
  if (cmd->ipv6_only_pod)
    spdlog::info("the pod has only IPv6 addresses: IPv6 rules as well, as Istio does without --dual-stack");
  if (f.reconcile) spdlog::info("--reconcile accepted: every weir apply replaces drifted rules");
  if (f.force_apply)
    spdlog::info("--force-apply accepted and changes nothing: weir always reconciles (every apply replaces "
                 "drifted rules and leaves matching ones)");
  if (f.native_nftables)
    spdlog::info("--native-nftables: backend nftables; weir programs nf_tables in-process (table inet weir, "
                 "`nft list table inet weir`) and runs no nft binary");

  if (cmd->dry_run) {
    if (cmd->cleanup_only) {
      spdlog::info("--dry-run: would remove weir's rules; nothing changed");
      return kExitOk;
    }
    if (cmd->apply)
      if (auto s = run_action(Action::DryRun, cmd->spec, ""); !s) return fail("istio-iptables", s.error().message, kExitFailed);
    if (cmd->validate) spdlog::info("--dry-run: validation skipped (no rules were installed)");
    return kExitOk;
  }
  if (cmd->cleanup_only) {
    if (auto s = run_action(Action::Clean, {}, cmd->netns); !s) return fail("istio-iptables", s.error().message, kExitFailed);
    return kExitOk;
  }
  if (cmd->apply) {
    if (auto s = run_action(Action::Apply, cmd->spec, cmd->netns); !s)
      return fail("istio-iptables", s.error().message, kExitFailed);
  }
  if (cmd->validate) {
    // Validation dials from inside the target namespace.
    std::optional<Result<ValidationReport>> r;
    if (auto s = in_pod_netns(cmd->netns, [&]() -> Status { r.emplace(validate_capture(cmd->validation)); return {}; }); !s)
      return fail("istio-iptables", s.error().message, kExitIstioValidationFailed);
    if (!*r) return fail("istio-iptables validation", r->error().message, kExitIstioValidationFailed);
    const ValidationReport& report = r->value();
    if (!report.captured) return fail("istio-iptables validation failed", report.detail, kExitIstioValidationFailed);
    spdlog::info("validation passed in {:.1f} ms: {}", report.elapsed.count() / 1000.0, report.detail);
  }
  return kExitOk;
}

int run_linkerd(int argc, char** argv) {
  ErrorWriter fail;
  CLI::App app{"Linkerd's proxy-init command line, carried out by weir."};
  app.name("weir-init proxy-init");
  LinkerdFlags f;
  bind_linkerd_flags(app, f);
  if (int rc = parse(app, argc, argv, kExitFailed, fail); rc >= 0) return rc;
  if (!is_spdlog_level(f.log_level)) return fail("proxy-init", "--log-level: \"" + f.log_level + "\" is not a log level", kExitFailed);
  setup_logging(fail, f.log_level, f.log_format == "json");
  auto cmd = linkerd_command(f);
  if (!cmd) return fail("proxy-init", cmd.error().message, kExitFailed);
  for (const auto& note : cmd->notes) spdlog::info("{}", note);
  for (const auto& warning : cmd->warnings) spdlog::warn("{}", warning);
  if (auto s = run_action(cmd->simulate ? Action::DryRun : Action::Apply, cmd->spec, cmd->netns); !s)
    return fail("proxy-init", s.error().message, kExitFailed);
  return kExitOk;
}

int run_validate(int argc, char** argv) {
  ErrorWriter fail;
  CLI::App app{"Checks that this namespace's TCP goes to the proxy: listens on the proxy's ports on loopback, "
               "dials an address the rules must redirect, and succeeds only when the connection arrives with "
               "SO_ORIGINAL_DST equal to what was dialed. Needs no privilege (ports >= 1024 as non-root)."};
  app.name("weir-init validate");
  std::string out_port = "15001", in_port = "15006", timeout = "5s", log_level = "info", source;
  std::vector<std::string> targets;
  int failure_code = kExitCaptureMissing;
  auto last = CLI::MultiOptionPolicy::TakeLast;
  app.add_option("--outbound-port", out_port, "the proxy's outbound port (15001)")
      ->envname("WEIR_OUTBOUND_PORT")->multi_option_policy(last);
  app.add_option("--inbound-port", in_port, "the proxy's inbound port (15006)")
      ->envname("WEIR_INBOUND_PORT")->multi_option_policy(last);
  app.add_option("--target", targets,
                 std::string("ADDR:PORT or [ADDR]:PORT to dial, repeatable (") + kDefaultValidationTarget +
                     "; " + kDefaultValidationTarget6 + " when the namespace has no IPv4 route)")
      ->envname("WEIR_VALIDATE_TARGET")->delimiter(',');
  app.add_option("--source", source, "bind the dial to this address (e.g. 127.0.0.1 with --target 127.0.0.6:P)")
      ->envname("WEIR_VALIDATE_SOURCE")->multi_option_policy(last);
  app.add_option("--timeout", timeout, "give up after this long (5s; e.g. 500ms, 2s)")
      ->envname("WEIR_VALIDATE_TIMEOUT")->multi_option_policy(last);
  app.add_option("--failure-exit-code", failure_code, "exit code when capture is missing (42; Linkerd's is 95)")
      ->envname("WEIR_VALIDATE_FAILURE_EXIT_CODE")->check(CLI::Range(1, 255));
  app.add_option("--log-level", log_level, log_levels_text())->envname("WEIR_LOG_LEVEL");
  if (int rc = parse(app, argc, argv, kExitUsage, fail); rc >= 0) return rc;
  if (!is_spdlog_level(log_level)) return fail("validate", "--log-level: \"" + log_level + "\" is not a log level", kExitUsage);
  setup_logging(fail, log_level);

  ValidationOptions opts;
  auto o = parse_port_value("--outbound-port", out_port);
  if (!o) return fail("validate", o.error().message, kExitUsage);
  auto i = parse_port_value("--inbound-port", in_port);
  if (!i) return fail("validate", i.error().message, kExitUsage);
  opts.outbound_port = *o;
  opts.inbound_port = *i;
  for (const auto& t : targets) {
    auto e = parse_endpoint("--target", t);
    if (!e) return fail("validate", e.error().message, kExitUsage);
    opts.targets.push_back(*e);
  }
  if (!source.empty()) {
    auto c = parse_cidr(source);
    if (!c) return fail("validate", "--source: " + c.error().message, kExitUsage);
    opts.source = *c;
  }
  auto d = parse_duration("--timeout", timeout);
  if (!d) return fail("validate", d.error().message, kExitUsage);
  opts.timeout = *d;

  auto r = validate_capture(opts);
  if (!r) return fail("validate", r.error().message, kExitFailed);
  if (!r->captured) {
    std::string hint;
    if (opts.targets.empty() && ::getuid() == 1337)
      hint = " (running as UID 1337: if that is the proxy's UID its traffic is never captured; try "
             "--target 127.0.0.6:15002 --source 127.0.0.1)";
    return fail(r->wrong_port ? "validate: capture goes to the wrong port" : "validate: capture missing",
                r->detail + hint, failure_code);
  }
  spdlog::info("capture in place ({:.1f} ms): {}", r->elapsed.count() / 1000.0, r->detail);
  return kExitOk;
}

// The command lines other than the native one: the first word picks one.
struct SubcommandEntry {
  const char* name;
  const char* description;
  int (*run)(int argc, char** argv);
};

const SubcommandEntry kSubcommands[] = {
    {"istio-iptables", "Istio's init command line", run_istio},
    {"proxy-init", "Linkerd's proxy-init command line", run_linkerd},
    {"validate", "check that capture is in place", run_validate},
};

}  // namespace
}  // namespace weir

int main(int argc, char** argv) {
  try {
    if (argc > 1) {
      for (const auto& c : weir::kSubcommands) {
        if (std::strcmp(argv[1], c.name) == 0) return c.run(argc - 1, argv + 1);
      }
    }
    return weir::run_native(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "weir-init: internal error: " << e.what() << "\n";
    return 1;
  }
}
