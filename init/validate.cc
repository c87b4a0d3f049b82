#include "init/validate.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <thread>

#include "kernel/netns.h"  // Fd

namespace weir {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

// SO_ORIGINAL_DST (linux/netfilter_ipv4.h, level SOL_IP) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h, level SOL_IPV6)
// share this number; those headers clash with the libc ones, so it is here.
constexpr int kSoOriginalDst = 80;

Result<uint16_t> parse_port(const std::string& what, const std::string& text) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), ::isdigit))
    return Error{ErrorKind::InvalidArgument, what + ": \"" + text + "\" is not a port (1-65535)"};
  unsigned long v = std::stoul(text);
  if (v == 0 || v > 65535)
    return Error{ErrorKind::InvalidArgument, what + ": " + text + " is not a port (1-65535)"};
  return static_cast<uint16_t>(v);
}

socklen_t to_sockaddr(const Endpoint& e, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  if (e.addr.family == Family::V4) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(e.port);
    std::memcpy(&s->sin_addr, e.addr.addr.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(e.port);
  std::memcpy(&s->sin6_addr, e.addr.addr.data(), 16);
  return sizeof(sockaddr_in6);
}

Endpoint from_sockaddr(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    e.addr.family = Family::V4;
    e.addr.prefix = 32;
    std::memcpy(e.addr.addr.data(), &s->sin_addr, 4);
    e.port = ntohs(s->sin_port);
  } else {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.addr.family = Family::V6;
    e.addr.prefix = 128;
    std::memcpy(e.addr.addr.data(), &s->sin6_addr, 16);
    e.port = ntohs(s->sin6_port);
  }
  return e;
}

Endpoint loopback(Family f, uint16_t port) {
  Endpoint e;
  e.addr.family = f;
  if (f == Family::V4) {
    e.addr.prefix = 32;
    e.addr.addr[0] = 127;
    e.addr.addr[3] = 1;
  } else {
    e.addr.prefix = 128;
    e.addr.addr[15] = 1;
  }
  e.port = port;
  return e;
}

struct Listener {
  Fd fd;
  Endpoint where;
};

// Listens on the proxy's ports on 127.0.0.1 and ::1, as the proxy would.
// IPv6 is optional (a pod may have none); a port in use is an error, since
// a connection arriving there would not reach us.
Result<std::vector<Listener>> open_listeners(const ValidationOptions& opts) {
  std::vector<uint16_t> ports{opts.outbound_port};
  if (opts.inbound_port != opts.outbound_port) ports.push_back(opts.inbound_port);
  std::vector<Listener> out;
  for (Family f : {Family::V4, Family::V6}) {
    for (uint16_t port : ports) {
      Endpoint where = loopback(f, port);
      Fd fd(::socket(f == Family::V4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd.valid()) {
        if (f == Family::V6 && errno == EAFNOSUPPORT) break;
        return system_error(ErrorKind::Kernel, "socket for " + format_endpoint(where), errno);
      }
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (f == Family::V6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      sockaddr_storage ss;
      socklen_t len = to_sockaddr(where, ss);
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        int err = errno;
        if (f == Family::V6 && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT)) break;  // no IPv6 here
        std::string hint = err == EADDRINUSE ? " (is the proxy already listening there?)" : "";
        return Error{ErrorKind::Io, "listen on " + format_endpoint(where) + ": " + std::strerror(err) + hint, err};
      }
      if (::listen(fd.get(), 64) != 0) return system_error(ErrorKind::Kernel, "listen on " + format_endpoint(where), errno);
      out.push_back(Listener{std::move(fd), where});
    }
  }
  return out;
}

// The failures of socket(), bind() or connect() that mean this namespace
// cannot send to the address at all, so no netfilter hook would see the dial.
bool means_no_route(int err) {
  return err == ENETUNREACH || err == EHOSTUNREACH || err == EADDRNOTAVAIL || err == EAFNOSUPPORT;
}

