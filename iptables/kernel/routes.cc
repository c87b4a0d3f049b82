#include "kernel/routes.h"

#include "kernel/netns.h"

#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

namespace weir::routes {
namespace {

// RAII for libnl objects: each type with the function that releases it.
struct SockFree { void operator()(nl_sock* s) const { nl_socket_free(s); } };
struct RuleFree { void operator()(rtnl_rule* r) const { rtnl_rule_put(r); } };
struct RouteFree { void operator()(rtnl_route* r) const { rtnl_route_put(r); } };
struct CacheFree { void operator()(nl_cache* c) const { nl_cache_free(c); } };
struct AddrFree { void operator()(nl_addr* a) const { nl_addr_put(a); } };
struct LinkFree { void operator()(rtnl_link* l) const { rtnl_link_put(l); } };
using Sock = std::unique_ptr<nl_sock, SockFree>;
using RulePtr = std::unique_ptr<rtnl_rule, RuleFree>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteFree>;
using Cache = std::unique_ptr<nl_cache, CacheFree>;
using Addr = std::unique_ptr<nl_addr, AddrFree>;
using Link = std::unique_ptr<rtnl_link, LinkFree>;

Error nl_error(const std::string& what, int nlerr) {
  return Error{ErrorKind::Kernel, what + ": " + nl_geterror(nlerr), 0};
}

int af(Family f) { return f == Family::V4 ? AF_INET : AF_INET6; }

std::string describe(const PolicyRoute& r) {
  return std::string(to_string(r.family)) + " policy route fwmark " + std::to_string(r.fwmark) + " table " +
         std::to_string(r.table);
}

Result<Sock> connect() {
  Sock s(nl_socket_alloc());
  if (!s) return Error{ErrorKind::Internal, "allocate a netlink socket: out of memory", 0};
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0) return nl_error("connect to rtnetlink", err);
  return s;
}

// The protocol number weir's policy rules and routes carry (rtm_protocol,
// FRA_PROTOCOL; `ip rule`/`ip route` show it as "proto 87"): how clean,
// check and apply tell weir's from a look-alike another tool installed.
// 87 ('W') is not among iproute2's registered numbers (rt_protos).
constexpr uint8_t kWeirProtocol = 87;

RulePtr make_rule(const PolicyRoute& r) {
  RulePtr rule(rtnl_rule_alloc());
  rtnl_rule_set_family(rule.get(), af(r.family));
  rtnl_rule_set_mark(rule.get(), r.fwmark);
  rtnl_rule_set_mask(rule.get(), 0xffffffff);
  rtnl_rule_set_table(rule.get(), r.table);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  rtnl_rule_set_protocol(rule.get(), kWeirProtocol);
  return rule;
}

Result<RoutePtr> make_route(nl_sock* sock, const PolicyRoute& r) {
  int lo = 0;
  {
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock, 0, "lo", &raw); err < 0) return nl_error("look up lo", err);
    Link link(raw);
    lo = rtnl_link_get_ifindex(link.get());
  }
  RoutePtr route(rtnl_route_alloc());
  Addr dst(nl_addr_build(af(r.family), nullptr, 0));
  if (!route || !dst) return Error{ErrorKind::Internal, "allocate a route: out of memory", 0};
  nl_addr_set_prefixlen(dst.get(), 0);
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(af(r.family)));
  rtnl_route_set_table(route.get(), r.table);
  rtnl_route_set_type(route.get(), RTN_LOCAL);
  rtnl_route_set_scope(route.get(), RT_SCOPE_HOST);
  rtnl_route_set_protocol(route.get(), kWeirProtocol);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) return nl_error("set route destination", err);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!nh) return Error{ErrorKind::Internal, "allocate a next hop: out of memory", 0};
  rtnl_route_nh_set_ifindex(nh, lo);
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns it from here
  return route;
}

struct RuleKey {
  uint32_t mark, table;
};

