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

// NS_GET_NSTYPE answers directly; older kernels lack it, so fall back to
// "is it on nsfs" (which cannot tell a net namespace from a mount namespace).
Status check_is_netns(int fd, const std::string& path) {
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0) {
    if (type == CLONE_NEWNET) return {};
    return Error{ErrorKind::InvalidArgument, path + " is not a network namespace (it is another kind of namespace)"};
  }
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) == 0 && sfs.f_type == static_cast<decltype(sfs.f_type)>(NSFS_MAGIC)) return {};
  return Error{ErrorKind::InvalidArgument, path + " is not a network namespace"};
}

}  // namespace

Result<Netns> Netns::open(const std::string& path) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    int err = errno;
    if (err == ENOENT) return system_error(ErrorKind::NetnsNotFound, "open network namespace " + path, err);
    return system_error(ErrorKind::InvalidArgument, "open network namespace " + path, err);
  }
  Netns ns;
  ns.fd_ = Fd(raw);
  ns.path_ = path;
  struct stat st {};
  if (::fstat(raw, &st) != 0) return system_error(ErrorKind::InvalidArgument, "stat " + path, errno);
  if (Status s = check_is_netns(raw, path); !s) return s.error();
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