milliseconds left(Clock::time_point until) {
  auto d = duration_cast<milliseconds>(until - Clock::now());
  return d.count() > 0 ? d : milliseconds{0};
}

// The port a target's connection must arrive on, and its name for messages.
struct Expected {
  uint16_t port = 0;
  std::string what;  // "the outbound port 15001"
};

Expected expected_for(const ValidationOptions& opts, const Endpoint& target, const std::vector<Cidr>& local) {
  if (probe_direction(target, local) == ProbeDirection::Inbound)
    return {opts.inbound_port, "the inbound port " + std::to_string(opts.inbound_port)};
  return {opts.outbound_port, "the outbound port " + std::to_string(opts.outbound_port)};
}

// This namespace's own addresses. Only used to tell an inbound probe (the
// proxy dialing its pod's address) from an outbound one; if they cannot be
// read, loopback targets are still told apart.
std::vector<Cidr> local_addresses() {
  std::vector<Cidr> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, i->ifa_addr, i->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    out.push_back(from_sockaddr(ss).addr);
  }
  ::freeifaddrs(list);
  return out;
}

struct Attempt {
  bool captured = false;
  bool wrong_port = false;  // redirected, but to the other proxy port: final
  uint16_t landed = 0;
  std::string problem;  // why not, when not captured
};

// Reads every pending connection; a connection whose SO_ORIGINAL_DST is the
// target is ours: captured when it arrived on the expected port, misdirected
// otherwise. Others (stray or mis-redirected) are noted.
void drain(const Listener& l, const Endpoint& target, const Expected& expected, Attempt& a) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    Fd conn(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC));
    if (!conn.valid()) return;  // EAGAIN: nothing more
    sockaddr_storage orig;
    socklen_t olen = sizeof orig;
    int level = l.where.addr.family == Family::V4 ? SOL_IP : SOL_IPV6;
    if (::getsockopt(conn.get(), level, kSoOriginalDst, &orig, &olen) != 0) {
      a.problem = "a connection from " + format_endpoint(from_sockaddr(peer)) + " arrived on " +
                  format_endpoint(l.where) + " without an original destination (not redirected)";
      continue;
    }
    Endpoint dst = from_sockaddr(orig);
    if (dst == target) {
      a.landed = l.where.port;
      if (l.where.port == expected.port) {
        a.captured = true;
      } else {
        a.wrong_port = true;
        a.problem = "redirected to the wrong port: arrived on " + std::to_string(l.where.port) + ", expected " +
                    expected.what + " (rules with the outbound and inbound ports swapped?)";
      }
      return;
    }
    a.problem = "a connection arrived on " + format_endpoint(l.where) + " with SO_ORIGINAL_DST " +
                format_endpoint(dst) + ", not " + format_endpoint(target);
  }
}

// One dial, waiting until `until` for it to arrive on a listener.
Attempt dial_once(const std::vector<Listener>& listeners, const Endpoint& target, const Expected& expected,
                  const std::optional<Cidr>& source, Clock::time_point until) {
  Attempt a;
  const std::string to = format_endpoint(target);
  Fd client(::socket(target.addr.family == Family::V4 ? AF_INET : AF_INET6,
                     SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!client.valid()) {
    a.problem = std::string("socket: ") + std::strerror(errno);
    return a;
  }
  if (source) {
    sockaddr_storage ss;
    socklen_t len = to_sockaddr(Endpoint{*source, 0}, ss);
    if (::bind(client.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      a.problem = "bind to " + format_addr(*source) + ": " + std::strerror(errno);
      return a;
    }
  }
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(target, ss);
  bool connected = false;
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    connected = true;
  } else if (int err = errno; err != EINPROGRESS) {
    a.problem = "connect to " + to + ": " + std::strerror(err) +
                (means_no_route(err) ? " (no route to it in this namespace: no netfilter hook saw the dial)" : "");
    return a;
  }

  std::vector<pollfd> fds;
  for (const auto& l : listeners) fds.push_back(pollfd{l.fd.get(), POLLIN, 0});
  fds.push_back(pollfd{client.get(), POLLOUT, 0});
  for (int rounds = 0; rounds < 1000; ++rounds) {
    fds.back().fd = connected ? -1 : client.get();  // once connected, only the listeners matter
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left(until).count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // time is up for this attempt
    for (size_t i = 0; i < listeners.size(); ++i) {
      if (fds[i].revents & POLLIN) drain(listeners[i], target, expected, a);
      if (a.captured || a.wrong_port) return a;
    }
    if (!connected && fds.back().revents) {
      int err = 0;
      socklen_t elen = sizeof err;
      ::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
      if (err != 0) {
        a.problem = "connect to " + to + ": " + std::strerror(err) +
                    (err == ECONNREFUSED ? " (redirected to a port nobody listens on, or not redirected)" : "");
        return a;
      }
      connected = true;  // the listener's accept may lag the handshake: keep polling
    }
  }
  if (a.problem.empty()) {
    a.problem = connected ? "the connection to " + to + " was answered by something other than the proxy ports: not captured"
                          : "no connection to " + to + " arrived on the proxy ports: not captured";
  }
  return a;
}

}  // namespace

