// What a runtime hands weir-cni: the CNI_* environment (with CNI_ARGS), the
// stdin config (with prevResult and the pod's annotations in runtimeConfig).
// Drives the whole CNI contract, run_cni() in cni/handlers.h, with a fake
// KernelOps that performs no side effect: it records the calls, runs every
// spec it is handed through the planner (fuzz_support.h exercise_spec) and
// answers success. The answer document is printed as weir-cni prints it.
//
// Input: "NAME=VALUE" lines (CNI_COMMAND, CNI_ARGS, CNI_NETNS, ...), an empty
// line, then stdin. Without an empty line the whole input is stdin of an ADD
// with a complete environment.
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>
#include <string>

#include <nlohmann/json.hpp>

#include "cni/config.h"
#include "cni/handlers.h"
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

// A kernel that changes nothing: records the calls and answers success.
class FakeKernel : public KernelOps {
 public:
  std::vector<std::string> calls;

  Status open_netns(const NetnsTarget& t) override {
    WEIR_FUZZ_CHECK(!t.allow_own_netns, "run_cni asked to open its own namespace");
    calls.push_back("open");
    return {};
  }
  Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec) override {
    WEIR_FUZZ_CHECK(!t.allow_own_netns, "run_cni asked to apply to its own namespace");
    WEIR_FUZZ_CHECK(validate(spec).ok(), "run_cni applies a spec validate() refuses");
    calls.push_back("apply");
    fuzz::exercise_spec(spec);
    return ApplyReport{};
  }
  Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec) override {
    WEIR_FUZZ_CHECK(!t.allow_own_netns, "run_cni asked to check its own namespace");
    WEIR_FUZZ_CHECK(validate(spec).ok(), "run_cni checks a spec validate() refuses");
    calls.push_back("check");
    fuzz::exercise_spec(spec);
    return CheckReport{};
  }
  Status clean(const NetnsTarget& t) override {
    WEIR_FUZZ_CHECK(!t.allow_own_netns, "run_cni asked to clean its own namespace");
    calls.push_back("clean");
    return {};
  }
  Status probe(const CaptureSpec&) override {
    calls.push_back("probe");
    return {};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in = split(fuzz::as_string(data, size));
  const CniEnv env = read_env([&](const char* name) -> const char* {
    auto it = in.env.find(name);
    return it == in.env.end() ? nullptr : it->second.c_str();
  });
  // weir-cni reads one byte past the limit, so the parser sees the config is too large.
  const size_t limit = max_config_bytes(parse_command(env.command));
  if (in.stdin_text.size() > limit + 1) in.stdin_text.resize(limit + 1);

  FakeKernel kernel;
  const CniAnswer answer = run_cni(env, in.stdin_text, kernel);
  // weir-cni prints the one document this way (replacing invalid UTF-8).
  const std::string out = answer.document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  WEIR_FUZZ_CHECK(!out.empty(), "run_cni answered no document");
  if (!answer.ok) {
    WEIR_FUZZ_CHECK(answer.document.is_object() && answer.document.contains("code"),
                    "a failed invocation answered without an error code: " + out);
    const auto& msg = answer.document.value("msg", nlohmann::json());
    WEIR_FUZZ_CHECK(msg.is_string() && !msg.get<std::string>().empty(), "an error document without a message: " + out);
  }
  (void)answer.pod.display();
  return 0;
}
