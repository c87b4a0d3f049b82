#include "kernel/links.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "kernel/netlink.h"
#include "kernel/netns.h"

namespace weir {
namespace {

using netlink::af;
using netlink::nl_error;

Result<netlink::RtAddr> lo_address(const Cidr& c) {
  const int family = af(c.family);
  netlink::Addr local(nl_addr_build(family, c.addr.data(), c.family == Family::V4 ? 4 : 16));
  netlink::RtAddr a(rtnl_addr_alloc());
  if (!local || !a) return Error{ErrorKind::Internal, "allocate an address: out of memory", ENOMEM};
  nl_addr_set_prefixlen(local.get(), c.prefix);
  rtnl_addr_set_ifindex(a.get(), netlink::kLoopbackIfindex);
  rtnl_addr_set_family(a.get(), family);
  if (int err = rtnl_addr_set_local(a.get(), local.get()); err < 0) return nl_error("set address", err, errno);
  rtnl_addr_set_prefixlen(a.get(), c.prefix);
  if (c.family == Family::V6) rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
  return a;
}

}  // namespace

Result<bool> NetlinkLinks::link_exists(const std::string& name) {
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap("look up link " + name);
  rtnl_link* raw = nullptr;
  errno = 0;
  int err = rtnl_link_get_kernel(sock->get(), 0, name.c_str(), &raw);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return false;
  if (err < 0) return nl_error("look up link " + name, err, errno);
  netlink::Link link(raw);
  return true;
}

Result<bool> NetlinkLinks::link_is_up(const std::string& name) {
  if (name.size() >= IFNAMSIZ) return false;
  // A socket belongs to the namespace of the thread that creates it.
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid() && errno != EMFILE && errno != ENFILE) sock = Fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) {
    int err = errno;
    ErrorKind kind = (err == EMFILE || err == ENFILE) ? ErrorKind::Io : ErrorKind::Kernel;
    return system_error(kind, "socket for link " + name, err);
  }
  ifreq req{};
  std::memcpy(req.ifr_name, name.data(), name.size());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0) {
    if (errno == ENODEV) return false;
    return system_error(ErrorKind::Kernel, "flags of link " + name, errno);
  }
  return (req.ifr_flags & IFF_UP) != 0;
}

Result<bool> NetlinkLinks::add_lo_address(const Cidr& c) {
  const std::string what = "add " + format_cidr(c) + " to lo";
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap(what);
  auto a = lo_address(c);
  if (!a) return a.error().wrap(what);
  errno = 0;
  int err = rtnl_addr_add(sock->get(), a->get(), NLM_F_EXCL);
  if (err == -NLE_EXIST) return false;
  if (err < 0) {
    Error e = nl_error(what, err, errno);
    if (e.sys_errno == EACCES && c.family == Family::V6) e.message += " (IPv6 is disabled on lo: disable_ipv6 sysctl)";
    return e;
  }
  return true;
}

Status NetlinkLinks::remove_lo_address(const Cidr& c) {
  const std::string what = "remove " + format_cidr(c) + " from lo";
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap(what);
  auto a = lo_address(c);
  if (!a) return a.error().wrap(what);
  errno = 0;
  int err = rtnl_addr_delete(sock->get(), a->get(), 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND) return nl_error(what, err, errno);
  return {};
}

bool NetlinkLinks::has_ipv6() {
  struct stat st {};
  return ::stat("/proc/thread-self/net/if_inet6", &st) == 0 || ::stat("/proc/sys/net/ipv6", &st) == 0;
}

Result<AddressFamilies> NetlinkLinks::global_address_families() {
  auto sock = netlink::connect();
  if (!sock) return sock.error().wrap("list addresses");
  nl_cache* raw = nullptr;
  errno = 0;
  if (int err = rtnl_addr_alloc_cache(sock->get(), &raw); err < 0) return nl_error("list addresses", err, errno);
  netlink::Cache cache(raw);
  AddressFamilies out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) == netlink::kLoopbackIfindex) continue;  // ::6 and the like are weir's, not the pod's
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

}  // namespace weir