ProbeDirection probe_direction(const Endpoint& target, const std::vector<Cidr>& local_addresses) {
  const Cidr& a = target.addr;
  static const std::array<uint8_t, 16> loopback6{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (a.family == Family::V4 && a.addr[0] == 127) return ProbeDirection::Inbound;
  if (a.family == Family::V6 && a.addr == loopback6) return ProbeDirection::Inbound;
  for (const Cidr& l : local_addresses)
    if (l.family == a.family && l.addr == a.addr) return ProbeDirection::Inbound;
  return ProbeDirection::Outbound;
}

Result<Endpoint> parse_endpoint(const std::string& what, const std::string& text) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos)
      return Error{ErrorKind::InvalidArgument, what + ": \"" + text + "\" is not [ADDRESS]:PORT"};
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
      return Error{ErrorKind::InvalidArgument, what + ": \"" + text + "\" has no port (ADDRESS:PORT)"};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos)
      return Error{ErrorKind::InvalidArgument, what + ": write an IPv6 address as [ADDRESS]:PORT, not \"" + text + "\""};
  }
  if (host.find('/') != std::string::npos)
    return Error{ErrorKind::InvalidArgument, what + ": \"" + host + "\" is a network, not an address"};
  auto addr = parse_cidr(host);
  if (!addr) return addr.error().wrap(what);
  auto p = parse_port(what, port);
  if (!p) return p.error();
  return Endpoint{*addr, *p};
}

std::string format_endpoint(const Endpoint& e) {
  std::string a = format_addr(e.addr);
  if (e.addr.family == Family::V6) a = "[" + a + "]";
  return a + ":" + std::to_string(e.port);
}

bool has_route(const Endpoint& to, const std::optional<Cidr>& source) {
  const int family = to.addr.family == Family::V4 ? AF_INET : AF_INET6;
  Fd s(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return !means_no_route(errno);
  sockaddr_storage ss;
  if (source) {
    socklen_t len = to_sockaddr(Endpoint{*source, 0}, ss);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return !means_no_route(errno);
  }
  socklen_t len = to_sockaddr(to, ss);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return !means_no_route(errno);
  // A route but no IPv4 address to send from (a default route left in an
  // IPv6-only pod): connect() succeeds from 0.0.0.0; that is no IPv4 either.
  sockaddr_storage local;
  socklen_t llen = sizeof local;
  if (family == AF_INET && ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &llen) == 0)
    return reinterpret_cast<const sockaddr_in*>(&local)->sin_addr.s_addr != INADDR_ANY;
  return true;
}

Result<Endpoint> default_target(const std::optional<Cidr>& source, const RouteCheck& routable) {
  std::string tried;
  for (const char* text : {kDefaultValidationTarget, kDefaultValidationTarget6}) {
    Endpoint candidate = *parse_endpoint("target", text);
    if (source && source->family != candidate.addr.family) continue;
    if (routable(candidate, source)) return candidate;
    tried += (tried.empty() ? "" : " nor to ") + format_endpoint(candidate);
  }
  return Error{ErrorKind::Unsupported, "no default target to dial: this namespace has no route to " + tried +
                                           (source ? " from " + format_addr(*source) : "") + "; give --target"};
}

