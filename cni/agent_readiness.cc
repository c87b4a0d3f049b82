#include "cni/agent_readiness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace weir::cni {
namespace {

CniError invalid(const std::string& msg) { return CniError{code::kInvalidConfig, std::string(kAgentReadinessKey) + ": " + msg, ""}; }

CniError not_ready(const std::string& msg, const std::string& details) {
  return CniError{code::kPluginNotAvailable, "weir-node is not ready: " + msg, details};
}

}  // namespace

CniResult<std::optional<AgentReadiness>> parse_agent_readiness(const nlohmann::json& entry) {
  auto it = entry.find(kAgentReadinessKey);
  if (it == entry.end() || it->is_null()) return std::optional<AgentReadiness>();
  if (!it->is_object()) return invalid("expected an object");
  AgentReadiness r;
  auto f = it->find("file");
  if (f == it->end() || !f->is_string() || f->get<std::string>().empty() || f->get<std::string>()[0] != '/') {
    return invalid("\"file\" must be an absolute path");
  }
  r.file = f->get<std::string>();
  if (auto a = it->find("maxAgeSeconds"); a != it->end() && !a->is_null()) {
    if (!a->is_number_integer() || a->get<long long>() <= 0 || a->get<long long>() > 86400) {
      return invalid("\"maxAgeSeconds\" must be an integer from 1 to 86400");
    }
    r.max_age_seconds = a->get<int>();
  }
  return std::optional<AgentReadiness>(std::move(r));
}

std::string readiness_document(bool ready, const std::string& reason) {
  return nlohmann::json{{"ready", ready}, {"reason", reason}}.dump() + "\n";
}

std::optional<CniError> readiness_problem(const AgentReadiness& r, const std::optional<std::string>& text, double age_seconds) {
  const std::string hint = "the entry's agentReadiness names " + r.file + "; is weir-node running on this node?";
  if (!text) return not_ready(r.file + " does not exist", hint);
  if (age_seconds > r.max_age_seconds) {
    return not_ready(r.file + " is stale (" + std::to_string(static_cast<long long>(age_seconds)) + " s old, at most " +
                         std::to_string(r.max_age_seconds) + " s)", hint);
  }
  try {
    auto doc = nlohmann::json::parse(*text);
    if (doc.is_object() && doc.value("ready", false)) return std::nullopt;
    std::string reason = doc.is_object() && doc.contains("reason") && doc["reason"].is_string() ? doc["reason"].get<std::string>() : "";
    return not_ready(reason.empty() ? "it says so" : reason, r.file);
  } catch (const nlohmann::json::exception&) {
    return not_ready(r.file + " is not a readiness document", hint);
  }
}

std::optional<CniError> check_agent_ready(const std::optional<AgentReadiness>& r) {
  if (!r) return std::nullopt;
  int fd = ::open(r->file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return readiness_problem(*r, std::nullopt, 0);
    return not_ready("open " + r->file + ": " + std::strerror(errno), "");
  }
  struct stat st{};
  std::string text;
  char buf[4096];
  ssize_t n = 0;
  if (::fstat(fd, &st) == 0) {
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < 65536) text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const double age = static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) + (now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
  return readiness_problem(*r, text, age < 0 ? 0 : age);
}

}  // namespace weir::cni
