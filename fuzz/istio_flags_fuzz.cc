// The istio-iptables command line (init/istio_flags.h), as weir-init's
// run_istio reads it: CLI11 with Istio's flags and environment variables, the
// environment fallbacks, the translation; then, for every command that plans
// rules, the planner (fuzz_support.h exercise_spec: weir-init --dry-run hands
// the spec to plan() without validating it again).
//
// Input: one byte of options (bit 0: resolv.conf cannot be read, bit 1: the
// pod is IPv6-only, bit 2: weir-init runs as UID/GID 1337), then NUL-separated
// elements: leading NAME=VALUE ones are environment variables (ISTIO_*,
// REDIRECT_DNS, ...), the rest argv after "istio-iptables".
#include <cstddef>
#include <cstdint>

#include <CLI/CLI.hpp>

#include "fuzz/fuzz_support.h"
#include "init/istio_flags.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weir;
  if (size < 1) return -1;
  const uint8_t options = data[0];
  fuzz::CommandLine cl = fuzz::command_line(fuzz::as_string(data + 1, size - 1));
  fuzz::ScopedEnv env(std::move(cl.env));
  auto argv = fuzz::argv_of("istio-iptables", cl.args);

  CLI::App app{"istio-iptables"};
  IstioFlags f;
  bind_istio_flags(app, f);
  try {
    app.parse(static_cast<int>(argv.size() - 1), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;  // weir-init prints the message and exits (help included)
  }
  if (!apply_istio_env_fallbacks(app, f).ok()) return 0;
  const uint32_t id = (options & 4) ? 1337 : 1000;
  auto cmd = istio_command(
      f,
      [&]() -> Result<std::vector<Cidr>> {
        if (options & 1) return Error{ErrorKind::Io, "open /etc/resolv.conf: No such file or directory"};
        return std::vector<Cidr>{*parse_cidr("198.18.0.10"), *parse_cidr("fd00::10")};
      },
      [&](const std::string&) -> Result<bool> { return (options & 2) != 0; }, id, id);
  if (!cmd.ok()) {
    WEIR_FUZZ_CHECK(!cmd.error().message.empty(), "an error without a message");
    return 0;
  }
  if (!cmd->cleanup_only && cmd->apply) fuzz::exercise_spec(cmd->spec);
  return 0;
}
