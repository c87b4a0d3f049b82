// CNI error codes and the mapping from weir's library errors to them. The
// codes below 100 are the spec's; 100 and up are weir's own (see README.md).
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "rules/error.h"

namespace weir::cni {

namespace code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodingFailure = 6;
inline constexpr int kInvalidConfig = 7;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kPluginNotAvailable = 50;
// weir's own.
inline constexpr int kNetnsMissing = 100;      // CNI_NETNS does not exist on ADD/CHECK
inline constexpr int kKernelRefused = 101;     // the kernel refused weir's rules
inline constexpr int kOwnNetns = 102;          // CNI_NETNS is the plugin's own namespace
inline constexpr int kKernelUnsupported = 103; // the kernel lacks what the spec needs (e.g. IPv6 tables)
inline constexpr int kRulesDrifted = 104;      // CHECK: live rules differ from the plan
inline constexpr int kInternal = 105;          // a bug in weir
inline constexpr int kPermissionDenied = 106;  // weir-cni lacks a privilege (EPERM/EACCES from the kernel)
}  // namespace code

// What a command failed with: becomes {cniVersion, code, msg, details}.
struct CniError {
  int code = code::kInternal;
  std::string msg;      // one line: what failed
  std::string details;  // why, possibly several lines (e.g. a rule diff)
};

// Maps a library error to a CNI error; `what` is the failed step, used as msg.
// A system call refused for want of privilege (EPERM, EACCES: e.g. setns
// without CAP_SYS_ADMIN) is kPermissionDenied whatever the kind: the rules
// were never the problem, the plugin's privileges are.
CniError from_error(const Error& e, const std::string& what);

}  // namespace weir::cni

namespace weir::cni {

// A value or a CniError; the front end's counterpart of weir::Result.
template <typename T>
class [[nodiscard]] CniResult {
 public:
  CniResult(T value) : v_(std::move(value)) {}
  CniResult(CniError error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const CniError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, CniError> v_;
};

}  // namespace weir::cni
