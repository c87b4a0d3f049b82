#include "kernel/netlink.h"

#include <netlink/errno.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace weir::netlink {

int af(Family f) { return f == Family::V4 ? AF_INET : AF_INET6; }

namespace {

// The errno behind a libnl code, where there is one errno for it.
int errno_of(int nlerr) {
  switch (nlerr < 0 ? -nlerr : nlerr) {
    case NLE_NOACCESS: return EACCES;
    case NLE_PERM: return EPERM;
    case NLE_NOMEM: return ENOMEM;
    case NLE_EXIST: return EEXIST;
    case NLE_AGAIN: return EAGAIN;
    case NLE_BUSY: return EBUSY;
    case NLE_INVAL: return EINVAL;
    case NLE_RANGE: return ERANGE;
    case NLE_NODEV: return ENODEV;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_PROTO_MISMATCH: return EPROTONOSUPPORT;
    case NLE_BAD_SOCK: return EBADF;
    default: return 0;
  }
}

}  // namespace

Error nl_error(const std::string& what, int nlerr, int saved_errno) {
  int err = errno_of(nlerr);
  // libnl maps errno values it has no code for (EMFILE, ENFILE, ENOBUFS) to
  // NLE_FAILURE; errno still holds the real one.
  const int code = nlerr < 0 ? -nlerr : nlerr;
  if (err == 0 && (code == NLE_FAILURE || code == NLE_NOMEM) && saved_errno != 0) err = saved_errno;
  std::string msg = what + ": ";
  if (code == NLE_FAILURE && err != 0) {
    msg += std::strerror(err);
  } else {
    msg += nl_geterror(nlerr);
  }
  if (err == EMFILE || err == ENFILE) msg += " (out of file descriptors: " + std::string(err == EMFILE ? "EMFILE" : "ENFILE") + ")";
  ErrorKind kind = (err == EMFILE || err == ENFILE || err == ENOMEM) ? ErrorKind::Io : ErrorKind::Kernel;
  return Error{kind, msg, err};
}

Result<Sock> connect() {
  errno = 0;
  Sock s(nl_socket_alloc());
  if (!s) return Error{ErrorKind::Internal, "allocate a netlink socket: out of memory", ENOMEM};
  errno = 0;
  if (int err = nl_connect(s.get(), NETLINK_ROUTE); err < 0) return nl_error("connect to rtnetlink", err, errno);
  return s;
}

}  // namespace weir::netlink
