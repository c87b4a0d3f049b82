// weir-node's readiness, as weir-cni's STATUS reads it. The agent keeps a small
// file fresh in its state dir and writes where it is into weir's entry; when
// the entry names one, STATUS fails (code 50) while the agent is not ready, so
// a runtime that calls STATUS (containerd 2.0+) reports the node's network
// not ready until capture is guaranteed. ADD never reads it: weir-cni stays
// self-contained.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cni/error_codes.h"

namespace weir::cni {

// The entry's key: {"agentReadiness": {"file": PATH, "maxAgeSeconds": N}}.
inline constexpr const char* kAgentReadinessKey = "agentReadiness";
inline constexpr int kDefaultReadinessMaxAgeSeconds = 15;

struct AgentReadiness {
  std::string file;  // absolute path of the readiness file
  int max_age_seconds = kDefaultReadinessMaxAgeSeconds;  // older than this: the agent is gone
};

// The key from a config entry: nullopt when absent or null; code 7 naming the
// key when it is not an object with an absolute "file" and a positive
// integer "maxAgeSeconds" (optional).
CniResult<std::optional<AgentReadiness>> parse_agent_readiness(const nlohmann::json& entry);

// The readiness file's content: {"ready": bool, "reason": "..."}.
std::string readiness_document(bool ready, const std::string& reason);

// Pure: nullopt when `text` (nullopt: no file) says ready and is at most
// max_age_seconds old; otherwise code 50 saying why.
std::optional<CniError> readiness_problem(const AgentReadiness& r, const std::optional<std::string>& text, double age_seconds);

// STATUS's check: nullopt when no readiness is asked for, or the file says
// the agent is ready and is fresh; code 50 otherwise.
std::optional<CniError> check_agent_ready(const std::optional<AgentReadiness>& r);

}  // namespace weir::cni
