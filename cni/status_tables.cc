#include "cni/status_probe.h"

#include <algorithm>

#include "rules/plan.h"

namespace weir::cni {

Result<std::vector<TableProbe>> tables_to_probe(const CaptureSpec& spec, bool kernel_has_ipv6) {
  std::vector<TableProbe> out{{Family::V4, "nat"}};
  const std::vector<Family> wanted = families(spec);
  if (!kernel_has_ipv6 && wanted == std::vector<Family>{Family::V6}) {
    return Error{ErrorKind::Unsupported, "the capture spec asks for IPv6 only, but the kernel has no IPv6", 0};
  }
  // The plan names exactly the tables apply will open, so STATUS cannot
  // disagree with ADD about which ones matter.
  for (const Ruleset& rs : plan(spec).rulesets) {
    if (rs.family == Family::V6 && !kernel_has_ipv6) continue;
    for (const Table& t : rs.tables) {
      TableProbe p{rs.family, t.name};
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace weir::cni
