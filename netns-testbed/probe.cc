// weir-probe: the traffic probe of the netns testbed.
//
//   weir-probe serve --port P [--port P2 ...] [--family 4|6|both] [--transparent]
//                    [--udp] [--uid U --gid G] [--ready-file F] [--max-seconds N]
//   weir-probe connect --to ADDR:PORT|[V6]:PORT [--udp] [--uid U] [--gid G]
//                      [--src ADDR] [--timeout-ms 2000]
//   weir-probe dns-serve --port P [...] [--answer ADDR ...] [--upstream ADDR:PORT]
//   weir-probe dns-query --server ADDR:PORT [--name N] [--type A|AAAA|TXT] [--tcp]
//                        [--uid U] [--gid G] [--src ADDR] [--timeout-ms 2000]
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
#include <linux/capability.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
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

void set_capabilities(std::initializer_list<int> caps) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int c : caps) {
    data[c / 32].effective |= 1u << (c % 32);
    data[c / 32].permitted |= 1u << (c % 32);
  }
  if (syscall(SYS_capset, &hdr, data) != 0) fail("capset");
}

// A server becomes its uid/gid BEFORE opening sockets: a socket carries its
// creator's credentials, and that is what `-m owner` matches (a UDP reply sent
// on a socket root created would not count as the proxy's). It keeps only what
// binding needs (low ports, IP_TRANSPARENT, the ready file) until
// drop_capabilities().
void become(std::optional<uint32_t> uid, std::optional<uint32_t> gid) {
  if (!uid && !gid) return;
  prctl(PR_SET_KEEPCAPS, 1);
  drop_privileges(uid, gid);
  set_capabilities({CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW, CAP_DAC_OVERRIDE});
}

void drop_capabilities(std::optional<uint32_t> uid, std::optional<uint32_t> gid) {
  if (uid || gid) set_capabilities({});
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
  bool udp = false;
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
  return Listener{std::move(s), port, family, o.udp};
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

// One received datagram with the addresses needed to answer it.
struct Datagram {
  std::string data;
  sockaddr_storage peer{}, local{}, orig{};
  socklen_t peer_len = 0;
  bool have_pktinfo = false;
  in_pktinfo pi4{};
  in6_pktinfo pi6{};

  std::string orig_dst() const {
    if (orig.ss_family == 0 || same_addr(orig, local)) return {};
    return addr_to_string(orig);
  }
};

std::optional<Datagram> recv_datagram(const Listener& l) {
  Datagram d;
  char buf[4096];
  char cbuf[512];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_name = &d.peer;
  msg.msg_namelen = sizeof d.peer;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n = recvmsg(l.sock.get(), &msg, 0);
  if (n < 0) return std::nullopt;
  d.data.assign(buf, static_cast<size_t>(n));
  d.peer_len = msg.msg_namelen;

  // The local address the datagram reached: the reply leaves from it, so
  // conntrack can undo a REDIRECT on the way back.
  d.local.ss_family = static_cast<sa_family_t>(l.family);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_PKTINFO) {
      std::memcpy(&d.pi4, CMSG_DATA(c), sizeof d.pi4);
      auto* a = reinterpret_cast<sockaddr_in*>(&d.local);
      a->sin_addr = d.pi4.ipi_addr;
      a->sin_port = htons(l.port);
      d.have_pktinfo = true;
    } else if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      std::memcpy(&d.pi6, CMSG_DATA(c), sizeof d.pi6);
      auto* a = reinterpret_cast<sockaddr_in6*>(&d.local);
      a->sin6_addr = d.pi6.ipi6_addr;
      a->sin6_port = htons(l.port);
      d.have_pktinfo = true;
    } else if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
               (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
      std::memcpy(&d.orig, CMSG_DATA(c), std::min<size_t>(c->cmsg_len - CMSG_LEN(0), sizeof d.orig));
    }
  }
  return d;
}

