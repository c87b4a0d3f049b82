#include "frontend/capture_flags.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "rules/spec_fields.h"

namespace weir {
namespace {

// The spec fields that have a flag (all of them, spec_fields.h), plus the one
// flag that is no field: --resolv-conf, which reads dns.servers from a file.
constexpr const char* kResolvConfFlag = "resolv-conf";

// A spec file the size of a CNI config's limit times eight: room for lists of
// tens of thousands of entries, not for a mistaken multi-gigabyte file.
constexpr std::size_t kMaxConfigBytes = 4u << 20;
// A resolv.conf is a few lines; glibc reads at most three nameservers.
constexpr std::size_t kMaxResolvConfBytes = 1u << 20;

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

Status merge_config_file(CaptureSpec& spec, const std::string& path, bool* gids_set) {
  const std::string what = "--config " + path;
  Result<std::string> text = read_small_file(path, kMaxConfigBytes);
  if (!text) return text.error().wrap("--config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    return Error{ErrorKind::InvalidSpec, what + ": not JSON: " + e.what()};
  }
  // Validated in build(), once the flags are on top: a flag may fix what the
  // file alone gets wrong (e.g. --inbound-port over a file's clashing port).
  Status st = merge_json(spec, j, MergeCheck::Defer);
  if (!st) return st.error().wrap(what);
  *gids_set = j.is_object() && j.contains("proxyGids");
  return {};
}

const char* file_type(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

}  // namespace

Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return system_error(ErrorKind::Io, path, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return system_error(ErrorKind::Io, path, errno);
  if (!S_ISREG(st.st_mode)) {
    return Error{ErrorKind::Io, path + ": is " + std::string(file_type(st.st_mode)) + ", not a regular file"};
  }
  auto too_large = [&](std::size_t n) {
    return Error{ErrorKind::Io, path + ": " + std::to_string(n) + " bytes or more, larger than the " +
                                    std::to_string(max_bytes) + " bytes weir reads"};
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) return too_large(static_cast<std::size_t>(st.st_size));
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return system_error(ErrorKind::Io, "read " + path, errno);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_bytes) return too_large(text.size());  // grew while we read (or /proc)
  }
  return text;
}

