// STATUS: can weir program rules on this node? Answered without touching the
// node's own network namespace: the probe runs in a private, throwaway one.
#pragma once

#include "error.h"

namespace weir::cni {

// Creates a network namespace private to a short-lived thread and opens the
// nat table there through libiptc, for IPv4 and (when the kernel has IPv6)
// IPv6. The namespace disappears with the thread. Error when either fails
// (no privilege, no kernel support): the runtime then reports code 50.
Status probe_kernel();

}  // namespace weir::cni