// fwmark rules with a full mask that look up a table.
Result<std::vector<RuleKey>> fwmark_rules(nl_sock* sock, Family f) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_rule_alloc_cache(sock, af(f), &raw); err < 0)
    return nl_error(std::string("list ") + to_string(f) + " routing rules", err);
  Cache cache(raw);
  std::vector<RuleKey> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* rule = reinterpret_cast<rtnl_rule*>(o);
    if (rtnl_rule_get_family(rule) != af(f)) continue;  // the dump may hold both families
    uint8_t proto = 0;
    if (rtnl_rule_get_protocol(rule, &proto) < 0 || proto != kWeirProtocol) continue;  // not weir's
    if (rtnl_rule_get_action(rule) != FR_ACT_TO_TBL) continue;
    if (rtnl_rule_get_mask(rule) != 0xffffffff) continue;
    uint32_t mark = rtnl_rule_get_mark(rule);
    if (mark == 0 || mark == 0xffffffff) continue;  // no fwmark selector
    out.push_back({mark, rtnl_rule_get_table(rule)});
  }
  return out;
}

// Tables that hold a local default route on lo.
Result<std::vector<uint32_t>> local_default_tables(nl_sock* sock, Family f) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sock, af(f), 0, &raw); err < 0)
    return nl_error(std::string("list ") + to_string(f) + " routes", err);
  Cache cache(raw);
  int lo = static_cast<int>(if_nametoindex("lo"));
  std::vector<uint32_t> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* route = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_family(route) != af(f)) continue;
    if (rtnl_route_get_type(route) != RTN_LOCAL) continue;
    if (rtnl_route_get_protocol(route) != kWeirProtocol) continue;  // not weir's
    nl_addr* dst = rtnl_route_get_dst(route);
    if (dst && nl_addr_get_prefixlen(dst) != 0) continue;
    if (rtnl_route_get_nnexthops(route) != 1) continue;
    if (rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0)) != lo) continue;
    out.push_back(rtnl_route_get_table(route));
  }
  return out;
}

}  // namespace

Status install(const PolicyRoute& r) {
  auto sock = connect();
  if (!sock) return sock.error();
  auto rules = fwmark_rules(sock->get(), r.family);
  if (!rules) return rules.error().wrap("install " + describe(r));
  bool have_rule = false;
  for (const RuleKey& k : *rules) have_rule |= (k.mark == r.fwmark && k.table == r.table);
  if (!have_rule) {
    RulePtr rule = make_rule(r);
    if (int err = rtnl_rule_add(sock->get(), rule.get(), NLM_F_CREATE); err < 0 && err != -NLE_EXIST)
      return nl_error("install " + describe(r) + ": add rule", err);
  }
  auto route = make_route(sock->get(), r);
  if (!route) return route.error().wrap("install " + describe(r));
  if (int err = rtnl_route_add(sock->get(), route->get(), NLM_F_CREATE | NLM_F_EXCL); err < 0 && err != -NLE_EXIST)
    return nl_error("install " + describe(r) + ": add local route", err);
  return {};
}

Status remove(const PolicyRoute& r) {
  auto sock = connect();
  if (!sock) return sock.error();
  RulePtr rule = make_rule(r);
  // Bounded: a rule added twice by someone else is removed as well.
  for (int i = 0; i < 16; ++i) {
    int err = rtnl_rule_delete(sock->get(), rule.get(), 0);
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR) break;
    if (err < 0) return nl_error("remove " + describe(r) + ": delete rule", err);
  }
  auto route = make_route(sock->get(), r);
  if (!route) return route.error().wrap("remove " + describe(r));
  int err = rtnl_route_delete(sock->get(), route->get(), 0);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR)
    return nl_error("remove " + describe(r) + ": delete local route", err);
  return {};
}

Result<std::vector<PolicyRoute>> list(Family f) {
  auto sock = connect();
  if (!sock) return sock.error();
  auto rules = fwmark_rules(sock->get(), f);
  // A kernel without IPv6 refuses the dump: no IPv6 routes then.
  if (!rules) {
    if (f == Family::V6) return std::vector<PolicyRoute>{};
    return rules.error();
  }
  auto tables = local_default_tables(sock->get(), f);
  if (!tables) {
    if (f == Family::V6) return std::vector<PolicyRoute>{};
    return tables.error();
  }
  std::vector<PolicyRoute> out;
  for (const RuleKey& k : *rules) {
    for (uint32_t t : *tables) {
      if (t == k.table) {
        out.push_back(PolicyRoute{f, k.mark, k.table});
        break;
      }
    }
  }
  return out;
}

