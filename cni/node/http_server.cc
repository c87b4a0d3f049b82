#include "cni/node/http_server.h"

#include <httplib.h>

#include <thread>

namespace weir::node {
namespace {

class HttplibServer : public HttpServer {
 public:
  explicit HttplibServer(HttpHandlers h) : handlers_(std::move(h)) {
    server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      auto [code, body] = handlers_.readyz();
      res.status = code;
      res.set_content(body, "text/plain; charset=utf-8");
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(handlers_.metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  ~HttplibServer() override { stop(); }
  bool bind(const std::string& host, int port) { return server_.bind_to_port(host, port); }
  void serve() {
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  void stop() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  HttpHandlers handlers_;
  httplib::Server server_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, HttpHandlers handlers) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return Error{ErrorKind::InvalidArgument, "--listen \"" + listen + "\": expected host:port", 0};
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port <= 0 || port > 65535) return Error{ErrorKind::InvalidArgument, "--listen \"" + listen + "\": bad port", 0};
  auto s = std::make_unique<HttplibServer>(std::move(handlers));
  if (!s->bind(host, port)) return Error{ErrorKind::Io, "--listen " + listen + ": cannot bind (in use, or not an address of this host)", 0};
  s->serve();
  return std::unique_ptr<HttpServer>(std::move(s));
}

}  // namespace weir::node
