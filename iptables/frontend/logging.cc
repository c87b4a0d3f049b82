#include "frontend/logging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace weir {

namespace {

// The text of a JSON string, without its quotes (messages carry quotes:
// "x" is not a port). nlohmann/json does the escaping.
std::string json_escape(std::string_view in) {
  const std::string quoted =
      nlohmann::json(std::string(in)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

// "%*" in a log pattern: the message, escaped for a JSON string.
class JsonMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string e = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(e.data(), e.data() + e.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessage>(); }
};

constexpr const char* kJsonPattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%*"})";

// Writes to a file descriptor this sink owns: the file is opened once, by
// file_sink(), so what was checked is what is written to.
class FdSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  ~FdSink() override { ::close(fd_); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk loses log lines, never the command
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  void flush_() override {}

 private:
  int fd_;
};

// Opens the log file without blocking (a plain open of a FIFO with no reader
// blocks forever; O_NONBLOCK makes it fail or return at once) and keeps it
// only when it is a regular file.
std::shared_ptr<spdlog::sinks::sink> file_sink(const std::string& path, std::string& problem) {
  // Named for what it is when it is there and not a file (open(2) of a FIFO
  // without a reader says only "No such device or address").
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    const char* kind = S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory" : "a device or socket";
    problem = path + " is " + kind + ", not a regular file";
    return nullptr;
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0600);
  if (fd < 0) {
    problem = "open " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {  // swapped in since the stat
    problem = path + " is not a regular file";
    ::close(fd);
    return nullptr;
  }
  return std::make_shared<FdSink>(fd);
}

}  // namespace

std::string setup_logging(const LogSetup& setup) {
  std::string problem;
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (!setup.file.empty()) sink = file_sink(setup.file, problem);
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(setup.program, std::move(sink));
  const auto time_type = setup.utc ? spdlog::pattern_time_type::utc : spdlog::pattern_time_type::local;
  if (setup.json) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(time_type, spdlog::details::os::default_eol);
    formatter->add_flag<JsonMessage>('*').set_pattern(kJsonPattern);
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern(setup.pattern, time_type);
  }
  std::string level = setup.level == "warning" ? "warn" : setup.level;
  if (!is_spdlog_level(level)) level = "info";
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(std::move(logger));
  return problem;
}

std::string json_error_line(std::string_view message) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[40];
  std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%06lldZ", static_cast<long long>(us));
  return std::string(R"({"time":")") + stamp + R"(","level":"error","msg":")" + json_escape(message) + "\"}\n";
}

}  // namespace weir