void reply_datagram(const Listener& l, const Datagram& d, const std::string& payload) {
  iovec out{const_cast<char*>(payload.data()), payload.size()};
  msghdr reply{};
  char obuf[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  reply.msg_name = const_cast<sockaddr_storage*>(&d.peer);
  reply.msg_namelen = d.peer_len;
  reply.msg_iov = &out;
  reply.msg_iovlen = 1;
  if (d.have_pktinfo) {
    reply.msg_control = obuf;
    if (l.family == AF_INET) {
      reply.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&reply);
      c->cmsg_level = SOL_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo src{};
      src.ipi_spec_dst = d.pi4.ipi_addr;
      std::memcpy(CMSG_DATA(c), &src, sizeof src);
    } else {
      reply.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&reply);
      c->cmsg_level = SOL_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo src{};
      src.ipi6_addr = d.pi6.ipi6_addr;
      std::memcpy(CMSG_DATA(c), &src, sizeof src);
    }
  }
  sendmsg(l.sock.get(), &reply, 0);
}

void answer_udp(const Listener& l) {
  auto d = recv_datagram(l);
  if (!d) return;
  std::string line = report("udp", l.port, d->local, d->peer, d->orig_dst()).dump() + "\n";
  reply_datagram(l, *d, line);
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

// The listeners are open: say so (ready file), drop to the UID/GID, then
// answer each connection or datagram with `answer` until the alarm ends it.
[[noreturn]] void serve_listeners(std::vector<Listener>& ls, const std::string& ready_file,
                                  std::optional<uint32_t> uid, std::optional<uint32_t> gid,
                                  const std::function<void(const Listener&)>& answer) {
  if (!ready_file.empty()) write_ready_file(ready_file);
  drop_capabilities(uid, gid);
  std::vector<pollfd> fds;
  for (auto& l : ls) fds.push_back(pollfd{l.sock.get(), POLLIN, 0});
  for (;;) {
    int n = poll(fds.data(), fds.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("poll");
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents & POLLIN) answer(ls[i]);
    }
  }
}

int serve(const ServeOptions& o) {
  // A safety limit: a probe a test forgot still goes away.
  alarm(static_cast<unsigned>(o.max_seconds));
  become(o.uid, o.gid);
  std::vector<Listener> ls;
  for (uint16_t p : o.ports) {
    if (o.family == "4" || o.family == "both") ls.push_back(open_listener(o, AF_INET, p));
    if (o.family == "6" || o.family == "both") ls.push_back(open_listener(o, AF_INET6, p));
  }
  serve_listeners(ls, o.ready_file, o.uid, o.gid, [&](const Listener& l) {
    if (o.udp)
      answer_udp(l);
    else
      answer_tcp(l);
  });
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

// A socket connected (TCP: established) to `to` before the deadline.
Sock connect_to(const sockaddr_storage& to, bool udp, const std::string& src, int64_t deadline) {
  Sock s(socket(to.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (s.get() < 0) fail("socket");
  if (!src.empty()) {
    auto a = parse_addr(src, false);
    if (!a || a->ss_family != to.ss_family) throw ProbeError{"--src " + src + ": not an address of the target's family"};
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&*a), addr_len(*a)) != 0) fail("bind " + src);
  }
  std::string where = addr_to_string(to);
  if (connect(s.get(), reinterpret_cast<const sockaddr*>(&to), addr_len(to)) != 0 && errno != EINPROGRESS)
    fail("connect " + where);
  if (!udp) {
    if (!wait_for(s.get(), POLLOUT, deadline)) throw ProbeError{"connect " + where + ": timed out"};
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      errno = err;
      fail("connect " + where);
    }
  }
  return s;
}