Result<std::chrono::milliseconds> parse_duration(const std::string& what, const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error{ErrorKind::InvalidArgument, what + ": \"" + text + "\" is not a duration (" + why + ")"};
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return milliseconds{0};
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == start) return bad("expected a number, e.g. 5s or 500ms");
    double value;
    try {
      value = std::stod(text.substr(start, i - start));
    } catch (const std::exception&) {
      return bad("malformed number");
    }
    size_t ustart = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) && text[i] != '.') ++i;
    std::string unit = text.substr(ustart, i - ustart);
    double scale;
    if (unit == "h") scale = 3600e3;
    else if (unit == "m") scale = 60e3;
    else if (unit == "s") scale = 1e3;
    else if (unit == "ms") scale = 1;
    else if (unit == "us" || unit == "\xC2\xB5s") scale = 1e-3;
    else if (unit == "ns") scale = 1e-6;
    else if (unit.empty()) return bad("missing unit, e.g. 5s or 500ms");
    else return bad("unknown unit \"" + unit + "\"");
    total_ms += value * scale;
  }
  if (total_ms > 24 * 3600e3) return bad("longer than a day");
  return milliseconds{static_cast<long long>(std::ceil(total_ms))};
}

Result<ValidationReport> validate_capture(const ValidationOptions& opts) {
  const auto start = Clock::now();
  const auto deadline = start + opts.timeout;
  std::vector<Endpoint> targets = opts.targets;
  std::string why;  // said of a default target that is not the usual one
  if (targets.empty()) {
    auto t = default_target(opts.source, has_route);
    if (!t) return t.error();
    if (t->addr.family == Family::V6 && !opts.source) why = " (the IPv6 default: no IPv4 route here)";
    targets.push_back(*t);
  }

  auto listeners = open_listeners(opts);
  if (!listeners) return listeners.error();
  for (const auto& t : targets) {
    bool have = std::any_of(listeners->begin(), listeners->end(),
                            [&](const Listener& l) { return l.where.addr.family == t.addr.family; });
    if (!have)
      return Error{ErrorKind::Unsupported, "validate " + format_endpoint(t) + ": no " + to_string(t.addr.family) +
                                               " loopback to listen on in this namespace"};
  }

  // A few dials within the timeout: rules may appear a moment late, and a
  // lost SYN should not fail the check. Each waits for its connection.
  const milliseconds window = std::clamp(duration_cast<milliseconds>(opts.timeout / 5), milliseconds{100},
                                         milliseconds{1000});
  const std::vector<Cidr> local = local_addresses();
  ValidationReport report;
  report.captured = true;
  for (const auto& target : targets) {
    const Expected expected = expected_for(opts, target, local);
    Attempt last;
    for (int attempt = 0; attempt < 1000 && !last.captured && !last.wrong_port; ++attempt) {
      auto now = Clock::now();
      if (now >= deadline && attempt > 0) break;
      auto until = std::min(now + window, deadline);
      last = dial_once(*listeners, target, expected, opts.source, until);
      if (!last.captured && !last.wrong_port) std::this_thread::sleep_for(left(until));  // paced, not spinning
    }
    if (!report.detail.empty()) report.detail += "\n";
    if (last.captured) {
      report.landed_port = last.landed;
      report.detail += format_endpoint(target) + why + " was captured: it arrived on port " +
                       std::to_string(last.landed) + " with SO_ORIGINAL_DST " + format_endpoint(target);
    } else {
      report.captured = false;
      report.wrong_port |= last.wrong_port;
      report.detail += format_endpoint(target) + why + ": " + last.problem;
    }
  }
  report.elapsed = duration_cast<std::chrono::microseconds>(Clock::now() - start);
  return report;
}

}  // namespace weir
