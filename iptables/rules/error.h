// Errors as values. The library never prints and never exits: every fallible
// function returns Result<T>, and only front ends turn an Error into a message,
// an exit code or a CNI error document.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace weir {

// What kind of failure this is. Front ends map kinds to exit codes and CNI
// error codes (see cni/), so add a kind only when a caller must tell it apart.
enum class ErrorKind {
  InvalidSpec,      // the capture spec or a flag/annotation is malformed (CNI 7)
  InvalidArgument,  // other bad input, e.g. a netns path that is not a netns
  NetnsNotFound,    // the target network namespace does not exist
  OwnNetns,         // the target is the caller's own namespace, which it did not allow (CNI 102)
  LockTimeout,      // the per-namespace lock was not obtained in time (CNI 11)
  Kernel,           // the kernel refused an operation (libiptc commit, netlink)
  Unsupported,      // the kernel lacks something weir needs (e.g. IPv6 tables)
  Io,               // reading a file failed
  Internal,         // a bug in weir
};

const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Internal;
  std::string message;  // says what failed and why, with context
  int sys_errno = 0;    // errno of the failing system call, 0 if none

  // Prepends context: Error{..,"Resource busy"}.wrap("commit nat table")
  // gives "commit nat table: Resource busy".
  Error wrap(const std::string& context) const {
    return Error{kind, context + ": " + message, sys_errno};
  }
};

// Builds an Error from errno; message is "what: strerror(errno)".
Error system_error(ErrorKind kind, const std::string& what, int err);

// A value or an Error. Small on purpose: std::expected is C++23.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace weir
