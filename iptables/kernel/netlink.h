// What the netlink units (routing.cc, links.cc) share: RAII for libnl
// objects, a route socket, and errors that name the real cause. Internal to
// kernel/; not an interface.
#pragma once

#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>

#include <memory>
#include <string>

#include "rules/error.h"
#include "rules/model.h"

namespace weir::netlink {

struct SockFree { void operator()(nl_sock* s) const { nl_socket_free(s); } };
struct RuleFree { void operator()(rtnl_rule* r) const { rtnl_rule_put(r); } };
struct RouteFree { void operator()(rtnl_route* r) const { rtnl_route_put(r); } };
struct CacheFree { void operator()(nl_cache* c) const { nl_cache_free(c); } };
struct AddrFree { void operator()(nl_addr* a) const { nl_addr_put(a); } };
struct LinkFree { void operator()(rtnl_link* l) const { rtnl_link_put(l); } };
struct RtAddrFree { void operator()(rtnl_addr* a) const { rtnl_addr_put(a); } };
using Sock = std::unique_ptr<nl_sock, SockFree>;
using RulePtr = std::unique_ptr<rtnl_rule, RuleFree>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteFree>;
using Cache = std::unique_ptr<nl_cache, CacheFree>;
using Addr = std::unique_ptr<nl_addr, AddrFree>;
using Link = std::unique_ptr<rtnl_link, LinkFree>;
using RtAddr = std::unique_ptr<rtnl_addr, RtAddrFree>;

// The kernel gives every namespace's lo the index 1 (LOOPBACK_IFINDEX, since
// Linux 3.12). Using it saves a look-up that can itself fail for unrelated
// reasons (if_nametoindex out of descriptors says "No such file or directory").
inline constexpr int kLoopbackIfindex = 1;

int af(Family f);

// An Error from a libnl return code, with the errno it stands for (libnl has
// codes of its own: -NLE_NOACCESS is EACCES; a failed socket(2) is
// NLE_FAILURE, "Unspecific failure", with the cause, e.g. EMFILE, left in
// errno). `saved_errno` is errno read right after the failing call.
Error nl_error(const std::string& what, int nlerr, int saved_errno);

// A route netlink socket in the calling thread's namespace.
Result<Sock> connect();

}  // namespace weir::netlink
