// weir-probe: the traffic probe of the netns testbed.
//
//   weir-probe serve --port P [--port P2 ...] [--family 4|6|both] [--transparent]
//                    [--udp] [--uid U --gid G] [--ready-file F] [--max-seconds N]
//   weir-probe connect --to ADDR:PORT|[V6]:PORT [--udp] [--uid U] [--gid G]
//                      [--src ADDR] [--timeout-ms 2000]
//
// `serve` answers every TCP connection (or UDP datagram) with one JSON line
//   {"proto":"tcp","landed":P,"local":"a:p","peer":"a:p","orig_dst":"a:p"|null}
// where orig_dst is what SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (UDP: the
// IP_RECVORIGDSTADDR ancillary data) reports when it differs from the local
// address, i.e. when a REDIRECT sent the connection here. It also prints the
// line on its stdout. `connect` prints the server's line, or {"error":...}
// and exits 1. Plain sockets only, so the probe tests weir without using it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;

// A socket closed when it goes out of scope.
class Sock {
 public:
  explicit Sock(int fd = -1) : fd_(fd) {}
  Sock(Sock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Sock& operator=(Sock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  ~Sock() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Thrown inside the probe only; main turns it into {"error":...} / exit 1.
struct ProbeError {
  std::string message;
};

[[noreturn]] void fail(const std::string& what) {
  throw ProbeError{what + ": " + std::strerror(errno)};
}

std::string addr_to_string(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

// Parses "1.2.3.4:80", "[fd00::1]:80" or, with want_port=false, a bare address.
std::optional<sockaddr_storage> parse_addr(const std::string& text, bool want_port) {
  sockaddr_storage ss{};
  std::string host = text, port;
  if (want_port) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned long p = 0;
  if (want_port) {
    char* end = nullptr;
    p = std::strtoul(port.c_str(), &end, 10);
    if (port.empty() || *end || p > 65535) return std::nullopt;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(p));
  } else if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(p));
  } else {
    return std::nullopt;
  }
  return ss;
}

socklen_t addr_len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

bool same_addr(const sockaddr_storage& a, const sockaddr_storage& b) {
  return addr_to_string(a) == addr_to_string(b);
}

void drop_privileges(std::optional<uint32_t> uid, std::optional<uint32_t> gid) {
  // Supplementary groups go first: root's would otherwise stay and match
  // --gid-owner rules the test does not mean to hit.
  if (uid || gid) {
    if (setgroups(0, nullptr) != 0) fail("setgroups");
  }
  if (gid && setgid(*gid) != 0) fail("setgid " + std::to_string(*gid));
  if (uid && setuid(*uid) != 0) fail("setuid " + std::to_string(*uid));
}

std::string orig_dst_of_tcp(int fd, const sockaddr_storage& local) {
  sockaddr_storage orig{};
  socklen_t len = sizeof orig;
  int rc = local.ss_family == AF_INET
               ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &len)
               : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &len);
  // ENOENT: no conntrack entry, so nothing rewrote the destination.
  if (rc != 0 || same_addr(orig, local)) return {};
  return addr_to_string(orig);
}

json report(const char* proto, uint16_t landed, const sockaddr_storage& local, const sockaddr_storage& peer,
            const std::string& orig_dst) {
  return json{{"proto", proto},
              {"landed", landed},
              {"local", addr_to_string(local)},
              {"peer", addr_to_string(peer)},
              {"orig_dst", orig_dst.empty() ? json(nullptr) : json(orig_dst)}};
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the peer went away; nothing useful to do
    off += static_cast<size_t>(n);
  }
}

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------- serve

struct Listener {
  Sock sock;
  uint16_t port;
  int family;
};

struct ServeOptions {
  std::vector<uint16_t> ports;
  std::string family = "both";
  bool transparent = false;
  bool udp = false;
  std::optional<uint32_t> uid, gid;
  std::string ready_file;
  int max_seconds = 300;
};

