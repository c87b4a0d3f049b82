#include "kernel/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace weir {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

std::string netns_path(const std::string& ref) {
  if (ref == "self") return "/proc/self/ns/net";
  if (!ref.empty() && ref.front() == '/') return ref;
  const bool pid_form = ref.rfind("pid:", 0) == 0;
  std::string pid = pid_form ? ref.substr(4) : ref;
  bool numeric = !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos;
  // "pid:abc" names no process; keep it as /proc/abc/ns/net so the error
  // shows the pid the user typed, not a /var/run/netns path never meant.
  if (numeric || pid_form) return "/proc/" + pid + "/ns/net";
  return "/var/run/netns/" + ref;
}

namespace {

const char* file_kind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a regular file";
}

// The kind of a failed open(2) of a namespace path. Only ENOENT and ENOTDIR
// say the namespace is not there (a CNI DEL then has nothing to remove);
// any other failure (EMFILE, EACCES, ...) says nothing about the namespace
// and must reach the caller as a failure, errno included.
ErrorKind open_failure_kind(int err) {
  if (err == ENOENT || err == ENOTDIR) return ErrorKind::NetnsNotFound;
  if (err == ELOOP || err == ENAMETOOLONG || err == EINVAL) return ErrorKind::InvalidArgument;
  return ErrorKind::Io;
}

Error open_failure(const std::string& what, int err) {
  Error e = system_error(open_failure_kind(err), what, err);
  if (err == EMFILE || err == ENFILE)
    e.message += std::string(" (out of file descriptors: ") + (err == EMFILE ? "EMFILE" : "ENFILE") + ")";
  return e;
}

// Checks, without opening the file for reading (a FIFO would block the
// open forever, a device could act on it), that `probe` (an O_PATH
// descriptor) is on nsfs. NS_GET_NSTYPE then tells a network namespace
// from another kind on the descriptor opened for reading; on kernels
// without it (before 4.11), "on nsfs" is all that can be checked.
Status check_on_nsfs(int probe, const struct stat& st, const std::string& path) {
  if (!S_ISREG(st.st_mode))
    return Error{ErrorKind::InvalidArgument, path + " is not a network namespace (it is " + file_kind(st.st_mode) + ")", 0};
  struct statfs sfs {};
  if (::fstatfs(probe, &sfs) != 0) return open_failure("statfs " + path, errno);
  if (sfs.f_type != static_cast<decltype(sfs.f_type)>(NSFS_MAGIC))
    return Error{ErrorKind::InvalidArgument, path + " is not a network namespace", 0};
  return {};
}

Status check_is_netns(int fd, const std::string& path) {
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0 || type == CLONE_NEWNET) return {};
  return Error{ErrorKind::InvalidArgument, path + " is not a network namespace (it is another kind of namespace)", 0};
}

}  // namespace

Result<Netns> Netns::open(const std::string& path) {
  const std::string what = "open network namespace " + path;
  Fd probe(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!probe.valid()) return open_failure(what, errno);
  struct stat st {};
  if (::fstat(probe.get(), &st) != 0) return open_failure("stat " + path, errno);
  if (Status s = check_on_nsfs(probe.get(), st, path); !s) return s.error();
  // setns, flock and ioctl need a descriptor opened for reading (O_PATH
  // ones are refused with EBADF): reopen this very inode through /proc, so
  // that no rename of `path` in between can swap in another file.
  const std::string self = "/proc/self/fd/" + std::to_string(probe.get());
  Fd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return open_failure(what, errno);
  if (Status s = check_is_netns(fd.get(), path); !s) return s.error();
  Netns ns;
  ns.fd_ = std::move(fd);
  ns.path_ = path;
  ns.dev_ = st.st_dev;
  ns.ino_ = st.st_ino;
  return ns;
}

Result<Netns> Netns::current() { return open("/proc/thread-self/ns/net"); }

Result<NetnsGuard> NetnsGuard::enter(const Netns& target) {
  NetnsGuard g;
  Fd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original.valid()) return system_error(ErrorKind::Io, "open the current network namespace", errno);
  // Already there (weir-init, `--netns self`): nothing to switch, and no
  // CAP_SYS_ADMIN needed, which an init container usually lacks.
  struct stat st {};
  if (::fstat(original.get(), &st) == 0 && st.st_dev == target.dev() && st.st_ino == target.ino()) return g;
  if (::setns(target.fd(), CLONE_NEWNET) != 0) {
    int err = errno;
    std::string msg = "enter network namespace " + target.path();
    if (err == EPERM) msg += " (setns needs CAP_SYS_ADMIN)";
    return system_error(ErrorKind::Kernel, msg, err);  // still where it was: nothing to undo
  }
  g.original_ = std::move(original);
  return g;
}

NetnsGuard::NetnsGuard(NetnsGuard&& o) noexcept : original_(std::move(o.original_)) {}

NetnsGuard::~NetnsGuard() {
  if (!original_.valid()) return;
  // Staying in the wrong namespace would make every later operation of this
  // thread act on the wrong network: not recoverable.
  if (::setns(original_.get(), CLONE_NEWNET) != 0) std::abort();
}

Result<NetnsLock> NetnsLock::acquire(const Netns& ns, int timeout_ms) {
  // A file description of its own (not a dup of ns's, which would share the
  // lock with it): reopening the descriptor through /proc gives one on the
  // same nsfs inode. The lock goes with this descriptor.
  const std::string self = "/proc/self/fd/" + std::to_string(ns.fd());
  int raw = ::open(self.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) return system_error(ErrorKind::Io, "reopen network namespace " + ns.path() + " to lock it", errno);
  NetnsLock lock;
  lock.fd_ = Fd(raw);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (::flock(raw, LOCK_EX | LOCK_NB) == 0) return lock;
    if (errno != EWOULDBLOCK && errno != EINTR) return system_error(ErrorKind::Io, "lock network namespace " + ns.path(), errno);
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Error{ErrorKind::LockTimeout, "another weir is changing netns " + ns.path() +
                                           "; lock not obtained within " + std::to_string(timeout_ms) + " ms",
               EWOULDBLOCK};
}

}  // namespace weir