int connect_cmd(const ConnectOptions& o) {
  auto to = parse_addr(o.to, true);
  if (!to) throw ProbeError{"--to " + o.to + ": not ADDR:PORT or [V6ADDR]:PORT"};
  drop_privileges(o.uid, o.gid);
  int64_t deadline = now_ms() + o.timeout_ms;
  std::string where = addr_to_string(*to);
  Sock s = connect_to(*to, o.udp, o.src, deadline);
  if (o.udp) {
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

// ---------------------------------------------------------------- DNS
//
// A DNS stub for DNS-capture tests: `dns-serve` answers A/AAAA queries with
// fixed addresses plus a TXT record holding its report (so the client learns
// where its query landed), or, with --upstream, forwards each query there and
// relays the reply (the proxy's own DNS, which capture must let through).
// `dns-query` sends one query and prints {"rcode","answers","report"}.

constexpr uint16_t kTypeA = 1, kTypeTxt = 16, kTypeAaaa = 28;

void put16(std::string& m, uint16_t v) {
  m.push_back(static_cast<char>(v >> 8));
  m.push_back(static_cast<char>(v & 0xff));
}

uint16_t get16(const std::string& m, size_t off) {
  return static_cast<uint16_t>((static_cast<uint8_t>(m[off]) << 8) | static_cast<uint8_t>(m[off + 1]));
}

// Skips a (possibly compressed) name; returns the offset after it, 0 if malformed.
size_t skip_name(const std::string& m, size_t off, std::string* text = nullptr) {
  for (int labels = 0; off < m.size() && labels < 128; ++labels) {
    auto len = static_cast<uint8_t>(m[off]);
    if (len == 0) return off + 1;
    if ((len & 0xc0) == 0xc0) return off + 2 <= m.size() ? off + 2 : 0;
    if (off + 1 + len > m.size()) return 0;
    if (text) *text += m.substr(off + 1, len) + ".";
    off += 1 + len;
  }
  return 0;
}

struct DnsQuestion {
  std::string name;  // "x.example."
  uint16_t type = 0;
  size_t end = 0;    // offset just after the question
};

std::optional<DnsQuestion> parse_question(const std::string& m) {
  if (m.size() < 12 || get16(m, 4) < 1) return std::nullopt;
  DnsQuestion q;
  size_t off = skip_name(m, 12, &q.name);
  if (off == 0 || off + 4 > m.size()) return std::nullopt;
  q.type = get16(m, off);
  q.end = off + 4;
  return q;
}

std::string build_query(uint16_t id, const std::string& name, uint16_t type) {
  std::string m;
  put16(m, id);
  put16(m, 0x0100);  // standard query, recursion desired
  put16(m, 1);
  put16(m, 0);
  put16(m, 0);
  put16(m, 0);
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    std::string label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63) throw ProbeError{"--name " + name + ": not a DNS name"};
    m.push_back(static_cast<char>(label.size()));
    m += label;
    start = dot + 1;
  }
  m.push_back(0);
  put16(m, type);
  put16(m, 1);  // IN
  return m;
}

void put_record(std::string& m, uint16_t type, const std::string& rdata) {
  put16(m, 0xc00c);  // the question's name
  put16(m, type);
  put16(m, 1);
  put16(m, 0);  // TTL 0: nothing should cache test answers
  put16(m, 0);
  put16(m, static_cast<uint16_t>(rdata.size()));
  m += rdata;
}

