// The kernel half of STATUS (status_probe.h): ops' probe() (which packet
// filter takes the spec's rules) in a throwaway namespace.
#include <sched.h>

#include <cerrno>
#include <thread>

#include "cni/status_probe.h"
#include "kernel/ops.h"

namespace weir::cni {

namespace {

Status probe_in_private_netns(const CaptureSpec& spec, std::string* backend) {
  // unshare moves only this thread; the namespace dies when the thread ends.
  if (unshare(CLONE_NEWNET) != 0) {
    return system_error(ErrorKind::Unsupported, "create a private network namespace for the probe", errno);
  }
  // Asked inside the new namespace: IPv6 can be disabled per namespace.
  auto used = probe(spec);
  if (!used) return used.error();
  if (backend) *backend = *used;
  return {};
}

}  // namespace

Status probe_kernel(const CaptureSpec& spec, std::string* backend) {
  Status result;
  std::thread t([&result, &spec, backend] { result = probe_in_private_netns(spec, backend); });
  t.join();
  return result;
}

}  // namespace weir::cni
