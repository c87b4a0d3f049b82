#include "cni/node/agent.h"

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <thread>

#include "cni/agent_readiness.h"
#include "cni/node/http_server.h"
#include "cni/node/node_files.h"

namespace weir::node {
namespace {

using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
using ojson = nlohmann::ordered_json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status make_dirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      cur = path.substr(0, i);
      if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return system_error(ErrorKind::Io, "create " + cur, errno);
    }
  }
  return {};
}

// What the HTTP thread and the reconcile thread share with the main loop.
struct Shared {
  std::mutex mu;
  AgentMetrics m;
  std::string not_ready_reason = "starting";
  bool reconcile_ok = false;
};

class Agent {
 public:
  Agent(const AgentOptions& o, AgentDeps& d, ojson entry, cni::PluginConfig entry_config)
      : o_(o), d_(d), entry_(std::move(entry)), entry_config_(std::move(entry_config)) {}

  Status run();

 private:
  void log(LogLevel l, const std::string& m) {
    if (d_.log) d_.log(l, m);
  }
  void install_pass(bool first, const std::string& why);
  void update_readiness();
  void write_readiness(bool ready, const std::string& reason);
  void reconcile_loop();
  void request_reconcile() {
    std::lock_guard<std::mutex> g(rmu_);
    reconcile_requested_ = true;
    rcv_.notify_all();
  }
  void watch_dirs();

  const AgentOptions& o_;
  AgentDeps& d_;
  ojson entry_;
  cni::PluginConfig entry_config_;
  Shared shared_;

  int inotify_ = -1;
  std::map<int, std::string> watches_;  // wd -> dir
  bool installed_once_ = false;
  bool waiting_logged_ = false;
  Clock::time_point waiting_logged_at_{};
  std::string last_error_;
  Clock::time_point last_error_at_{};
  std::string config_file_;
  InstalledBinaries binaries_;

  std::mutex rmu_;
  std::condition_variable rcv_;
  bool reconcile_requested_ = true;  // on start
  bool stopping_ = false;
};

void Agent::watch_dirs() {
  std::vector<std::string> dirs = o_.node.cni_bin_dirs;
  dirs.insert(dirs.begin(), o_.node.cni_conf_dir);
  for (const auto& dir : dirs) {
    bool watched = false;
    for (const auto& [wd, d] : watches_) watched = watched || d == dir;
    if (watched) continue;
    int wd = ::inotify_add_watch(inotify_, dir.c_str(),
                                 IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_ONLYDIR);
    if (wd >= 0) watches_[wd] = dir;
  }
}

void Agent::write_readiness(bool ready, const std::string& reason) {
  const std::string path = readiness_file(o_.node);
  size_t slash = path.rfind('/');
  Status s = write_file_atomic(path.substr(0, slash), path.substr(slash + 1), cni::readiness_document(ready, reason));
  if (!s.ok()) log(LogLevel::Warn, "readiness file: " + s.error().message);
}

void Agent::update_readiness() {
  bool ready;
  std::string reason;
  const bool binaries = binaries_intact(o_.node, &binaries_);
  {
    std::lock_guard<std::mutex> g(shared_.mu);
    if (!shared_.m.installed) reason = shared_.not_ready_reason;
    else if (!binaries) reason = "weir-cni is missing or changed in a CNI bin dir";
    else if (o_.repair != RepairMode::Off && !shared_.reconcile_ok) reason = "the last reconcile of running pods has not succeeded";
    ready = reason.empty();
  }
  // The file first: whoever sees /readyz say ready must find weir-cni STATUS agree.
  write_readiness(ready, ready ? "installed in " + o_.node.cni_conf_dir + "/" + config_file_ : reason);
  std::lock_guard<std::mutex> g(shared_.mu);
  shared_.m.ready = ready;
}

