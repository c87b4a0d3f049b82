// A small HTTP server for /readyz and /metrics (cpp-httplib), on its own
// thread. Kept in one unit: the library's header is large to compile.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "rules/error.h"

namespace weir::node {

struct HttpHandlers {
  std::function<std::pair<int, std::string>()> readyz;  // status code, body
  std::function<std::string()> metrics;                 // Prometheus text
};

class HttpServer {
 public:
  // Binds host:port and serves on a thread. InvalidArgument for a malformed
  // address, Io when it cannot be bound.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, HttpHandlers handlers);
  virtual ~HttpServer() = default;
  virtual void stop() = 0;
};

}  // namespace weir::node
