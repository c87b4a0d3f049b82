// Logging set-up shared by the front ends (weir-cni, weir-init, weir): one
// list of level names, one place that builds the spdlog logger. Built twice
// (see CMakeLists.txt): against the compiled spdlog for weir and weir-init,
// header-only for weir-cni, whose start-up time is its cost per pod.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace weir {

// The level names weir documents, in order. Inline, with no spdlog in sight,
// so that parsers (weir_cni_core's config) can check a name without logging.
inline const std::vector<std::string>& log_levels() {
  static const std::vector<std::string> kLevels{"trace", "debug", "info", "warn", "error", "off"};
  return kLevels;
}
// "trace, debug, info, warn, error, off", for messages and --help.
inline const std::string& log_levels_text() {
  static const std::string kText = [] {
    std::string s;
    for (const auto& l : log_levels()) s += (s.empty() ? "" : ", ") + l;
    return s;
  }();
  return kText;
}
// One of log_levels().
inline bool is_log_level(std::string_view level) {
  for (const auto& l : log_levels()) {
    if (level == l) return true;
  }
  return false;
}
// is_log_level(), or one of spdlog's other spellings that Istio's and
// Linkerd's command lines pass ("warning", "critical").
inline bool is_spdlog_level(std::string_view level) {
  return is_log_level(level) || level == "warning" || level == "critical";
}

struct LogSetup {
  std::string program;     // the logger's name: "weir-cni", "weir-init", "weir"
  std::string level = "info";  // is_log_level(), or spdlog's own "warning"/"critical"; anything else reads as info
  std::string pattern;     // spdlog pattern of a text line
  bool utc = true;         // times in the pattern in UTC (node logs compare; no /etc/localtime read)
  bool json = false;       // one JSON object per line instead: {"time","level","msg"}
  // Log to this file (appended, created mode 0600) instead of stderr. Opened
  // without blocking, and used only when it is a regular file: a FIFO or a
  // device is refused, and logging goes to stderr.
  std::string file;
};

// Replaces spdlog's default logger (whose stdout sink would mix logs into a
// front end's output). Returns "" or why `file` is not used (the caller logs
// it as a warning and goes on: a log file never fails the command).
std::string setup_logging(const LogSetup& setup);

// One error line in the JSON format of `json` loggers, for errors written
// directly (at any log level): {"time":..,"level":"error","msg":..}.
std::string json_error_line(std::string_view message);

}  // namespace weir