// The reply to `query`: the answers of the question's family, then the TXT report.
std::string build_answer(const std::string& query, const DnsQuestion& q, const std::vector<std::string>& addrs,
                         const std::string& txt, int rcode = 0) {
  std::string records;
  int count = 0;
  for (const auto& a : addrs) {
    in6_addr a6{};
    in_addr a4{};
    if (q.type == kTypeA && inet_pton(AF_INET, a.c_str(), &a4) == 1) {
      put_record(records, kTypeA, std::string(reinterpret_cast<char*>(&a4), 4));
      ++count;
    } else if (q.type == kTypeAaaa && inet_pton(AF_INET6, a.c_str(), &a6) == 1) {
      put_record(records, kTypeAaaa, std::string(reinterpret_cast<char*>(&a6), 16));
      ++count;
    }
  }
  if (!txt.empty()) {
    std::string rdata;
    for (size_t off = 0; off < txt.size(); off += 255) {
      std::string chunk = txt.substr(off, 255);
      rdata.push_back(static_cast<char>(chunk.size()));
      rdata += chunk;
    }
    put_record(records, kTypeTxt, rdata);
    ++count;
  }
  std::string m = query.substr(0, 2);
  put16(m, static_cast<uint16_t>(0x8180 | (rcode & 0xf)));  // response, RD, RA
  put16(m, 1);
  put16(m, static_cast<uint16_t>(count));
  put16(m, 0);
  put16(m, 0);
  m += query.substr(12, q.end - 12);
  return m + records;
}

json parse_reply(const std::string& m) {
  auto q = parse_question(m);
  if (!q || !(static_cast<uint8_t>(m[2]) & 0x80)) throw ProbeError{"reply is not a DNS response"};
  json out{{"rcode", m[3] & 0xf}, {"answers", json::array()}, {"report", nullptr}};
  size_t off = q->end;
  for (uint16_t i = 0, n = get16(m, 6); i < n; ++i) {
    off = skip_name(m, off);
    if (off == 0 || off + 10 > m.size()) throw ProbeError{"truncated DNS answer"};
    uint16_t type = get16(m, off), len = get16(m, off + 8);
    off += 10;
    if (off + len > m.size()) throw ProbeError{"truncated DNS answer"};
    std::string rdata = m.substr(off, len);
    off += len;
    char buf[INET6_ADDRSTRLEN] = {};
    if (type == kTypeA && len == 4) {
      out["answers"].push_back(inet_ntop(AF_INET, rdata.data(), buf, sizeof buf));
    } else if (type == kTypeAaaa && len == 16) {
      out["answers"].push_back(inet_ntop(AF_INET6, rdata.data(), buf, sizeof buf));
    } else if (type == kTypeTxt) {
      std::string txt;
      for (size_t t = 0; t < rdata.size(); t += 1 + static_cast<uint8_t>(rdata[t]))
        txt += rdata.substr(t + 1, static_cast<uint8_t>(rdata[t]));
      out["report"] = json::parse(txt, nullptr, false);
    }
  }
  return out;
}