void Agent::install_pass(bool first, const std::string& why) {
  watch_dirs();  // a directory deleted and made again needs a new watch
  auto r = install_once(o_.node, entry_, &binaries_);
  const auto now = Clock::now();
  if (!r.ok()) {
    const std::string msg = r.error().message;
    if (msg != last_error_ || now - last_error_at_ > ms(o_.waiting_log_interval_ms)) {
      log(LogLevel::Error, "install: " + msg + " (retrying)");
      last_error_ = msg;
      last_error_at_ = now;
    }
    std::lock_guard<std::mutex> g(shared_.mu);
    shared_.m.installed = false;
    shared_.not_ready_reason = "install failed: " + msg;
    return;
  }
  last_error_.clear();
  for (const auto& s : r->skipped) log(LogLevel::Warn, "skipping config " + s);
  if (r->waiting) {
    if (!waiting_logged_ || now - waiting_logged_at_ > ms(o_.waiting_log_interval_ms)) {
      log(LogLevel::Warn, "no primary CNI config in " + o_.node.cni_conf_dir +
                              " yet; waiting for the node's network plugin to write one (weir never writes a standalone config)");
      waiting_logged_ = true;
      waiting_logged_at_ = now;
    }
    std::lock_guard<std::mutex> g(shared_.mu);
    shared_.m.installed = false;
    shared_.not_ready_reason = "no primary CNI config in " + o_.node.cni_conf_dir + " yet";
    return;
  }
  waiting_logged_ = false;
  config_file_ = r->config_file;
  const bool repair = installed_once_ && !r->changes.empty();
  for (const auto& c : r->changes) log(LogLevel::Info, std::string(repair ? "repair" : "install") + " (" + why + "): " + c);
  if (!installed_once_) log(LogLevel::Info, "installed: primary " + r->primary + ", weir's entry in " + r->config_file);
  installed_once_ = true;
  {
    std::lock_guard<std::mutex> g(shared_.mu);
    shared_.m.installed = true;
    if (repair) shared_.m.config_repairs += static_cast<long long>(r->changes.size());
  }
  if (first || !r->changes.empty()) request_reconcile();
}

void Agent::reconcile_loop() {
  auto next = Clock::now();
  for (;;) {
    {
      std::unique_lock<std::mutex> l(rmu_);
      rcv_.wait_until(l, next, [&] { return stopping_ || reconcile_requested_; });
      if (stopping_) return;
      reconcile_requested_ = false;
    }
    bool installed;
    {
      std::lock_guard<std::mutex> g(shared_.mu);
      installed = shared_.m.installed;
    }
    if (!installed && o_.repair != RepairMode::Off) {
      // Nothing to decide against until the entry is in place; install_pass asks again.
      next = Clock::now() + ms(o_.reconcile_interval_ms);
      continue;
    }
    if (o_.repair == RepairMode::Off || !d_.runtime || !d_.capture) {
      std::lock_guard<std::mutex> g(shared_.mu);
      shared_.reconcile_ok = true;
      next = Clock::now() + ms(o_.reconcile_interval_ms);
      continue;
    }
    auto r = reconcile_pass(*d_.runtime, *d_.capture, entry_config_, o_.repair, [&](const ReconcileEvent& e) {
      log(e.level == ReconcileEvent::Level::Info ? LogLevel::Info : e.level == ReconcileEvent::Level::Warn ? LogLevel::Warn : LogLevel::Error,
          "reconcile: " + e.message);
    });
    if (!r.ok()) {
      log(LogLevel::Warn, "reconcile: the runtime is not answering (" + r.error().message + "); retrying in " +
                              std::to_string(o_.retry_interval_ms) + " ms");
      std::lock_guard<std::mutex> g(shared_.mu);
      shared_.reconcile_ok = false;
      ++shared_.m.reconcile_errors;
      next = Clock::now() + ms(o_.retry_interval_ms);
      continue;
    }
    log(LogLevel::Info, std::string("reconcile (--repair ") + to_string(o_.repair) + "): " + r->to_line());
    {
      std::lock_guard<std::mutex> g(shared_.mu);
      shared_.reconcile_ok = true;
      ++shared_.m.reconcile_passes;
      shared_.m.pods_repaired_total += r->repaired;
      shared_.m.pod_failures_total += r->failed;
      shared_.m.last = r.value();
    }
    ojson st = {{"time", static_cast<long long>(::time(nullptr))}, {"repair", to_string(o_.repair)}, {"pods", r->seen},
                {"captured", r->captured}, {"repaired", r->repaired}, {"needsRepair", r->needs_repair}, {"skipped", r->skipped},
                {"failed", r->failed}, {"gone", r->gone}, {"durationMs", r->duration_ms}};
    const std::string path = reconcile_state_file(o_.node);
    (void)write_file_atomic(o_.node.state_dir, path.substr(path.rfind('/') + 1), st.dump() + "\n");
    next = Clock::now() + ms(o_.reconcile_interval_ms);
  }
}

