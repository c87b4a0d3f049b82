// weir's own capture flags (iptables/frontend/capture_flags.h), shared by
// `weir plan/apply/check/explain` and the native `weir-init` command line,
// each also WEIR_<FLAG>; for every spec they build, the planner
// (fuzz_support.h exercise_spec).
//
// Input: NUL-separated elements: leading NAME=VALUE ones are environment
// variables (WEIR_INBOUND_PORTS=...), the rest argv after "weir-init".
// --config FILE is not bound and inputs naming --resolv-conf are skipped: both
// read a file named by the input (the spec JSON has its own target).
#include <cstddef>
#include <cstdint>

#include <CLI/CLI.hpp>

#include "frontend/capture_flags.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weir;
  const std::string text = fuzz::as_string(data, size);
  if (text.find("resolv") != std::string::npos || text.find("RESOLV") != std::string::npos) return -1;
  fuzz::CommandLine cl = fuzz::command_line(text);
  fuzz::ScopedEnv env(std::move(cl.env));
  auto argv = fuzz::argv_of("weir-init", cl.args);

  CLI::App app{"weir-init"};
  CaptureFlags flags;
  flags.bind(app, {.env_prefix = "WEIR_", .group = "Capture", .config_flag = false});
  try {
    app.parse(static_cast<int>(argv.size() - 1), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;
  }
  auto spec = flags.build();
  if (!spec.ok()) {
    WEIR_FUZZ_CHECK(!spec.error().message.empty(), "an error without a message");
    return 0;
  }
  fuzz::exercise_spec(*spec);
  // Over another base, as `weir check` layers flags over a config file.
  CaptureSpec base;
  base.mode = InboundMode::Tproxy;
  base.dns.capture = true;
  auto layered = flags.build(base);
  if (layered.ok()) fuzz::exercise_spec(*layered);
  return 0;
}