// Reads exactly n bytes before the deadline.
std::string read_exact(int fd, size_t n, int64_t deadline, const std::string& what) {
  std::string out;
  char buf[4096];
  while (out.size() < n) {
    if (!wait_for(fd, POLLIN, deadline)) throw ProbeError{what + ": timed out"};
    ssize_t r = recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) fail(what);
    if (r == 0) throw ProbeError{what + ": connection closed"};
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// One DNS exchange with `server` over UDP or TCP (length-prefixed).
std::string dns_exchange(const sockaddr_storage& server, const std::string& msg, bool tcp, int timeout_ms,
                         const std::string& src = {}) {
  int64_t deadline = now_ms() + timeout_ms;
  Sock s = connect_to(server, !tcp, src, deadline);
  std::string where = addr_to_string(server) + (tcp ? "/tcp" : "/udp");
  if (tcp) {
    std::string framed;
    put16(framed, static_cast<uint16_t>(msg.size()));
    framed += msg;
    if (send(s.get(), framed.data(), framed.size(), MSG_NOSIGNAL) < 0) fail("send to " + where);
    std::string len = read_exact(s.get(), 2, deadline, "DNS reply from " + where);
    return read_exact(s.get(), get16(len, 0), deadline, "DNS reply from " + where);
  }
  if (send(s.get(), msg.data(), msg.size(), 0) < 0) fail("send to " + where);
  char buf[4096];
  for (;;) {
    if (!wait_for(s.get(), POLLIN, deadline)) throw ProbeError{"DNS reply from " + where + ": timed out"};
    ssize_t n = recv(s.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) fail("DNS reply from " + where);
    return std::string(buf, static_cast<size_t>(n));
  }
}

struct DnsServeOptions {
  std::vector<uint16_t> ports;
  std::string family = "both";
  std::optional<uint32_t> uid, gid;
  std::string ready_file;
  int max_seconds = 300;
  std::vector<std::string> answers{"198.18.7.1", "fd00:198:18:7::1"};
  std::string upstream;  // ADDR:PORT to forward to, instead of answering
  int upstream_timeout_ms = 1000;
};

// The reply to one query, and the report line printed for it.
std::string dns_respond(const DnsServeOptions& o, const std::string& query, json rep, bool tcp) {
  auto q = parse_question(query);
  if (!q) return {};
  rep["qname"] = q->name;
  std::string reply;
  if (!o.upstream.empty()) {
    rep["upstream"] = o.upstream;
    try {
      reply = dns_exchange(*parse_addr(o.upstream, true), query, tcp, o.upstream_timeout_ms);
    } catch (const ProbeError& e) {
      rep["upstream_error"] = e.message;
      reply = build_answer(query, *q, {}, rep.dump(), 2);  // SERVFAIL
    }
  } else {
    reply = build_answer(query, *q, o.answers, rep.dump());
  }
  write_all(STDOUT_FILENO, rep.dump() + "\n");
  return reply;
}

void dns_answer_tcp(const DnsServeOptions& o, const Listener& l) {
  sockaddr_storage peer{}, local{};
  socklen_t plen = sizeof peer, llen = sizeof local;
  Sock c(accept4(l.sock.get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (c.get() < 0) return;
  getsockname(c.get(), reinterpret_cast<sockaddr*>(&local), &llen);
  try {
    int64_t deadline = now_ms() + 1000;
    std::string len = read_exact(c.get(), 2, deadline, "DNS query");
    std::string query = read_exact(c.get(), get16(len, 0), deadline, "DNS query");
    std::string reply =
        dns_respond(o, query, report("tcp", l.port, local, peer, orig_dst_of_tcp(c.get(), local)), true);
    if (reply.empty()) return;
    std::string framed;
    put16(framed, static_cast<uint16_t>(reply.size()));
    write_all(c.get(), framed + reply);
  } catch (const ProbeError&) {
    // A client that sent half a query: drop it, keep serving.
  }
}

void dns_answer_udp(const DnsServeOptions& o, const Listener& l) {
  auto d = recv_datagram(l);
  if (!d) return;
  std::string reply = dns_respond(o, d->data, report("udp", l.port, d->local, d->peer, d->orig_dst()), false);
  if (!reply.empty()) reply_datagram(l, *d, reply);
}

int dns_serve(const DnsServeOptions& o) {
  alarm(static_cast<unsigned>(o.max_seconds));
  if (!o.upstream.empty() && !parse_addr(o.upstream, true))
    throw ProbeError{"--upstream " + o.upstream + ": not ADDR:PORT or [V6ADDR]:PORT"};
  become(o.uid, o.gid);
  std::vector<Listener> ls;
  for (uint16_t p : o.ports) {
    for (int fam : {AF_INET, AF_INET6}) {
      if ((fam == AF_INET && o.family == "6") || (fam == AF_INET6 && o.family == "4")) continue;
      for (bool udp : {true, false}) {
        ServeOptions so;
        so.udp = udp;
        ls.push_back(open_listener(so, fam, p));
        ls.back().udp = udp;
      }
    }
  }
  serve_listeners(ls, o.ready_file, o.uid, o.gid, [&](const Listener& l) {
    if (l.udp)
      dns_answer_udp(o, l);
    else
      dns_answer_tcp(o, l);
  });
}

struct DnsQueryOptions {
  std::string server, name = "probe.weir.test", type = "A", src;
  bool tcp = false;
  std::optional<uint32_t> uid, gid;
  int timeout_ms = 2000;
};

int dns_query(const DnsQueryOptions& o) {
  auto server = parse_addr(o.server, true);
  if (!server) throw ProbeError{"--server " + o.server + ": not ADDR:PORT or [V6ADDR]:PORT"};
  drop_privileges(o.uid, o.gid);
  uint16_t type = o.type == "AAAA" ? kTypeAaaa : o.type == "TXT" ? kTypeTxt : kTypeA;
  auto id = static_cast<uint16_t>(getpid() ^ now_ms());
  std::string reply = dns_exchange(*server, build_query(id, o.name, type), o.tcp, o.timeout_ms, o.src);
  if (reply.size() < 2 || get16(reply, 0) != id) throw ProbeError{"DNS reply with the wrong id"};
  json out = parse_reply(reply);
  out["proto"] = o.tcp ? "tcp" : "udp";
  write_all(STDOUT_FILENO, out.dump() + "\n");
  return out["rcode"] == 0 ? 0 : 1;
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

  DnsServeOptions ds;
  auto* dns_serve_cmd = app.add_subcommand("dns-serve", "a DNS stub on UDP+TCP that reports where queries landed");
  dns_serve_cmd->add_option("--port", ds.ports, "port to listen on (repeatable)")->required();
  dns_serve_cmd->add_option("--family", ds.family, "4, 6 or both")->check(CLI::IsMember({"4", "6", "both"}));
  dns_serve_cmd->add_option("--uid", ds.uid, "run as this uid after binding");
  dns_serve_cmd->add_option("--gid", ds.gid, "run as this gid after binding");
  dns_serve_cmd->add_option("--ready-file", ds.ready_file, "written once every socket listens");
  dns_serve_cmd->add_option("--max-seconds", ds.max_seconds, "exit after this long")->check(CLI::Range(1, 86400));
  dns_serve_cmd->add_option("--answer", ds.answers, "address to answer A/AAAA queries with (repeatable)");
  dns_serve_cmd->add_option("--upstream", ds.upstream, "forward queries to ADDR:PORT instead of answering");
  dns_serve_cmd->add_option("--upstream-timeout-ms", ds.upstream_timeout_ms, "give up on the upstream after this long");

  DnsQueryOptions dq;
  auto* dns_query_cmd = app.add_subcommand("dns-query", "send one DNS query and print the answer and the report");
  dns_query_cmd->add_option("--server", dq.server, "ADDR:PORT or [V6ADDR]:PORT")->required();
  dns_query_cmd->add_option("--name", dq.name, "name to resolve");
  dns_query_cmd->add_option("--type", dq.type, "A, AAAA or TXT")->check(CLI::IsMember({"A", "AAAA", "TXT"}));
  dns_query_cmd->add_flag("--tcp", dq.tcp, "over TCP instead of UDP");
  dns_query_cmd->add_option("--uid", dq.uid, "query as this uid");
  dns_query_cmd->add_option("--gid", dq.gid, "query as this gid");
  dns_query_cmd->add_option("--src", dq.src, "bind to this source address");
  dns_query_cmd->add_option("--timeout-ms", dq.timeout_ms, "give up after this long")->check(CLI::Range(1, 600000));

  CLI11_PARSE(app, argc, argv);

  signal(SIGPIPE, SIG_IGN);
  try {
    // No PR_SET_PDEATHSIG: it fires when the *thread* that forked the probe
    // exits, which would kill servers a test started from a worker thread.
    // --max-seconds bounds a probe whose test was killed.
    if (serve_cmd->parsed()) return serve(so);
    if (dns_serve_cmd->parsed()) return dns_serve(ds);
    if (dns_query_cmd->parsed()) return dns_query(dq);
    return connect_cmd(co);
  } catch (const ProbeError& e) {
    write_all(STDOUT_FILENO, json{{"error", e.message}}.dump() + "\n");
    return 1;
  }
}