Status Agent::run() {
  if (Status s = make_dirs(o_.node.state_dir); !s.ok()) return s.error().wrap("--state-dir");
  write_readiness(false, "starting");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) return system_error(ErrorKind::Internal, "signalfd", errno);
  inotify_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_ < 0) {
    ::close(sfd);
    return system_error(ErrorKind::Internal, "inotify_init1", errno);
  }
  struct Closer {
    int a, b;
    ~Closer() {
      ::close(a);
      ::close(b);
    }
  } closer{sfd, inotify_};

  std::unique_ptr<HttpServer> http;
  if (!o_.listen.empty()) {
    HttpHandlers h;
    h.readyz = [this]() -> std::pair<int, std::string> {
      std::lock_guard<std::mutex> g(shared_.mu);
      if (shared_.m.ready) return {200, "ready\n"};
      return {503, "not ready\n"};
    };
    h.metrics = [this] {
      std::lock_guard<std::mutex> g(shared_.mu);
      return prometheus_text(shared_.m);
    };
    auto s = HttpServer::start(o_.listen, std::move(h));
    if (!s.ok()) return s.error();
    http = std::move(s.value());
    log(LogLevel::Info, "serving /readyz and /metrics on " + o_.listen);
  }

  watch_dirs();
  install_pass(true, "start");
  update_readiness();
  std::thread reconciler([this] { reconcile_loop(); });

  auto next_heartbeat = Clock::now() + ms(o_.heartbeat_interval_ms);
  auto next_sweep = Clock::now() + ms(5000);  // a safety net should inotify miss anything
  for (;;) {
    auto now = Clock::now();
    auto wake = std::min(next_heartbeat, next_sweep);
    int timeout = static_cast<int>(std::max<long long>(0, std::chrono::duration_cast<ms>(wake - now).count()));
    pollfd fds[2] = {{sfd, POLLIN, 0}, {inotify_, POLLIN, 0}};
    int n = ::poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) {
      log(LogLevel::Error, std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo si{};
      (void)!::read(sfd, &si, sizeof si);
      log(LogLevel::Info, std::string("received ") + (si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT") + "; stopping");
      break;
    }
    std::string why;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      alignas(inotify_event) char buf[16384];
      for (;;) {
        ssize_t len = ::read(inotify_, buf, sizeof buf);
        if (len <= 0) break;
        for (char* p = buf; p < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          p += sizeof(inotify_event) + ev->len;
          std::string name = ev->len ? ev->name : "";
          if (ev->mask & IN_Q_OVERFLOW) why = "event queue overflow";
          if (ev->mask & IN_IGNORED) {
            watches_.erase(ev->wd);
            why = "a watched directory went away";
            continue;
          }
          if (name.rfind(".weir-tmp-", 0) == 0) continue;  // our own temporary files
          auto dir = watches_.count(ev->wd) ? watches_[ev->wd] : "";
          if (ends_with(name, ".cilium_bak") && (ev->mask & (IN_MOVED_TO | IN_CREATE))) {
            log(LogLevel::Error, "another agent moved " + dir + "/" + name.substr(0, name.size() - 11) +
                                     " aside: this is Cilium's exclusive mode, which removes every other CNI config; "
                                     "install Cilium with --set cni.exclusive=false so weir's entry can stay");
          } else if (o_.node.mode == ConflistMode::Own && name == kOwnFileName && (ev->mask & (IN_DELETE | IN_MOVED_FROM))) {
            log(LogLevel::Error, "another agent deleted " + dir + "/" + name +
                                     ": if the primary is Cilium, its exclusive mode does this; install Cilium with --set cni.exclusive=false");
          }
          if (why.empty()) why = (name.empty() ? dir : dir + "/" + name) + " changed";
        }
      }
    }
    now = Clock::now();
    if (now >= next_sweep) {
      next_sweep = now + ms(5000);
      watch_dirs();
      if (why.empty()) why = "periodic check";
    }
    if (!why.empty()) {
      install_pass(false, why);
      update_readiness();
      next_heartbeat = Clock::now() + ms(o_.heartbeat_interval_ms);
    } else if (now >= next_heartbeat) {
      update_readiness();
      next_heartbeat = now + ms(o_.heartbeat_interval_ms);
    }
  }

  {
    std::lock_guard<std::mutex> g(rmu_);
    stopping_ = true;
    rcv_.notify_all();
  }
  reconciler.join();
  if (http) http->stop();
  if (o_.keep_on_exit) {
    write_readiness(false, "weir-node stopped (--keep-on-exit: entry and binary left in place)");
    log(LogLevel::Info, "--keep-on-exit: leaving weir's entry and binary in place");
    return {};
  }
  auto u = uninstall(o_.node);
  if (!u.ok()) {
    write_readiness(false, "weir-node stopped; uninstall failed");
    return u.error().wrap("uninstall");
  }
  for (const auto& c : u->changes) log(LogLevel::Info, "uninstall: " + c);
  if (!u->kept_binary_for.empty()) {
    std::string names;
    for (const auto& n : u->kept_binary_for) names += (names.empty() ? "" : ", ") + n;
    log(LogLevel::Warn, "uninstall: kept weir-cni in the bin dirs: still named by " + names);
  }
  ::unlink(readiness_file(o_.node).c_str());
  return {};
}

}  // namespace

