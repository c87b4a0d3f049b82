#include "status.h"

#include <sched.h>

#include <cerrno>
#include <thread>

#include <libiptc/libiptc.h>
// libip6tc.h, unlike libiptc.h, has no extern "C" of its own.
extern "C" {
#include <libiptc/libip6tc.h>
}

#include "backend.h"

namespace weir::cni {

namespace {

Status probe_in_private_netns() {
  // unshare moves only this thread; the namespace dies when the thread ends.
  if (unshare(CLONE_NEWNET) != 0) {
    return system_error(ErrorKind::Unsupported, "create a private network namespace for the probe", errno);
  }
  if (xtc_handle* h = iptc_init("nat")) {
    iptc_free(h);
  } else {
    return Error{ErrorKind::Unsupported, std::string("libiptc: open the IPv4 nat table: ") + iptc_strerror(errno), errno};
  }
  if (kernel_has_ipv6()) {
    if (xtc_handle* h = ip6tc_init("nat")) {
      ip6tc_free(h);
    } else {
      return Error{ErrorKind::Unsupported, std::string("libip6tc: open the IPv6 nat table: ") + ip6tc_strerror(errno), errno};
    }
  }
  return {};
}

}  // namespace

Status probe_kernel() {
  Status result;
  std::thread t([&result] { result = probe_in_private_netns(); });
  t.join();
  return result;
}

}  // namespace weir::cni
