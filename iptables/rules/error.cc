#include "rules/error.h"

#include <cstring>

namespace weir {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidSpec: return "invalid spec";
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::NetnsNotFound: return "netns not found";
    case ErrorKind::OwnNetns: return "own netns";
    case ErrorKind::LockTimeout: return "lock timeout";
    case ErrorKind::Kernel: return "kernel error";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::Io: return "I/O error";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

Error system_error(ErrorKind kind, const std::string& what, int err) {
  return Error{kind, what + ": " + std::strerror(err), err};
}

}  // namespace weir
