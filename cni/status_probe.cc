// The kernel half of STATUS (status.h): libiptc in a throwaway namespace.
#include <sched.h>

#include <cerrno>
#include <thread>

#include <libiptc/libiptc.h>
// libip6tc.h, unlike libiptc.h, has no extern "C" of its own.
extern "C" {
#include <libiptc/libip6tc.h>
}

#include "kernel/backend.h"
#include "cni/status_probe.h"

namespace weir::cni {

namespace {

Status open_table(const TableProbe& p) {
  if (p.family == Family::V4) {
    if (xtc_handle* h = iptc_init(p.table.c_str())) {
      iptc_free(h);
      return {};
    }
    return Error{ErrorKind::Unsupported, "libiptc: open the IPv4 " + p.table + " table: " + iptc_strerror(errno), errno};
  }
  if (xtc_handle* h = ip6tc_init(p.table.c_str())) {
    ip6tc_free(h);
    return {};
  }
  return Error{ErrorKind::Unsupported, "libip6tc: open the IPv6 " + p.table + " table: " + ip6tc_strerror(errno), errno};
}

Status probe_in_private_netns(const CaptureSpec& spec) {
  // unshare moves only this thread; the namespace dies when the thread ends.
  if (unshare(CLONE_NEWNET) != 0) {
    return system_error(ErrorKind::Unsupported, "create a private network namespace for the probe", errno);
  }
  // Asked inside the new namespace: IPv6 can be disabled per namespace.
  auto tables = tables_to_probe(spec, kernel_has_ipv6());
  if (!tables.ok()) return tables.error();
  for (const TableProbe& p : *tables) {
    if (Status s = open_table(p); !s.ok()) return s;
  }
  return {};
}

}  // namespace

Status probe_kernel(const CaptureSpec& spec) {
  Status result;
  std::thread t([&result, &spec] { result = probe_in_private_netns(spec); });
  t.join();
  return result;
}

}  // namespace weir::cni
