// Links and addresses of the calling thread's network namespace: what ops
// needs to know and change beside the packet filter and the policy routes.
#pragma once

#include <string>

#include "rules/error.h"
#include "rules/model.h"

namespace weir {

// Which families have a global unicast address on some interface other than
// lo (so not ::6 either): not loopback (127.0.0.0/8, ::1), not link-local
// (169.254.0.0/16, fe80::/10), not host or link scope. Tentative (DAD
// pending) addresses count: they are the pod's.
struct AddressFamilies {
  bool v4 = false;
  bool v6 = false;
};

class Links {
 public:
  virtual ~Links() = default;

  // For warnings ("excluded interface eth7 does not exist", "lo is down").
  virtual Result<bool> link_exists(const std::string& name) = 0;
  virtual Result<bool> link_is_up(const std::string& name) = 0;

  // Adds `addr` (a host address) to lo unless it is there; true when added.
  // For the IPv6 passthrough source ::6: IPv6 lets a socket bind only to
  // addresses the host has, and unlike 127.0.0.6 (inside 127.0.0.0/8, which
  // is all local) ::6 is no address until it is put on lo. An error with
  // sys_errno EACCES means IPv6 is disabled on lo (disable_ipv6 sysctl).
  virtual Result<bool> add_lo_address(const Cidr& addr) = 0;
  // Succeeds when the address is not there.
  virtual Status remove_lo_address(const Cidr& addr) = 0;

  // Whether this namespace's kernel has IPv6 (so IPv6 rules are required
  // whenever the spec asks for them: skipping them would let IPv6 bypass the
  // proxy). True also when IPv6 is disabled by sysctl: the tables are there.
  virtual bool has_ipv6() = 0;

  // Reading needs no privilege.
  virtual Result<AddressFamilies> global_address_families() = 0;
};

// The real namespace: rtnetlink (libnl-route-3) for addresses and links, one
// SIOCGIFFLAGS ioctl for link_is_up (it is on every pod's apply path: the
// netlink round trip through libnl cost 80 us there against about 10 us),
// /proc for has_ipv6. Each call works in the namespace current at the call.
class NetlinkLinks final : public Links {
 public:
  Result<bool> link_exists(const std::string& name) override;
  Result<bool> link_is_up(const std::string& name) override;
  Result<bool> add_lo_address(const Cidr& addr) override;
  Status remove_lo_address(const Cidr& addr) override;
  bool has_ipv6() override;
  Result<AddressFamilies> global_address_families() override;
};

}  // namespace weir
