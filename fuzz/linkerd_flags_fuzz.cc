// Linkerd's proxy-init command line (init/linkerd_flags.h), as weir-init's
// run_linkerd reads it; for every command it accepts, the planner
// (fuzz_support.h exercise_spec: --simulate hands the spec to plan()).
//
// Input: NUL-separated elements: leading NAME=VALUE ones are environment
// variables, the rest argv after "proxy-init".
#include <cstddef>
#include <cstdint>

#include <CLI/CLI.hpp>

#include "fuzz/fuzz_support.h"
#include "init/linkerd_flags.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weir;
  fuzz::CommandLine cl = fuzz::command_line(fuzz::as_string(data, size));
  fuzz::ScopedEnv env(std::move(cl.env));
  auto argv = fuzz::argv_of("proxy-init", cl.args);

  CLI::App app{"proxy-init"};
  LinkerdFlags f;
  bind_linkerd_flags(app, f);
  try {
    app.parse(static_cast<int>(argv.size() - 1), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;  // weir-init prints the message and exits (help included)
  }
  auto cmd = linkerd_command(f);
  if (!cmd.ok()) {
    WEIR_FUZZ_CHECK(!cmd.error().message.empty(), "an error without a message");
    return 0;
  }
  fuzz::exercise_spec(cmd->spec);
  return 0;
}
