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

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "frontend/capture_flags.h"
#include "init/istio_flags.h"
#include "init/linkerd_flags.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
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

// Set by setup_logging: errors are then JSON lines too, like every other line.
bool json_logs = false;

// The text of a JSON string, without its quotes (messages carry quotes:
// "x" is not a port). nlohmann/json does the escaping.
std::string json_escape(std::string_view in) {
  const std::string quoted =
      nlohmann::json(std::string(in)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

// "%*" in a log pattern: the message, escaped for a JSON string.
class JsonMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string e = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(e.data(), e.data() + e.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessage>(); }
};

constexpr const char* kJsonPattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%*"})";

int fail(const std::string& what, const std::string& message, int code) {
  if (!json_logs) {
    std::cerr << "weir-init: " << what << ": " << message << "\n";
    return code;
  }
  // Written directly, not through the logger: an error is printed at any log level.
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[40];
  std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%06lldZ", static_cast<long long>(us));
  std::cerr << R"({"time":")" << stamp << R"(","level":"error","msg":")"
            << json_escape("weir-init: " + what + ": " + message) << "\"}\n";
  return code;
}

bool known_level(const std::string& level) {
  for (const char* l : {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"})
    if (level == l) return true;
  return false;
}

// spdlog to stderr; stdout is kept for plans (dry runs).
void setup_logging(std::string level, bool json = false) {
  if (level == "warning") level = "warn";
  if (!known_level(level)) level = "info";  // callers reject bad names first where they can
  auto logger = spdlog::stderr_logger_mt("weir-init");
  spdlog::set_default_logger(logger);
  json_logs = json;
  if (json) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc,
                                                                 spdlog::details::os::default_eol);
    formatter->add_flag<JsonMessage>('*').set_pattern(kJsonPattern);
    spdlog::set_formatter(std::move(formatter));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l weir-init: %v", spdlog::pattern_time_type::utc);
  }
  spdlog::set_level(spdlog::level::from_str(level));
}

NetnsTarget target_for(const std::string& ref) {
  NetnsTarget t;
  t.netns_path = netns_path(ref.empty() ? "self" : ref);
  t.allow_own_netns = true;  // weir-init's job is its own (the pod's) namespace
  return t;
}

// The calling thread inside a namespace until this goes out of scope.
struct InNetns {
  std::optional<Netns> ns;
  std::optional<NetnsGuard> guard;  // destroyed first: back before the namespace closes
};

// Enters the namespace `ref` names; an empty ref stays where it is.
Status enter_netns(const std::string& ref, InNetns& in) {
  if (ref.empty()) return {};
  auto opened = Netns::open(target_for(ref).netns_path);
  if (!opened) return opened.error();
  in.ns.emplace(std::move(*opened));
  auto entered = NetnsGuard::enter(*in.ns);
  if (!entered) return entered.error();
  in.guard.emplace(std::move(*entered));
  return {};
}

// Istio's test for an IPv6-only pod, read in the namespace the rules go to.
// A dry run that cannot enter it (entering needs CAP_SYS_ADMIN, reading
// addresses needs nothing) reads the namespace it runs in, and says so.
Result<bool> pod_is_ipv6_only(const std::string& netns, bool dry_run) {
  InNetns in;
  if (auto s = enter_netns(netns, in); !s) {
    if (!dry_run) return s.error();
    spdlog::warn("--dry-run: cannot enter {} ({}); reading the addresses of the namespace weir-init runs in",
                 netns, s.error().message);
  }
  auto families = NetlinkLinks().global_address_families();
  if (!families) return families.error();
  return families->v6 && !families->v4;
}

enum class Action { Apply, DryRun, Clean };