Listener open_listener(const ServeOptions& o, int family, uint16_t port) {
  Sock s(socket(family, (o.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (s.get() < 0) fail("socket");
  int one = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    if (o.transparent && setsockopt(s.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof one) != 0)
      fail("IP_TRANSPARENT");
    if (o.udp) {
      setsockopt(s.get(), SOL_IP, IP_PKTINFO, &one, sizeof one);
      setsockopt(s.get(), SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof one);
    }
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_any;
    // A separate IPv6 socket: mapped addresses would hide which family landed.
    if (setsockopt(s.get(), SOL_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) fail("IPV6_V6ONLY");
    if (o.transparent && setsockopt(s.get(), SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one) != 0)
      fail("IPV6_TRANSPARENT");
    if (o.udp) {
      setsockopt(s.get(), SOL_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
      setsockopt(s.get(), SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof one);
    }
  }
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&ss), addr_len(ss)) != 0)
    fail("bind " + addr_to_string(ss) + (o.udp ? "/udp" : "/tcp"));
  if (!o.udp && listen(s.get(), 128) != 0) fail("listen " + addr_to_string(ss));
  return Listener{std::move(s), port, family};
}

void answer_tcp(const Listener& l) {
  sockaddr_storage peer{}, local{};
  socklen_t plen = sizeof peer, llen = sizeof local;
  Sock c(accept4(l.sock.get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC));
  if (c.get() < 0) return;  // the client gave up already
  getsockname(c.get(), reinterpret_cast<sockaddr*>(&local), &llen);
  std::string line = report("tcp", l.port, local, peer, orig_dst_of_tcp(c.get(), local)).dump() + "\n";
  write_all(c.get(), line);
  write_all(STDOUT_FILENO, line);
}

void answer_udp(const Listener& l) {
  char buf[2048];
  char cbuf[512];
  sockaddr_storage peer{}, local{}, orig{};
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_name = &peer;
  msg.msg_namelen = sizeof peer;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  if (recvmsg(l.sock.get(), &msg, 0) < 0) return;

  // The local address the datagram reached: the reply leaves from it, so
  // conntrack can undo a REDIRECT on the way back.
  local.ss_family = static_cast<sa_family_t>(l.family);
  in_pktinfo pi4{};
  in6_pktinfo pi6{};
  bool have_pi = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_PKTINFO) {
      std::memcpy(&pi4, CMSG_DATA(c), sizeof pi4);
      auto* a = reinterpret_cast<sockaddr_in*>(&local);
      a->sin_addr = pi4.ipi_addr;
      a->sin_port = htons(l.port);
      have_pi = true;
    } else if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      std::memcpy(&pi6, CMSG_DATA(c), sizeof pi6);
      auto* a = reinterpret_cast<sockaddr_in6*>(&local);
      a->sin6_addr = pi6.ipi6_addr;
      a->sin6_port = htons(l.port);
      have_pi = true;
    } else if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
               (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
      std::memcpy(&orig, CMSG_DATA(c), std::min<size_t>(c->cmsg_len - CMSG_LEN(0), sizeof orig));
    }
  }
  std::string orig_dst;
  if (orig.ss_family != 0 && !same_addr(orig, local)) orig_dst = addr_to_string(orig);
  std::string line = report("udp", l.port, local, peer, orig_dst).dump() + "\n";

  iovec out{line.data(), line.size()};
  msghdr reply{};
  char obuf[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  reply.msg_name = &peer;
  reply.msg_namelen = msg.msg_namelen;
  reply.msg_iov = &out;
  reply.msg_iovlen = 1;
  if (have_pi) {
    reply.msg_control = obuf;
    cmsghdr* c = nullptr;
    if (l.family == AF_INET) {
      reply.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      c = CMSG_FIRSTHDR(&reply);
      c->cmsg_level = SOL_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo src{};
      src.ipi_spec_dst = pi4.ipi_addr;
      std::memcpy(CMSG_DATA(c), &src, sizeof src);
    } else {
      reply.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      c = CMSG_FIRSTHDR(&reply);
      c->cmsg_level = SOL_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo src{};
      src.ipi6_addr = pi6.ipi6_addr;
      std::memcpy(CMSG_DATA(c), &src, sizeof src);
    }
  }
  sendmsg(l.sock.get(), &reply, 0);
  write_all(STDOUT_FILENO, line);
}

void write_ready_file(const std::string& path) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) fail("create ready file " + tmp);
  std::fprintf(f, "%d\n", getpid());
  std::fclose(f);
  // Renamed into place so a waiting test never reads a half-written file.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("rename ready file to " + path);
}

int serve(const ServeOptions& o) {
  // A safety limit: a probe a test forgot still goes away.
  alarm(static_cast<unsigned>(o.max_seconds));
  std::vector<Listener> ls;
  for (uint16_t p : o.ports) {
    if (o.family == "4" || o.family == "both") ls.push_back(open_listener(o, AF_INET, p));
    if (o.family == "6" || o.family == "both") ls.push_back(open_listener(o, AF_INET6, p));
  }
  if (!o.ready_file.empty()) write_ready_file(o.ready_file);
  drop_privileges(o.uid, o.gid);

  std::vector<pollfd> fds;
  for (auto& l : ls) fds.push_back(pollfd{l.sock.get(), POLLIN, 0});
  for (;;) {
    int n = poll(fds.data(), fds.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("poll");
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      if (o.udp)
        answer_udp(ls[i]);
      else
        answer_tcp(ls[i]);
    }
  }
}

