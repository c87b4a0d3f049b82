// What a runtime hands weir-cni: the CNI_* environment (with CNI_ARGS), the
// stdin config (with prevResult and the pod's annotations in runtimeConfig).
// Follows weir-cni's run() up to the first side effect: the command, the
// strict or lenient config parse, the error and VERSION documents, CNI_ARGS,
// the environment check, the capture decision, the annotations, then for a
// captured pod the planner (fuzz_support.h exercise_spec) and, on ADD, the
// result passed through.
//
// Input: "NAME=VALUE" lines (CNI_COMMAND, CNI_ARGS, CNI_NETNS, ...), an empty
// line, then stdin. Without an empty line the whole input is stdin of an ADD
// with a complete environment.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cni/annotations.h"
#include "cni/config.h"
#include "cni/error_codes.h"
#include "cni/result.h"
#include "cni/selection.h"
#include "fuzz/fuzz_support.h"

namespace {

using namespace weir;
using namespace weir::cni;

struct Input {
  std::map<std::string, std::string> env;
  std::string stdin_text;
};

Input split(const std::string& in) {
  Input out;
  const auto blank = in.find("\n\n");
  if (blank == std::string::npos) {
    out.env = {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c1"}, {"CNI_NETNS", "/var/run/netns/pod"},
               {"CNI_IFNAME", "eth0"}, {"CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=app"}};
    out.stdin_text = in;
    return out;
  }
  size_t pos = 0;
  while (pos < blank) {
    auto nl = in.find('\n', pos);
    if (nl == std::string::npos || nl > blank) nl = blank;
    const std::string line = in.substr(pos, nl - pos);
    pos = nl + 1;
    const auto eq = line.find('=');
    if (eq != std::string::npos) out.env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  out.stdin_text = in.substr(blank + 2);
  return out;
}

// weir-cni prints every document this way (replacing invalid UTF-8).
void print(const nlohmann::json& doc) { (void)doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void error_answer(const std::string& version, const CniError& e) {
  WEIR_FUZZ_CHECK(!e.msg.empty(), "an error document without a message");
  print(error_document(version, e));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in = split(fuzz::as_string(data, size));
  if (fuzz::json_nesting(in.stdin_text) > fuzz::kMaxFuzzNesting) return -1;  // known: issue 12 item 1

  const CniEnv env = read_env([&](const char* name) -> const char* {
    auto it = in.env.find(name);
    return it == in.env.end() ? nullptr : it->second.c_str();
  });
  const auto command = parse_command(env.command);
  // weir-cni reads one byte past the limit, so the parser sees the config is too large.
  const size_t limit = max_config_bytes(command);
  if (in.stdin_text.size() > limit + 1) in.stdin_text.resize(limit + 1);
  const std::string& input = in.stdin_text;

  if (!command) {
    error_answer(version_of(input), CniError{code::kInvalidEnvironment, "CNI_COMMAND is not known", ""});
    return 0;
  }
  if (*command == Command::Version) {
    print(version_document(version_of(input)));
    return 0;
  }
  const bool lenient = *command == Command::Del || *command == Command::Gc;
  std::string problem;
  auto parsed = lenient ? parse_config_lenient(input, problem) : parse_config(input);
  if (!parsed.ok()) {
    error_answer(version_of(input), parsed.error());
    return 0;
  }
  const PluginConfig& config = parsed.value();
  WEIR_FUZZ_CHECK(is_supported_version(config.cni_version), "parse_config accepted cniVersion " + config.cni_version);
  if (!lenient) {
    // What ADD and CHECK install must be a valid spec before any annotation.
    WEIR_FUZZ_CHECK(validate(config.spec).ok(), "parse_config accepted an invalid capture spec");
  }
  const PodRef pod = pod_from_args(parse_cni_args(env.args));
  (void)pod.display();
  if (auto e = check_env(*command, env)) {
    error_answer(config.cni_version, *e);
    return 0;
  }
  if (*command != Command::Add && *command != Command::Check) return 0;

  auto decision = decide(SelectionPolicy{config.exclude_namespaces, config.capture_without_annotations}, pod.ns,
                         config.annotations);
  if (decision.ok() && decision->capture) {
    CaptureSpec spec = config.spec;
    if (config.annotations) {
      std::vector<std::string> warnings;
      Status s = apply_annotations(spec, *config.annotations, warnings, config.proxy_gids_set);
      if (s.ok()) fuzz::exercise_spec(spec);
      else WEIR_FUZZ_CHECK(!s.error().message.empty(), "an annotation error without a message");
    } else {
      fuzz::exercise_spec(spec);
    }
  }
  if (*command == Command::Add && config.prev_result) {
    // TEMPORARY guard (issue 12 item 3, fuzz/crashes/cni_config/prevresult-*):
    // convert_result throws on a prevResult whose ips[].address is not a
    // string when cniVersion < 1.0.0; weir-cni answers 105 after installing
    // the rules. Remove the catch once prevResult is validated in parse_config.
    try {
      print(convert_result(*config.prev_result, config.cni_version));
    } catch (const nlohmann::json::exception&) {
    }
  }
  return 0;
}
