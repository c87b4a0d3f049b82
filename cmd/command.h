// A subcommand of `weir` (plan, apply, ...): it binds its options onto its CLI11 App, then runs.
// main.cc holds the table of commands and turns errors into exit codes.
#pragma once

#include <memory>
#include <string>

#include "rules/error.h"
#include "kernel/ops.h"

namespace CLI {
class App;
}  // namespace CLI

namespace weir {

// Exit codes of every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitDrift = 1;  // check: the live rules differ from the plan
inline constexpr int kExitError = 2;

class Subcommand {
 public:
  virtual ~Subcommand() = default;
  // Adds the command's options to its App; called once, before parsing.
  virtual void bind(CLI::App& app) = 0;
  // After parsing: an exit code, or an Error (main prints it, exit 2).
  virtual Result<int> run() = 0;
};

std::unique_ptr<Subcommand> make_plan_command();
std::unique_ptr<Subcommand> make_apply_command();
std::unique_ptr<Subcommand> make_check_command();
std::unique_ptr<Subcommand> make_clean_command();
std::unique_ptr<Subcommand> make_show_command();
std::unique_ptr<Subcommand> make_explain_command();

// --netns and --lock-timeout, shared by the commands that touch a namespace.
struct NetnsFlags {
  std::string netns;
  std::string lock_timeout_ms = "10000";

  // `required`: whether --netns must be given. `writer`: whether the command
  // takes the namespace's lock (only writers do), so --lock-timeout applies.
  void bind(CLI::App& app, bool required, bool writer);
  // The target; the CLI's own namespace is allowed only for "--netns self".
  // Error when --lock-timeout is not a number of milliseconds.
  Result<NetnsTarget> target() const;
};

// --output text|json.
struct OutputFlag {
  std::string format = "text";
  void bind(CLI::App& app);
  bool json() const { return format == "json"; }
};

}  // namespace weir
