// Per-pod overrides of the capture spec from pod annotations: weir's own
// (weir.dev/<jsonKey>, one per entry of the table of spec fields,
// rules/spec_fields.h, replacing the field, read with the table's parser; and
// weir.dev/dns, the DNS object as JSON) and Istio's traffic.sidecar.istio.io/*
// with Istio's meanings. Pure; tested without root.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/spec.h"

namespace weir::cni {

inline constexpr const char* kWeirPrefix = "weir.dev/";
inline constexpr const char* kIstioTrafficPrefix = "traffic.sidecar.istio.io/";

// Applies every override found in `annotations` to `spec`, then validates the
// result. Order: weir.dev/* first, then Istio's (which add to exclude lists and
// set include lists). An InvalidSpec error names the annotation and the bad
// value, e.g. "annotation weir.dev/excludeOutboundPorts: 70000 is not a port".
// Unknown weir.dev/* keys are errors (a typo must not leave a pod half
// captured); annotations with other prefixes are ignored. Istio's CIDR
// annotations accept host bits as Istio does ("10.0.0.1/8" is 10.0.0.0/8),
// each adding a line to `warnings`; weir.dev/* CIDRs stay strict. On error
// `spec` is left unspecified: callers must not use it. `gids_explicit`: the
// config set proxyGids itself, so weir.dev/proxyUids leaves them alone
// (otherwise the GIDs follow the UIDs, their default).
Status apply_annotations(CaptureSpec& spec, const std::map<std::string, std::string>& annotations,
                         std::vector<std::string>& warnings, bool gids_explicit = false);

}  // namespace weir::cni
