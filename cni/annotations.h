// Per-pod overrides of the capture spec from pod annotations: weir's own
// (weir.dev/<jsonKey>, one per spec field, replacing the field) and Istio's
// traffic.sidecar.istio.io/* with Istio's meanings. Pure; tested without root.
#pragma once

#include <map>
#include <string>

#include "error.h"
#include "spec.h"

namespace weir::cni {

inline constexpr const char* kWeirPrefix = "weir.dev/";
inline constexpr const char* kIstioTrafficPrefix = "traffic.sidecar.istio.io/";

// Applies every override found in `annotations` to `spec`, then validates the
// result. Order: weir.dev/* first, then Istio's (which add to exclude lists and
// set include lists). An InvalidSpec error names the annotation and the bad
// value, e.g. "annotation weir.dev/excludeOutboundPorts: 70000 is not a port".
// Unknown weir.dev/* keys are errors (a typo must not leave a pod half
// captured); annotations with other prefixes are ignored. On error `spec` is
// left unspecified: callers must not use it.
Status apply_annotations(CaptureSpec& spec, const std::map<std::string, std::string>& annotations);

}  // namespace weir::cni
