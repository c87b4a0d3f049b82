#include "frontend/logging.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

using namespace weir;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/weir-logging-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    for (const char* name : {"/fifo", "/log", "/dir"}) {
      ::unlink((path + name).c_str());
      ::rmdir((path + name).c_str());
    }
    ::rmdir(path.c_str());
  }
};
}  // namespace

TEST_CASE("logging: the level names") {
  CHECK(log_levels_text() == "trace, debug, info, warn, error, off");
  CHECK(is_log_level("warn"));
  CHECK_FALSE(is_log_level("warning"));
  CHECK(is_spdlog_level("warning"));
  CHECK(is_spdlog_level("critical"));
  CHECK_FALSE(is_spdlog_level("loud"));
}

TEST_CASE("logging: a log file that is not a regular file is refused at once, never waited on") {
  TempDir dir;
  const std::string fifo = dir.path + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // A plain open(O_WRONLY) of a FIFO without a reader would block here forever.
  std::string problem = setup_logging({.program = "test", .pattern = "%v", .file = fifo});
  CHECK(problem.find("FIFO") != std::string::npos);
  REQUIRE(::mkdir((dir.path + "/dir").c_str(), 0700) == 0);
  problem = setup_logging({.program = "test", .pattern = "%v", .file = dir.path + "/dir"});
  CHECK(problem.find("directory") != std::string::npos);
  problem = setup_logging({.program = "test", .pattern = "%v", .file = dir.path + "/no/such/dir/log"});
  CHECK(problem.find("No such file") != std::string::npos);
}

TEST_CASE("logging: a regular log file gets the lines, created 0600") {
  TempDir dir;
  const std::string log = dir.path + "/log";
  CHECK(setup_logging({.program = "test", .level = "debug", .pattern = "%l %v", .file = log}) == "");
  spdlog::debug("one {}", 1);
  spdlog::trace("not this");
  (void)setup_logging({.program = "test", .pattern = "%v"});  // closes the file
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str() == "debug one 1\n");
  struct stat st {};
  REQUIRE(::stat(log.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("logging: JSON error lines escape the message") {
  const std::string line = json_error_line("bad \"x\"\n");
  CHECK(line.find(R"("level":"error","msg":"bad \"x\"\n"})") != std::string::npos);
  CHECK(line.back() == '\n');
}