// The one thing every dialect ends in: print, install or remove.
Status run_action(Action action, const CaptureSpec& spec, const std::string& netns) {
  switch (action) {
    case Action::DryRun:
      std::cout << render_plan(plan(spec));
      return {};
    case Action::Clean: {
      auto t = target_for(netns);
      if (auto s = clean(t); !s) return s.error().wrap("clean " + t.netns_path);
      spdlog::info("removed weir's rules from {}", t.netns_path);
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
int parse(CLI::App& app, int argc, char** argv, int usage_code) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(app.get_name(), e.what(), usage_code);
  }
  return -1;
}

int run_native(int argc, char** argv) {
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
  app.add_flag("--dry-run", dry_run, "print the rules (iptables-save text), change nothing")->envname("WEIR_DRY_RUN");
  app.add_flag("--cleanup", cleanup, "remove weir's rules instead of installing them")->envname("WEIR_CLEANUP");
  app.add_option("--netns", netns, "target network namespace (path, name, pid:N); default: this one")
      ->envname("WEIR_NETNS");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")->envname("WEIR_LOG_LEVEL");
  if (int rc = parse(app, argc, argv, kExitUsage); rc >= 0) return rc;
  if (!known_level(log_level)) return fail("--log-level", "\"" + log_level + "\" is not a log level", kExitUsage);
  setup_logging(log_level);

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
  CLI::App app{"Istio's istio-iptables command line, carried out by weir."};
  app.name("weir-init istio-iptables");
  IstioFlags f;
  bind_istio_flags(app, f);
  if (int rc = parse(app, argc, argv, kExitFailed); rc >= 0) return rc;
  std::string level = f.log_output_level;
  if (auto colon = level.rfind(':'); colon != std::string::npos) level = level.substr(colon + 1);
  setup_logging(level.empty() ? "info" : level, f.log_as_json);
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
    spdlog::warn("--native-nftables accepted and changes nothing: weir programs the legacy xtables interface "
                 "through libiptc, so the rules are in the legacy tables (iptables-legacy-save), not in nftables");

  if (cmd->dry_run) {
    if (cmd->cleanup_only) {
      spdlog::info("--dry-run: would remove weir's rules; nothing changed");
      return kExitOk;
    }
    if (cmd->apply) (void)run_action(Action::DryRun, cmd->spec, "");
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
    // Validation dials from inside the target namespace: enter it for this thread.
    InNetns in;
    if (auto s = enter_netns(cmd->netns, in); !s)
      return fail("istio-iptables", s.error().message, kExitIstioValidationFailed);
    auto r = validate_capture(cmd->validation);
    if (!r) return fail("istio-iptables validation", r.error().message, kExitIstioValidationFailed);
    if (!r->captured) return fail("istio-iptables validation failed", r->detail, kExitIstioValidationFailed);
    spdlog::info("validation passed in {:.1f} ms: {}", r->elapsed.count() / 1000.0, r->detail);
  }
  return kExitOk;
}

int run_linkerd(int argc, char** argv) {
  CLI::App app{"Linkerd's proxy-init command line, carried out by weir."};
  app.name("weir-init proxy-init");
  LinkerdFlags f;
  bind_linkerd_flags(app, f);
  if (int rc = parse(app, argc, argv, kExitFailed); rc >= 0) return rc;
  if (!known_level(f.log_level)) return fail("proxy-init", "--log-level: \"" + f.log_level + "\" is not a log level", kExitFailed);
  setup_logging(f.log_level, f.log_format == "json");
  auto cmd = linkerd_command(f);
  if (!cmd) return fail("proxy-init", cmd.error().message, kExitFailed);
  for (const auto& note : cmd->notes) spdlog::info("{}", note);
  for (const auto& warning : cmd->warnings) spdlog::warn("{}", warning);
  if (auto s = run_action(cmd->simulate ? Action::DryRun : Action::Apply, cmd->spec, cmd->netns); !s)
    return fail("proxy-init", s.error().message, kExitFailed);
  return kExitOk;
}

int run_validate(int argc, char** argv) {
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
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")->envname("WEIR_LOG_LEVEL");
  if (int rc = parse(app, argc, argv, kExitUsage); rc >= 0) return rc;
  if (!known_level(log_level)) return fail("validate", "--log-level: \"" + log_level + "\" is not a log level", kExitUsage);
  setup_logging(log_level);

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

struct Command {
  const char* name;
  const char* description;
  int (*run)(int argc, char** argv);
};

const Command kCommands[] = {
    {"istio-iptables", "Istio's init command line", run_istio},
    {"proxy-init", "Linkerd's proxy-init command line", run_linkerd},
    {"validate", "check that capture is in place", run_validate},
};

}  // namespace
}  // namespace weir

int main(int argc, char** argv) {
  try {
    if (argc > 1) {
      for (const auto& c : weir::kCommands) {
        if (std::strcmp(argv[1], c.name) == 0) return c.run(argc - 1, argv + 1);
      }
    }
    return weir::run_native(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "weir-init: internal error: " << e.what() << "\n";
    return 1;
  }
}
