// weir: the debugging CLI. main only builds the command table, parses, and
// maps errors to one line on stderr and exit code 2.
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cmd/command.h"
#include "frontend/logging.h"
#include "kernel/ops.h"

namespace {

struct SubcommandEntry {
  const char* name;
  const char* description;
  std::unique_ptr<weir::Subcommand> (*make)();
};

const SubcommandEntry kSubcommands[] = {
    {"plan", "Print the rules a capture spec gives (dry run: no root, no kernel state)", weir::make_plan_command},
    {"apply", "Install the rules in a network namespace, replacing weir's previous ones", weir::make_apply_command},
    {"check", "Compare a namespace's live rules with the plan: exit 0 equal, 1 drifted (diff on stdout), 2 error",
     weir::make_check_command},
    {"clean", "Remove weir's rules and routes from a network namespace", weir::make_clean_command},
    {"show", "Print weir's live rules with packet and byte counters, and its routes", weir::make_show_command},
    {"explain", "Walk one packet through weir's rules and print each rule it meets and the verdict",
     weir::make_explain_command},
};

void setup_logging(const std::string& level) {
  (void)weir::setup_logging({.program = "weir", .level = level, .pattern = "weir: %l: %v", .utc = false});
}

// The first word on the command line that is not an option, when it names no
// command: CLI11 only says "A subcommand is required" then.
std::string unknown_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--log-level") {
      ++i;
      continue;
    }
    if (arg.empty() || arg[0] == '-') continue;
    for (const SubcommandEntry& def : kSubcommands) {
      if (arg == def.name) return "";
    }
    return arg;
  }
  return "";
}

std::string command_names() {
  std::string names;
  for (const SubcommandEntry& def : kSubcommands) names += (names.empty() ? "" : ", ") + std::string(def.name);
  return names;
}

int fail(const std::string& command, const std::string& message) {
  std::cerr << "weir: " << (command.empty() ? "" : command + ": ") << message << '\n';
  return weir::kExitError;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"weir: installs and inspects the netfilter rules that send a pod's traffic through its sidecar proxy"};
  app.name("weir");
  // The second line tells a static build made without libmnl.a apart.
  app.set_version_flag("--version", std::string(WEIR_VERSION) + "\nnftables backend: " + weir::nftables_backend());
  app.require_subcommand(1);
  app.fallthrough();  // --log-level also after the command
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, weir::log_levels_text())->check(CLI::IsMember(weir::log_levels()));

  std::vector<std::pair<CLI::App*, std::unique_ptr<weir::Subcommand>>> commands;
  for (const SubcommandEntry& def : kSubcommands) {
    CLI::App* sub = app.add_subcommand(def.name, def.description);
    std::unique_ptr<weir::Subcommand> cmd = def.make();
    cmd->bind(*sub);
    // The global option, listed where a user looks: in each command's --help.
    const std::string global = "Also: --log-level " + weir::log_levels_text() + " (default warn; before or after the command)";
    sub->footer(sub->get_footer().empty() ? global : sub->get_footer() + "\n\n" + global);
    commands.emplace_back(sub, std::move(cmd));
  }

  auto current_command = [&app]() -> std::string {
    const std::vector<CLI::App*> subs = app.get_subcommands();
    return subs.empty() ? "" : subs.front()->get_name();
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version: printed, exit 0
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string command = current_command();
    if (const std::string word = unknown_command(argc, argv); command.empty() && !word.empty()) {
      return fail("", "unknown command \"" + word + "\" (commands: " + command_names() + ")");
    }
    if (command.empty() && app.get_subcommands().empty() && dynamic_cast<const CLI::RequiredError*>(&e)) {
      return fail("", "no command given (commands: " + command_names() + "; see weir --help)");
    }
    return fail(command, e.what());
  }

  setup_logging(log_level);
  for (auto& [sub, cmd] : commands) {
    if (!sub->parsed()) continue;
    try {
      weir::Result<int> rc = cmd->run();
      if (!rc) return fail(sub->get_name(), rc.error().message);
      return *rc;
    } catch (const nlohmann::json::exception& e) {
      return fail(sub->get_name(), std::string("JSON: ") + e.what());
    } catch (const std::exception& e) {
      return fail(sub->get_name(), std::string("internal error: ") + e.what());
    }
  }
  return fail("", "no command given (see weir --help)");
}