// ---------------------------------------------------------------- connect

struct ConnectOptions {
  std::string to;
  bool udp = false;
  std::optional<uint32_t> uid, gid;
  std::string src;
  int timeout_ms = 2000;
};

// Waits until fd is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, int64_t deadline) {
  for (;;) {
    int left = static_cast<int>(deadline - now_ms());
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("poll");
    return n > 0;
  }
}

int connect_cmd(const ConnectOptions& o) {
  auto to = parse_addr(o.to, true);
  if (!to) throw ProbeError{"--to " + o.to + ": not ADDR:PORT or [V6ADDR]:PORT"};
  drop_privileges(o.uid, o.gid);
  int64_t deadline = now_ms() + o.timeout_ms;

  Sock s(socket(to->ss_family, (o.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (s.get() < 0) fail("socket");
  if (!o.src.empty()) {
    auto src = parse_addr(o.src, false);
    if (!src || src->ss_family != to->ss_family) throw ProbeError{"--src " + o.src + ": not an address of the target's family"};
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&*src), addr_len(*src)) != 0) fail("bind " + o.src);
  }
  std::string where = addr_to_string(*to);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&*to), addr_len(*to)) != 0 && errno != EINPROGRESS)
    fail("connect " + where);
  if (!o.udp) {
    if (!wait_for(s.get(), POLLOUT, deadline)) throw ProbeError{"connect " + where + ": timed out"};
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      errno = err;
      fail("connect " + where);
    }
  } else {
    const char ping[] = "weir-probe\n";
    if (send(s.get(), ping, sizeof ping - 1, 0) < 0) fail("send to " + where);
  }

  std::string line;
  char buf[1024];
  while (line.find('\n') == std::string::npos) {
    if (!wait_for(s.get(), POLLIN, deadline)) throw ProbeError{"reply from " + where + ": timed out"};
    ssize_t n = recv(s.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail("reply from " + where);
    if (n == 0) throw ProbeError{"reply from " + where + ": connection closed without a reply"};
    line.append(buf, static_cast<size_t>(n));
  }
  line.resize(line.find('\n') + 1);
  write_all(STDOUT_FILENO, line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"weir-probe: traffic probe for weir's network-namespace tests"};
  app.require_subcommand(1);

  ServeOptions so;
  auto* serve_cmd = app.add_subcommand("serve", "listen and report where each connection landed");
  serve_cmd->add_option("--port", so.ports, "port to listen on (repeatable)")->required();
  serve_cmd->add_option("--family", so.family, "4, 6 or both")->check(CLI::IsMember({"4", "6", "both"}));
  serve_cmd->add_flag("--transparent", so.transparent, "set IP_TRANSPARENT/IPV6_TRANSPARENT (TPROXY)");
  serve_cmd->add_flag("--udp", so.udp, "UDP instead of TCP");
  serve_cmd->add_option("--uid", so.uid, "run as this uid after binding");
  serve_cmd->add_option("--gid", so.gid, "run as this gid after binding");
  serve_cmd->add_option("--ready-file", so.ready_file, "written once every socket listens");
  serve_cmd->add_option("--max-seconds", so.max_seconds, "exit after this long (safety limit)")
      ->check(CLI::Range(1, 86400));

  ConnectOptions co;
  auto* connect_sub = app.add_subcommand("connect", "connect and print the server's report");
  connect_sub->add_option("--to", co.to, "ADDR:PORT or [V6ADDR]:PORT")->required();
  connect_sub->add_flag("--udp", co.udp, "send a UDP datagram instead");
  connect_sub->add_option("--uid", co.uid, "connect as this uid");
  connect_sub->add_option("--gid", co.gid, "connect as this gid");
  connect_sub->add_option("--src", co.src, "bind to this source address");
  connect_sub->add_option("--timeout-ms", co.timeout_ms, "give up after this long")->check(CLI::Range(1, 600000));

  CLI11_PARSE(app, argc, argv);

  signal(SIGPIPE, SIG_IGN);
  try {
    if (serve_cmd->parsed()) {
      // Dies with the test that started it, even when that test is killed.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      return serve(so);
    }
    return connect_cmd(co);
  } catch (const ProbeError& e) {
    write_all(STDOUT_FILENO, json{{"error", e.message}}.dump() + "\n");
    return 1;
  }
}
