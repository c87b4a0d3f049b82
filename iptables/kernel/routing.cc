#include "kernel/routing.h"

#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/route/nexthop.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "kernel/netlink.h"

namespace weir {
namespace {

using netlink::af;
using netlink::nl_error;

std::string describe(const PolicyRoute& r) {
  return std::string(to_string(r.family)) + " policy route fwmark " + std::to_string(r.fwmark) + " table " +
         std::to_string(r.table);
}

// The protocol number weir's policy rules and routes carry (rtm_protocol,
// FRA_PROTOCOL; `ip rule`/`ip route` show it as "proto 87"): how clean,
// check and apply tell weir's from a look-alike another tool installed.
// 87 ('W') is not among iproute2's registered numbers (rt_protos).
constexpr uint8_t kWeirProtocol = 87;

netlink::RulePtr make_rule(const PolicyRoute& r) {
  netlink::RulePtr rule(rtnl_rule_alloc());
  rtnl_rule_set_family(rule.get(), af(r.family));
  rtnl_rule_set_mark(rule.get(), r.fwmark);
  rtnl_rule_set_mask(rule.get(), 0xffffffff);
  rtnl_rule_set_table(rule.get(), r.table);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  rtnl_rule_set_protocol(rule.get(), kWeirProtocol);
  return rule;
}

Result<netlink::RoutePtr> make_route(const PolicyRoute& r) {
  netlink::RoutePtr route(rtnl_route_alloc());
  netlink::Addr dst(nl_addr_build(af(r.family), nullptr, 0));
  if (!route || !dst) return Error{ErrorKind::Internal, "allocate a route: out of memory", ENOMEM};
  nl_addr_set_prefixlen(dst.get(), 0);
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(af(r.family)));
  rtnl_route_set_table(route.get(), r.table);
  rtnl_route_set_type(route.get(), RTN_LOCAL);
  rtnl_route_set_scope(route.get(), RT_SCOPE_HOST);
  rtnl_route_set_protocol(route.get(), kWeirProtocol);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0)
    return nl_error("set route destination", err, errno);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!nh) return Error{ErrorKind::Internal, "allocate a next hop: out of memory", ENOMEM};
  rtnl_route_nh_set_ifindex(nh, netlink::kLoopbackIfindex);
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns it from here
  return route;
}

struct RuleKey {
  uint32_t mark, table;
};

// weir's fwmark rules with a full mask that look up a table.
Result<std::vector<RuleKey>> fwmark_rules(nl_sock* sock, Family f) {
  nl_cache* raw = nullptr;
  errno = 0;
  if (int err = rtnl_rule_alloc_cache(sock, af(f), &raw); err < 0)
    return nl_error(std::string("list ") + to_string(f) + " routing rules", err, errno);
  netlink::Cache cache(raw);
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

// Tables that hold weir's local default route on lo.
Result<std::vector<uint32_t>> local_default_tables(nl_sock* sock, Family f) {
  nl_cache* raw = nullptr;
  errno = 0;
  if (int err = rtnl_route_alloc_cache(sock, af(f), 0, &raw); err < 0)
    return nl_error(std::string("list ") + to_string(f) + " routes", err, errno);
  netlink::Cache cache(raw);
  std::vector<uint32_t> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* route = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_family(route) != af(f)) continue;
    if (rtnl_route_get_type(route) != RTN_LOCAL) continue;
    if (rtnl_route_get_protocol(route) != kWeirProtocol) continue;  // not weir's
    nl_addr* dst = rtnl_route_get_dst(route);
    if (dst && nl_addr_get_prefixlen(dst) != 0) continue;
    if (rtnl_route_get_nnexthops(route) != 1) continue;
    if (rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0)) != netlink::kLoopbackIfindex) continue;
    out.push_back(rtnl_route_get_table(route));
  }
  return out;
}

}  // namespace

Status NetlinkRouting::install(const PolicyRoute& r) {
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap("install " + describe(r));
  auto rules = fwmark_rules(sock->get(), r.family);
  if (!rules) return rules.error().wrap("install " + describe(r));
  bool have_rule = false;
  for (const RuleKey& k : *rules) have_rule |= (k.mark == r.fwmark && k.table == r.table);
  if (!have_rule) {
    netlink::RulePtr rule = make_rule(r);
    errno = 0;
    if (int err = rtnl_rule_add(sock->get(), rule.get(), NLM_F_CREATE); err < 0 && err != -NLE_EXIST)
      return nl_error("install " + describe(r) + ": add rule", err, errno);
  }
  auto route = make_route(r);
  if (!route) return route.error().wrap("install " + describe(r));
  errno = 0;
  if (int err = rtnl_route_add(sock->get(), route->get(), NLM_F_CREATE | NLM_F_EXCL); err < 0 && err != -NLE_EXIST)
    return nl_error("install " + describe(r) + ": add local route", err, errno);
  return {};
}

Status NetlinkRouting::remove(const PolicyRoute& r) {
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap("remove " + describe(r));
  netlink::RulePtr rule = make_rule(r);
  // Bounded: a rule added twice by someone else is removed as well.
  for (int i = 0; i < 16; ++i) {
    errno = 0;
    int err = rtnl_rule_delete(sock->get(), rule.get(), 0);
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR) break;
    if (err < 0) return nl_error("remove " + describe(r) + ": delete rule", err, errno);
  }
  auto route = make_route(r);
  if (!route) return route.error().wrap("remove " + describe(r));
  errno = 0;
  int err = rtnl_route_delete(sock->get(), route->get(), 0);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR)
    return nl_error("remove " + describe(r) + ": delete local route", err, errno);
  return {};
}

Result<std::vector<PolicyRoute>> NetlinkRouting::list(Family f) {
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap(std::string("list ") + to_string(f) + " policy routes");
  auto rules = fwmark_rules(sock->get(), f);
  // A kernel without IPv6 refuses the dump: no IPv6 routes then.
  if (!rules) {
    if (f == Family::V6 && rules.error().sys_errno != EMFILE && rules.error().sys_errno != ENFILE)
      return std::vector<PolicyRoute>{};
    return rules.error();
  }
  auto tables = local_default_tables(sock->get(), f);
  if (!tables) {
    if (f == Family::V6 && tables.error().sys_errno != EMFILE && tables.error().sys_errno != ENFILE)
      return std::vector<PolicyRoute>{};
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

}  // namespace weir
