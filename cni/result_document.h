// The JSON documents weir-cni prints on stdout: the passed-through result, the
// error document and the VERSION answer. Pure; tested without root.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cni/error_codes.h"

namespace weir::cni {

// `prev` (a prevResult in any supported version) converted to `version`:
// cniVersion set; "ips" entries carry "version": "4"/"6" before 1.0.0 and do
// not from 1.0.0 on. Everything else passes through unchanged. Code 7 naming
// the field when `prev` is not a result weir can pass on: "ips" not an array
// of objects, an address that is not a string, or a result in the shape of
// 0.2.0 and before ("ip4"/"ip6", or a cniVersion below 0.3.0), which no
// version weir answers in can carry. Validates everything before it changes
// anything, so callers convert before their side effects.
CniResult<nlohmann::json> convert_result(const nlohmann::json& prev, const std::string& version);

// {cniVersion, code, msg, details}, details "" when there is none. The answer
// is in `version` when weir speaks it; otherwise (unsupported, or empty: the
// config's version could not be read) in the newest version weir speaks, and
// details say so and why.
nlohmann::json error_document(const std::string& version, const CniError& e);

// {cniVersion, supportedVersions}; cniVersion is `version` when weir supports
// it, else (unsupported, missing) the newest version weir supports.
nlohmann::json version_document(const std::string& version);

}  // namespace weir::cni