void CaptureFlags::bind(CLI::App& app, const CaptureFlagOptions& opts) {
  env_prefix_ = opts.env_prefix;
  auto add = [&](const SpecField* field, const std::string& flag, FieldArity arity, const std::string& value_name,
                 std::string help) {
    Bound& b = bound_.emplace_back();
    b.field = field;
    b.flag = flag;
    b.arity = arity;
    if (!env_prefix_.empty()) {
      b.env = flag_env_name(env_prefix_, flag);
      help += " [env " + b.env + "]";
    }
    const std::string name = "--" + flag;
    switch (arity) {
      case FieldArity::Switch:
        b.option = app.add_flag(name, b.on, help);
        break;
      case FieldArity::Value:
        b.option = app.add_option(name, b.values, help)
                       ->expected(1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
                       ->type_name(value_name);
        break;
      case FieldArity::List:
        b.option = app.add_option(name, b.values, help)
                       ->expected(1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                       ->type_name(value_name);
        break;
    }
    b.option->group(opts.group);
  };
  for (const SpecField& f : spec_fields()) {
    add(&f, f.flag, f.arity, f.value_name, f.help);
    if (f.key == "dns.servers") {
      add(nullptr, kResolvConfFlag, FieldArity::Value, "PATH", "Capture DNS only to the nameservers in this resolv.conf");
    }
  }
  if (opts.config_flag) {
    std::string help = "JSON capture spec (keys as in spec.h); flags given override it";
    if (!env_prefix_.empty()) {
      config_env_ = flag_env_name(env_prefix_, "config");
      help += " [env " + config_env_ + "]";
    }
    config_option_ = app.add_option("--config", config_path_, help)->type_name("FILE")->group(opts.group);
  }
}

// The value of `b` from the command line, else from its environment variable
// (same grammar either way); nullopt when neither gave it. `what` is set to
// the name the user wrote, so errors name the flag or the variable.
std::optional<std::string> CaptureFlags::given(const Bound& b, std::string& what) const {
  if (b.option->count() > 0) {
    what = "--" + b.flag;
    switch (b.arity) {
      case FieldArity::Switch: return std::string(b.on ? "true" : "false");
      case FieldArity::Value: return b.values.empty() ? std::string() : b.values.back();
      case FieldArity::List: return join(b.values);
    }
  }
  if (b.env.empty()) return std::nullopt;
  const char* v = std::getenv(b.env.c_str());
  if (v == nullptr || *v == '\0') return std::nullopt;
  what = b.env;
  return std::string(v);
}

std::optional<std::string> CaptureFlags::config_path() const {
  if (config_option_ == nullptr) return std::nullopt;
  if (config_option_->count() > 0) return config_path_;
  if (config_env_.empty()) return std::nullopt;
  const char* v = std::getenv(config_env_.c_str());
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

Result<CaptureSpec> CaptureFlags::build(CaptureSpec base) const {
  CaptureSpec spec = std::move(base);
  bool file_gids = false;  // the file set proxyGids itself: --proxy-uid leaves them
  if (auto path = config_path()) {
    if (Status st = merge_config_file(spec, *path, &file_gids); !st) return st.error();
  }
  const std::vector<uint32_t> gids_from_file = spec.proxy_gids;
  bool gid_flag = false;
  bool servers_given = false;
  for (const Bound& b : bound_) {
    std::string what;
    const std::optional<std::string> value = given(b, what);
    if (!value) continue;
    if (b.field == nullptr) {  // --resolv-conf
      Result<std::vector<Cidr>> servers = read_resolv_conf(*value);
      if (!servers) return servers.error().wrap(what);
      spec.dns.capture_all = false;
      spec.dns.servers = std::move(*servers);
      servers_given = true;
      continue;
    }
    // As istio-iptables: the GIDs default to the UIDs. GIDs that were set
    // apart from the UIDs (proxyGids in --config) stay as they are.
    const bool gids_follow = b.field->key == "proxyUids" && spec.proxy_gids == spec.proxy_uids;
    if (Status st = b.field->set_text(spec, what, *value); !st) return st.error();
    if (gids_follow) spec.proxy_gids = spec.proxy_uids;
    if (b.field->key == "proxyGids") gid_flag = true;
    if (b.field->key == "dns.servers") servers_given = true;
  }
  if (file_gids && !gid_flag) spec.proxy_gids = gids_from_file;
  // Nameservers without DNS capture would silently capture nothing.
  if (servers_given && !spec.dns.capture) {
    return Error{ErrorKind::InvalidSpec,
                 "--dns-servers/--resolv-conf: DNS capture is off; add --redirect-dns"};
  }
  if (Status st = validate(spec); !st) return st.error();
  return spec;
}

bool CaptureFlags::any_given() const {
  if (config_path()) return true;
  std::string what;
  return std::any_of(bound_.begin(), bound_.end(), [&](const Bound& b) { return given(b, what).has_value(); });
}

Result<uint16_t> parse_port_value(const std::string& what, const std::string& text) {
  return parse_port_text(what, text);
}

Result<uint32_t> parse_u32_value(const std::string& what, const std::string& text) {
  return parse_u32_text(what, text);
}

Result<std::vector<Cidr>> read_resolv_conf(const std::string& path) {
  Result<std::vector<Cidr>> servers = read_nameservers(path);
  if (servers && servers->empty()) {
    return Error{ErrorKind::InvalidSpec, path + ": no nameserver line, so no DNS server to capture"};
  }
  return servers;
}

Result<std::vector<Cidr>> read_nameservers(const std::string& path) {
  Result<std::string> text = read_small_file(path, kMaxResolvConfBytes);
  if (!text) return text.error().wrap("read resolv.conf");
  std::istringstream in(*text);
  std::vector<Cidr> servers;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    std::istringstream words(line);
    std::string key, addr;
    if (!(words >> key) || key != "nameserver" || !(words >> addr)) continue;
    addr = addr.substr(0, addr.find('%'));  // fe80::1%eth0: the zone is not part of a match
    Result<Cidr> c = parse_cidr(addr);
    if (!c) return c.error().wrap(path + " line " + std::to_string(lineno));
    if (std::find(servers.begin(), servers.end(), *c) == servers.end()) servers.push_back(*c);
  }
  return servers;
}

}  // namespace weir
