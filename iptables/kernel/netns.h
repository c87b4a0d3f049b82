// Network namespaces: naming a target, entering it for the calling thread and
// coming back on every path (RAII), and a lock that serializes weir's writers
// to one namespace.
#pragma once

#include <string>

#include "rules/error.h"

namespace weir {

// A file descriptor that is closed when it goes out of scope. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { int f = fd_; fd_ = -1; return f; }

 private:
  int fd_ = -1;
};

// Resolves a user's netns reference to a path:
//   "/some/path"  -> as is;  "NAME" -> /var/run/netns/NAME;  "pid:1234" or
//   a number -> /proc/1234/ns/net;  "self" -> /proc/self/ns/net.
std::string netns_path(const std::string& ref);

// An opened network namespace.
class Netns {
 public:
  // Opens `path` and checks that it is a network namespace, without blocking
  // and without opening anything else for reading (a FIFO, a device).
  // Errors: NetnsNotFound only when the path does not exist (ENOENT,
  // ENOTDIR); InvalidArgument when it is not a network namespace (a FIFO, a
  // plain file, another kind of namespace; sys_errno 0); any other failure
  // to open it (EMFILE, EACCES, ...) keeps its errno, kind Io, and says
  // nothing about whether the namespace exists.
  static Result<Netns> open(const std::string& path);
  // The calling thread's current namespace.
  static Result<Netns> current();

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  // Device and inode identify a namespace; equal ids = same namespace.
  unsigned long long dev() const { return dev_; }
  unsigned long long ino() const { return ino_; }
  bool same_as(const Netns& o) const { return dev_ == o.dev_ && ino_ == o.ino_; }

 private:
  Fd fd_;
  std::string path_;
  unsigned long long dev_ = 0, ino_ = 0;
};

// Moves the calling thread into a namespace; the destructor moves it back.
// If moving back fails the process is in an unknown state and aborts: that is
// an impossible state, not an environment failure.
class NetnsGuard {
 public:
  static Result<NetnsGuard> enter(const Netns& target);
  NetnsGuard(NetnsGuard&& o) noexcept;
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  NetnsGuard& operator=(NetnsGuard&&) = delete;
  ~NetnsGuard();

 private:
  NetnsGuard() = default;
  Fd original_;
};

// An exclusive lock for writers to one namespace: flock(2) on the namespace
// itself. Every path to a network namespace (/var/run/netns/NAME,
// /proc/PID/ns/net, a runtime's pin under /run/netns or /var/run/netns)
// opens the one nsfs inode of that namespace, so every weir that writes to
// it (CLI, CNI plugin, init container) meets the same lock, and there is no
// lock file to create, to leave behind on the node, or to need a writable
// /run for. Not the node-wide /run/xtables.lock, which other tools can hold
// for seconds.
class NetnsLock {
 public:
  // Waits up to timeout_ms; LockTimeout when it expires.
  static Result<NetnsLock> acquire(const Netns& ns, int timeout_ms);
  NetnsLock(NetnsLock&&) noexcept = default;

 private:
  NetnsLock() = default;
  Fd fd_;
};

}  // namespace weir
