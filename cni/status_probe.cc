// The kernel half of STATUS (status.h): the packet filter's probe() in a
// throwaway namespace.
#include <sched.h>

#include <cerrno>
#include <thread>

#include "cni/status_probe.h"
#include "kernel/iptc/filter.h"
#include "kernel/links.h"

namespace weir::cni {

namespace {

// The tables to probe as a policy: each family and stage with no chains, so
// the filter opens exactly those tables.
CapturePolicy probe_policy(const std::vector<TableProbe>& tables) {
  CapturePolicy p;
  for (const TableProbe& t : tables) {
    FamilyPolicy* fp = nullptr;
    for (FamilyPolicy& f : p.families)
      if (f.family == t.family) fp = &f;
    if (!fp) fp = &p.families.emplace_back(FamilyPolicy{t.family, {}});
    Stage stage = t.table == "raw" ? Stage::Raw : t.table == "mangle" ? Stage::Mangle : Stage::Nat;
    fp->stages.push_back(StagePolicy{stage, {}});
  }
  return p;
}

Status probe_in_private_netns(const CaptureSpec& spec) {
  // unshare moves only this thread; the namespace dies when the thread ends.
  if (unshare(CLONE_NEWNET) != 0) {
    return system_error(ErrorKind::Unsupported, "create a private network namespace for the probe", errno);
  }
  // Asked inside the new namespace: IPv6 can be disabled per namespace.
  auto tables = tables_to_probe(spec, NetlinkLinks().has_ipv6());
  if (!tables.ok()) return tables.error();
  return IptcFilter().probe(probe_policy(*tables));
}

}  // namespace

Status probe_kernel(const CaptureSpec& spec) {
  Status result;
  std::thread t([&result, &spec] { result = probe_in_private_netns(spec); });
  t.join();
  return result;
}

}  // namespace weir::cni
