// Policy routing for TPROXY, through netlink (libnl-route-3): the rule
// "fwmark MARK lookup TABLE" and the route "local 0.0.0.0/0 (or ::/0) dev lo
// table TABLE". Works on the calling thread's network namespace (the netlink
// socket is bound to the namespace current when it is made), like Backend.
#pragma once

#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"

namespace weir::routes {

// Installs the rule and the route. Idempotent: what already exists is kept.
Status install(const PolicyRoute& r);

// Removes the rule and the route. Succeeds when they are absent.
Status remove(const PolicyRoute& r);

// The policy routes of one family that have weir's shape: a "fwmark M lookup T"
// rule (full mask) whose table T holds a local default route on lo. A family
// the kernel does not have gives an empty list.
Result<std::vector<PolicyRoute>> list(Family f);

// Link state, for warnings ("excluded interface eth7 does not exist", "lo is down").
// link_exists asks netlink. link_is_up asks with one SIOCGIFFLAGS ioctl: it is
// on every pod's apply path, and the netlink round trip through libnl cost
// 80 us there against about 10 us for the ioctl.
Result<bool> link_exists(const std::string& name);
Result<bool> link_is_up(const std::string& name);

// Adds `addr` (a host address) to lo unless it is there; true when added.
// For the IPv6 passthrough source ::6: IPv6 lets a socket bind only to
// addresses the host has, and unlike 127.0.0.6 (inside 127.0.0.0/8, which is
// all local) ::6 is no address until it is put on lo.
Result<bool> add_lo_address(const Cidr& addr);
Status remove_lo_address(const Cidr& addr);

// Which families have a global unicast address on some interface of the
// calling thread's namespace other than lo (so not ::6 either): not loopback
// (127.0.0.0/8, ::1), not link-local (169.254.0.0/16, fe80::/10), not host or
// link scope. Tentative (DAD pending) addresses count: they are the pod's.
// Reading needs no privilege.
struct AddressFamilies {
  bool v4 = false;
  bool v6 = false;
};
Result<AddressFamilies> global_address_families();

}  // namespace weir::routes
