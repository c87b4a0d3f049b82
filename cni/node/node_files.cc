#include "cni/node/node_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

namespace weir::node {
namespace {

constexpr size_t kMaxConfBytes = 1024 * 1024;

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Error io(const std::string& what, int err = errno) { return system_error(ErrorKind::Io, what, err); }

Status write_all(int fd, const char* data, size_t size, const std::string& path) {
  for (size_t done = 0; done < size;) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io("write " + path);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<std::string> read_file(const std::string& path, size_t limit) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return io("open " + path);
  std::string text;
  char buf[65536];
  while (text.size() <= limit) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io("read " + path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  if (text.size() > limit) return Error{ErrorKind::Io, path + " is larger than " + std::to_string(limit) + " bytes", 0};
  return text;
}

Status fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.ok()) return io("open " + dir);
  if (::fsync(fd.get()) != 0) return io("fsync " + dir);
  return {};
}

// Writes `size` bytes from `data` to a fresh temporary file in `dir`, with
// `mode`, `uid`, `gid`, fsynced, then renames it to `name`.
Status replace_atomically(const std::string& dir, const std::string& name, const char* data, size_t size, mode_t mode,
                          uid_t uid, gid_t gid) {
  const std::string final_path = dir + "/" + name;
  const std::string tmp = dir + "/.weir-tmp-" + std::to_string(::getpid()) + "-" + name;
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.ok()) return io("create " + tmp);
  auto fail = [&](Error e) {
    fd.reset();
    ::unlink(tmp.c_str());
    return e;
  };
  if (Status s = write_all(fd.get(), data, size, tmp); !s.ok()) return fail(s.error());
  if (::fchown(fd.get(), uid, gid) != 0 && errno != EPERM) return fail(io("chown " + tmp));
  if (::fchmod(fd.get(), mode) != 0) return fail(io("chmod " + tmp));
  if (::fsync(fd.get()) != 0) return fail(io("fsync " + tmp));
  fd.reset();
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) return fail(io("rename " + tmp + " to " + final_path));
  return fsync_dir(dir);
}

}  // namespace

Result<std::vector<ConfFile>> read_conf_dir(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return io("read directory " + dir);
  std::vector<ConfFile> files;
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (!conf_kind(name)) continue;
    struct stat st{};
    if (::stat((dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    auto text = read_file(dir + "/" + name, kMaxConfBytes);
    if (!text.ok()) {
      if (text.error().sys_errno == ENOENT) continue;  // removed since the listing
      files.push_back({name, ""});                       // unreadable: does not parse
      continue;
    }
    files.push_back({name, std::move(text.value())});
  }
  return files;
}

Status write_file_atomic(const std::string& dir, const std::string& name, const std::string& text, const std::string& mode_from) {
  struct stat st{};
  mode_t mode = 0644;
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  const std::string ref = dir + "/" + (mode_from.empty() ? name : mode_from);
  if (::stat(ref.c_str(), &st) == 0) {
    mode = st.st_mode & 07777;
    uid = st.st_uid;
    gid = st.st_gid;
  }
  return replace_atomically(dir, name, text.data(), text.size(), mode, uid, gid);
}

Status apply_changes(const std::string& dir, const std::vector<FileChange>& changes) {
  for (const auto& c : changes) {
    if (c.op == FileChange::Op::Write) {
      if (Status s = write_file_atomic(dir, c.name, c.text, c.mode_from); !s.ok()) return s;
    } else {
      const std::string path = dir + "/" + c.name;
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io("remove " + path);
      if (Status s = fsync_dir(dir); !s.ok()) return s;
    }
  }
  return {};
}

std::optional<FileFingerprint> fingerprint(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileFingerprint{static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino),
                         static_cast<long long>(st.st_size), static_cast<long long>(st.st_mtim.tv_sec),
                         static_cast<long long>(st.st_mtim.tv_nsec)};
}

bool same_content(const std::string& source, const std::string& installed) {
  struct stat a{}, b{};
  if (::stat(source.c_str(), &a) != 0 || ::stat(installed.c_str(), &b) != 0) return false;
  if (a.st_size != b.st_size || !S_ISREG(b.st_mode) || (b.st_mode & 0111) == 0) return false;
  const size_t limit = static_cast<size_t>(a.st_size);
  auto x = read_file(source, limit);
  auto y = read_file(installed, limit);
  return x.ok() && y.ok() && x.value() == y.value();
}

Result<bool> install_binary(const std::string& source, const std::string& bin_dir) {
  const std::string target = bin_dir + "/" + kPluginType;
  if (same_content(source, target)) return false;
  struct stat st{};
  if (::stat(source.c_str(), &st) != 0) return io("plugin binary " + source);
  // A binary is at most a few MiB: read it whole.
  auto bytes = read_file(source, static_cast<size_t>(st.st_size) + 1);
  if (!bytes.ok()) return bytes.error();
  struct stat dst{};
  if (::stat(bin_dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode)) return io("CNI bin dir " + bin_dir, ENOTDIR);
  if (Status s = replace_atomically(bin_dir, kPluginType, bytes->data(), bytes->size(), 0755, ::geteuid(), ::getegid()); !s.ok()) return s.error();
  return true;
}

Status remove_binary(const std::string& bin_dir) {
  const std::string target = bin_dir + "/" + kPluginType;
  if (::unlink(target.c_str()) != 0 && errno != ENOENT) return io("remove " + target);
  return {};
}

Result<std::string> run_version(const std::string& binary, int timeout_ms) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return io("pipe");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return io("pipe");
  }
  Fd in_r(in[0]), in_w(in[1]), out_r(out[0]), out_w(out[1]);
  pid_t pid = ::fork();
  if (pid < 0) return io("fork");
  if (pid == 0) {
    ::dup2(in_r.get(), STDIN_FILENO);
    ::dup2(out_w.get(), STDOUT_FILENO);
    char cmd[] = "CNI_COMMAND=VERSION";
    char path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char* envp[] = {cmd, path, nullptr};
    char* argv[] = {const_cast<char*>(binary.c_str()), nullptr};
    ::execve(binary.c_str(), argv, envp);
    ::_exit(127);
  }
  in_r.reset();
  out_w.reset();
  static const char kInput[] = "{\"cniVersion\":\"1.0.0\"}";
  (void)!::write(in_w.get(), kInput, sizeof kInput - 1);
  in_w.reset();
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out_r.get(), POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[4096];
    ssize_t n = ::read(out_r.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (text.size() < 65536) text.append(buf, static_cast<size_t>(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Error{ErrorKind::Io, binary + " VERSION did not answer within " + std::to_string(timeout_ms) + " ms", 0};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = WIFEXITED(status) ? "exited with " + std::to_string(WEXITSTATUS(status)) : "was killed by signal " + std::to_string(WTERMSIG(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) why += " (could not be executed)";
    return Error{ErrorKind::Io, binary + " VERSION " + why + (text.empty() ? "" : ": " + text), 0};
  }
  try {
    auto doc = nlohmann::json::parse(text);
    if (!doc.is_object() || !doc.contains("supportedVersions") || !doc["supportedVersions"].is_array()) {
      return Error{ErrorKind::Io, binary + " VERSION answered without supportedVersions: " + text, 0};
    }
  } catch (const nlohmann::json::exception&) {
    return Error{ErrorKind::Io, binary + " VERSION did not answer with JSON: " + text, 0};
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace weir::node
