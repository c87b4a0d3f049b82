#include "cni/agent_readiness.h"

#include <doctest/doctest.h>

#include "cni/config.h"

using namespace weir::cni;

TEST_CASE("agentReadiness: parsed from the entry") {
  auto none = parse_agent_readiness(nlohmann::json::object());
  REQUIRE(none.ok());
  CHECK_FALSE(none.value());
  auto r = parse_agent_readiness(nlohmann::json::parse(R"({"agentReadiness": {"file": "/run/weir/node-ready", "maxAgeSeconds": 7}})"));
  REQUIRE(r.ok());
  REQUIRE(r.value());
  CHECK(r.value()->file == "/run/weir/node-ready");
  CHECK(r.value()->max_age_seconds == 7);
  for (const char* bad : {R"({"agentReadiness": "x"})", R"({"agentReadiness": {"file": "relative"}})",
                          R"({"agentReadiness": {"file": "/x", "maxAgeSeconds": 0}})", R"({"agentReadiness": {"file": "/x", "maxAgeSeconds": "5"}})"}) {
    INFO(bad);
    auto e = parse_agent_readiness(nlohmann::json::parse(bad));
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == code::kInvalidConfig);
  }
  // parse_config reads it, so STATUS sees it.
  auto c = parse_config(R"({"cniVersion": "1.1.0", "name": "n", "type": "weir-cni", "agentReadiness": {"file": "/x"}})");
  REQUIRE(c.ok());
  REQUIRE(c.value().agent_readiness);
  CHECK(c.value().agent_readiness->max_age_seconds == kDefaultReadinessMaxAgeSeconds);
}

TEST_CASE("agentReadiness: STATUS fails with 50 unless the file is fresh and says ready") {
  AgentReadiness r{"/run/weir/node-ready", 10};
  CHECK_FALSE(readiness_problem(r, readiness_document(true, "installed"), 1.0));
  auto check50 = [&](const std::optional<std::string>& text, double age, const std::string& says) {
    auto e = readiness_problem(r, text, age);
    REQUIRE(e);
    CHECK(e->code == code::kPluginNotAvailable);
    CHECK(e->msg.find(says) != std::string::npos);
  };
  check50(std::nullopt, 0, "does not exist");
  check50(readiness_document(true, ""), 11, "stale");
  check50(readiness_document(false, "no primary CNI config in /etc/cni/net.d yet"), 1, "no primary CNI config");
  check50(std::string("garbage"), 1, "not a readiness document");
  CHECK_FALSE(check_agent_ready(std::nullopt));  // no key: no gating
  auto missing = check_agent_ready(AgentReadiness{"/nonexistent/weir-test/ready", 10});
  REQUIRE(missing);
  CHECK(missing->code == code::kPluginNotAvailable);
}
