// weir-cni: the CNI chained plugin. Reads the CNI_* environment and stdin,
// runs the command (handlers.h), logs, and prints exactly one JSON document
// on stdout. Logs go to stderr or logFile.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

#include "cni/handlers.h"
#include "cni/result_document.h"
#include "frontend/logging.h"

namespace {

// UTC: no /etc/localtime to read on every invocation, and node logs compare.
void setup_logging(const std::string& level, const std::string& file) {
  const std::string problem = weir::setup_logging(
      {.program = "weir-cni", .level = level, .pattern = "%Y-%m-%dT%H:%M:%S.%eZ %L weir-cni[%P] %v", .file = file});
  if (!problem.empty()) spdlog::warn("logFile: {}; logging to stderr", problem);
}

// Reads stdin up to one byte past `limit`, so the parser can refuse a config
// that is too large without reading all of it.
std::string read_stdin(size_t limit) {
  std::string text;
  char buf[65536];
  while (text.size() <= limit) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

void write_stdout(const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return spdlog::error("write result: {}", std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

int main() {
  using namespace weir::cni;
  // Log times are UTC, yet glibc's first gmtime_r loads the local zone
  // (/etc/localtime: 7 syscalls) unless TZ names one. "UTC0" is parsed, not
  // read (one failed open of /usr/share/zoneinfo/UTC0). weir-cni uses no
  // local time and starts no process that would inherit it.
  ::setenv("TZ", "UTC0", 1);
  setup_logging("info", "");  // spdlog's default logger writes to stdout, which belongs to the result
  const CniEnv env = read_env([](const char* name) { return std::getenv(name); });
  CniAnswer answer;
  // The duration logged is weir's own work: it starts once the runtime has
  // written stdin, whose timing is the runtime's.
  auto start = std::chrono::steady_clock::now();
  try {
    const std::string input = read_stdin(max_config_bytes(parse_command(env.command)));
    start = std::chrono::steady_clock::now();
    answer = run_cni(env, input, *make_kernel_ops());
  } catch (const std::exception& e) {  // a bug in weir: bad input is never an exception
    answer.document = error_document(version_of(""), CniError{code::kInternal, "internal error", e.what()});
    answer.ok = false;
  }
  if (!answer.log_file.empty() || answer.log_level != "info") setup_logging(answer.log_level, answer.log_file);
  for (const auto& w : answer.warnings) spdlog::warn("{}", w);
  write_stdout(answer.document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");

  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto& doc = answer.document;
  std::string outcome = answer.ok ? "ok" : "error " + std::to_string(doc.value("code", 0)) + ": " + doc.value("msg", "");
  spdlog::info("{} container={} pod={} netns={} decision={}{} result={} duration={:.2f}ms", or_dash(env.command),
               or_dash(env.container_id), answer.pod.display(), or_dash(env.netns), answer.decision,
               answer.reason.empty() ? "" : " (" + answer.reason + ")", outcome, ms);
  return answer.ok ? 0 : 1;
}