std::string prometheus_text(const AgentMetrics& m) {
  std::string t;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& samples) {
    t += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + samples;
  };
  auto one = [](const char* name, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return std::string(name) + " " + buf + "\n";
  };
  metric("weir_node_ready", "gauge", "1 when weir-cni is installed and the last reconcile succeeded.", one("weir_node_ready", m.ready));
  metric("weir_node_installed", "gauge", "1 when weir's entry is in the runtime's CNI config.", one("weir_node_installed", m.installed));
  metric("weir_node_config_repairs_total", "counter", "Changes made to put weir's entry or binary back.",
         one("weir_node_config_repairs_total", static_cast<double>(m.config_repairs)));
  metric("weir_node_reconcile_passes_total", "counter", "Completed reconcile passes.",
         one("weir_node_reconcile_passes_total", static_cast<double>(m.reconcile_passes)));
  metric("weir_node_reconcile_errors_total", "counter", "Reconcile passes that could not ask the runtime.",
         one("weir_node_reconcile_errors_total", static_cast<double>(m.reconcile_errors)));
  std::string pods;
  for (auto [state, v] : std::initializer_list<std::pair<const char*, int>>{{"seen", m.last.seen},
                                                                             {"captured", m.last.captured},
                                                                             {"skipped", m.last.skipped},
                                                                             {"needs_repair", m.last.needs_repair},
                                                                             {"failed", m.last.failed}}) {
    pods += std::string("weir_node_pods{state=\"") + state + "\"} " + std::to_string(v) + "\n";
  }
  metric("weir_node_pods", "gauge", "Pods by state in the last reconcile pass.", pods);
  metric("weir_node_pods_repaired_total", "counter", "Pods whose capture a reconcile pass applied in place.",
         one("weir_node_pods_repaired_total", static_cast<double>(m.pods_repaired_total)));
  metric("weir_node_pod_failures_total", "counter", "Pods a reconcile pass could not decide, check or repair.",
         one("weir_node_pod_failures_total", static_cast<double>(m.pod_failures_total)));
  metric("weir_node_reconcile_duration_seconds", "gauge", "Duration of the last reconcile pass.",
         one("weir_node_reconcile_duration_seconds", m.last.duration_ms / 1000.0));
  return t;
}

Status run_agent(const AgentOptions& o, AgentDeps& deps) {
  auto entry = weir_entry(o.node);
  if (!entry.ok()) return entry.error();
  ojson probe = entry.value();
  probe["cniVersion"] = "1.0.0";
  probe["name"] = "weir-node";
  auto config = cni::parse_config(probe.dump());
  if (!config.ok()) return Error{ErrorKind::InvalidSpec, "weir's entry: " + config.error().msg, 0};
  Agent a(o, deps, std::move(entry.value()), std::move(config.value()));
  return a.run();
}

}  // namespace weir::node
