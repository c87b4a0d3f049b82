// STATUS: can weir program the rules this config asks for on this node?
// Answered without touching the node's own network namespace: the probe runs
// in a private, throwaway one.
#pragma once

#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"
#include "rules/spec.h"

namespace weir::cni {

struct TableProbe {
  Family family = Family::V4;
  std::string table;  // "nat", "mangle", "raw"
  bool operator==(const TableProbe&) const = default;
};

// The tables `spec` needs, in the order to probe them: the IPv4 nat table
// always (DEL cleans it whatever the spec), then every table of the spec's
// plan for each of its families (mangle for TPROXY or dropInvalid, raw for DNS
// capture), IPv6 only when `kernel_has_ipv6`. Unsupported when the spec asks
// for IPv6 alone and the kernel has none (apply would fail the same way).
// Pure; tested without root.
Result<std::vector<TableProbe>> tables_to_probe(const CaptureSpec& spec, bool kernel_has_ipv6);

// Creates a network namespace private to a short-lived thread and opens each
// table of tables_to_probe() there through libiptc. The namespace disappears
// with the thread. Error when one fails (no privilege, no kernel support): the
// runtime then reports code 50.
Status probe_kernel(const CaptureSpec& spec);

}  // namespace weir::cni
