// The JSON documents weir-cni prints on stdout: the passed-through result, the
// error document and the VERSION answer. Pure; tested without root.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cni/error_codes.h"

namespace weir::cni {

// `prev` (a prevResult in any supported version) converted to `version`:
// cniVersion set; "ips" entries carry "version": "4"/"6" before 1.0.0 and do
// not from 1.0.0 on. Everything else passes through unchanged.
nlohmann::json convert_result(const nlohmann::json& prev, const std::string& version);

// {cniVersion, code, msg, details}, details "" when there is none; `version`
// falls back to the newest supported when it is not one weir supports (or
// empty: the config was unreadable).
nlohmann::json error_document(const std::string& version, const CniError& e);

// {cniVersion, supportedVersions}; cniVersion is `version` when weir supports
// it, else (unsupported, missing) the newest version weir supports.
nlohmann::json version_document(const std::string& version);

}  // namespace weir::cni
