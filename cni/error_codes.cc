#include "error_codes.h"

namespace weir::cni {

CniError from_error(const Error& e, const std::string& what) {
  int c = code::kInternal;
  switch (e.kind) {
    case ErrorKind::InvalidSpec: c = code::kInvalidConfig; break;
    case ErrorKind::InvalidArgument: c = code::kInvalidEnvironment; break;
    case ErrorKind::NetnsNotFound: c = code::kNetnsMissing; break;
    case ErrorKind::LockTimeout: c = code::kTryAgainLater; break;
    case ErrorKind::Kernel: c = code::kKernelRefused; break;
    case ErrorKind::Unsupported: c = code::kKernelUnsupported; break;
    case ErrorKind::Io: c = code::kIoFailure; break;
    case ErrorKind::Internal: c = code::kInternal; break;
  }
  return CniError{c, what + ": " + e.message, ""};
}

}  // namespace weir::cni
