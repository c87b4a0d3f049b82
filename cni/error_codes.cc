#include "cni/error_codes.h"

#include <cerrno>

namespace weir::cni {

CniError from_error(const Error& e, const std::string& what) {
  if (e.sys_errno == EPERM || e.sys_errno == EACCES) {
    return CniError{code::kPermissionDenied, what + ": " + e.message,
                    "permission is missing: weir-cni must run as root with CAP_SYS_ADMIN (to enter the pod's "
                    "network namespace) and CAP_NET_ADMIN (to change its rules)"};
  }
  int c = code::kInternal;
  switch (e.kind) {
    case ErrorKind::InvalidSpec: c = code::kInvalidConfig; break;
    case ErrorKind::InvalidArgument: c = code::kInvalidEnvironment; break;
    case ErrorKind::NetnsNotFound: c = code::kNetnsMissing; break;
    case ErrorKind::OwnNetns: c = code::kOwnNetns; break;
    case ErrorKind::LockTimeout: c = code::kTryAgainLater; break;
    case ErrorKind::Kernel: c = code::kKernelRefused; break;
    case ErrorKind::Unsupported: c = code::kKernelUnsupported; break;
    case ErrorKind::Io: c = code::kIoFailure; break;
    case ErrorKind::Internal: c = code::kInternal; break;
  }
  return CniError{c, what + ": " + e.message, ""};
}

}  // namespace weir::cni