Result<bool> link_exists(const std::string& name) {
  auto sock = connect();
  if (!sock) return sock.error();
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sock->get(), 0, name.c_str(), &raw);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return false;
  if (err < 0) return nl_error("look up link " + name, err);
  Link link(raw);
  return true;
}

Result<bool> link_is_up(const std::string& name) {
  if (name.size() >= IFNAMSIZ) return false;
  // A socket belongs to the namespace of the thread that creates it.
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) sock = Fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return system_error(ErrorKind::Kernel, "socket for link " + name, errno);
  ifreq req{};
  std::memcpy(req.ifr_name, name.data(), name.size());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0) {
    if (errno == ENODEV) return false;
    return system_error(ErrorKind::Kernel, "flags of link " + name, errno);
  }
  return (req.ifr_flags & IFF_UP) != 0;
}

namespace {

struct RtAddrFree { void operator()(rtnl_addr* a) const { rtnl_addr_put(a); } };
using RtAddr = std::unique_ptr<rtnl_addr, RtAddrFree>;

Result<RtAddr> lo_address(const Cidr& c) {
  const int lo = static_cast<int>(if_nametoindex("lo"));
  if (lo == 0) return system_error(ErrorKind::Kernel, "find lo", errno);
  const int family = af(c.family);
  Addr local(nl_addr_build(family, c.addr.data(), c.family == Family::V4 ? 4 : 16));
  RtAddr a(rtnl_addr_alloc());
  if (!local || !a) return Error{ErrorKind::Internal, "allocate an address: out of memory", 0};
  nl_addr_set_prefixlen(local.get(), c.prefix);
  rtnl_addr_set_ifindex(a.get(), lo);
  rtnl_addr_set_family(a.get(), family);
  if (int err = rtnl_addr_set_local(a.get(), local.get()); err < 0) return nl_error("set address", err);
  rtnl_addr_set_prefixlen(a.get(), c.prefix);
  if (c.family == Family::V6) rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
  return a;
}

}  // namespace

Result<bool> add_lo_address(const Cidr& c) {
  auto sock = connect();
  if (!sock) return sock.error();
  auto a = lo_address(c);
  if (!a) return a.error();
  int err = rtnl_addr_add(sock->get(), a->get(), NLM_F_EXCL);
  if (err == -NLE_EXIST) return false;
  if (err < 0) return nl_error("add " + format_cidr(c) + " to lo", err);
  return true;
}

Status remove_lo_address(const Cidr& c) {
  auto sock = connect();
  if (!sock) return sock.error();
  auto a = lo_address(c);
  if (!a) return a.error();
  int err = rtnl_addr_delete(sock->get(), a->get(), 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND) return nl_error("remove " + format_cidr(c) + " from lo", err);
  return {};
}

Result<AddressFamilies> global_address_families() {
  auto sock = connect();
  if (!sock) return sock.error();
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock->get(), &raw); err < 0) return nl_error("list addresses", err);
  Cache cache(raw);
  AddressFamilies out;
  const int lo = static_cast<int>(if_nametoindex("lo"));
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (lo != 0 && rtnl_addr_get_ifindex(a) == lo) continue;  // ::6 and the like are weir's, not the pod's
    int scope = rtnl_addr_get_scope(a);
    if (scope == RT_SCOPE_HOST || scope == RT_SCOPE_LINK || scope == RT_SCOPE_NOWHERE) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    if (!local) continue;
    const auto* b = static_cast<const uint8_t*>(nl_addr_get_binary_addr(local));
    unsigned len = nl_addr_get_len(local);
    int family = rtnl_addr_get_family(a);
    if (family == AF_INET && len == 4) {
      if (b[0] == 127 || (b[0] == 169 && b[1] == 254)) continue;
      out.v4 = true;
    } else if (family == AF_INET6 && len == 16) {
      static const uint8_t loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
      if (std::memcmp(b, loopback6, 16) == 0 || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)) continue;
      out.v6 = true;
    }
  }
  return out;
}

}  // namespace weir::routes
