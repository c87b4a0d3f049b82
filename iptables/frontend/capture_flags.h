// The capture flags every front end shares (`weir`, `weir-init`): binds them
// onto a CLI11 App and, after parsing, builds a CaptureSpec from them.
//
// The flags are the table of spec fields (rules/spec_fields.h), one flag per
// field, plus --resolv-conf and --config; nothing here lists the fields.
//
// Layering, lowest first: the CaptureSpec defaults (or a base the caller
// passes), then --config FILE (a JSON spec, see spec.h merge_json), then only
// the flags the user actually gave (on the command line or, when an env prefix
// is set, through the environment). Values are parsed by the table's parsers
// (one grammar for every input), and messages name what the user wrote, the
// flag or the variable:
//   "--inbound-ports: 70000 is not a port (1-65535)"
//   "WEIR_DROP_INVALID: \"yes\" is not true or false (or 1 or 0)".
//
// Usage:
//   weir::CaptureFlags flags;               // must outlive app.parse()
//   flags.bind(app, {.env_prefix = "WEIR_"});
//   app.parse(argc, argv);
//   weir::Result<weir::CaptureSpec> spec = flags.build();
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"
#include "rules/spec.h"
#include "rules/spec_fields.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace weir {

struct CaptureFlagOptions {
  // When not empty, each flag can also come from the environment variable
  // PREFIX + the long name in upper case with '-' -> '_', e.g. "WEIR_" gives
  // WEIR_OUTBOUND_PORT, WEIR_PROXY_UID, WEIR_REDIRECT_DNS, WEIR_CONFIG.
  // A flag on the command line wins over its variable. Switches read
  // true/false/1/0 (any case) from their variable.
  std::string env_prefix;
  // The help section the flags are listed under.
  std::string group = "Capture";
  // Whether to offer --config FILE.
  bool config_flag = true;
};

// Flags (each list flag also takes a comma list and may be repeated), from the
// table: --outbound-port --inbound-port --proxy-uid --proxy-gid (default: the
// UIDs given) --inbound-ports ("*" or list with ranges) --exclude-inbound-ports
// --exclude-inbound-cidrs --inbound-tunnel-port (0 = none) --outbound-cidrs
// ("*" or list) --exclude-outbound-cidrs --outbound-ports
// --exclude-outbound-ports --exclude-interfaces --kube-virt-interfaces
// --ip-families ipv4|ipv6|dual --inbound-mode redirect|tproxy --tproxy-mark
// --tproxy-route-table --redirect-dns --capture-all-dns --dns-servers LIST
// --dns-port --drop-invalid --backend auto|nftables|iptables; and
// --resolv-conf PATH, --config FILE.
// --dns-servers and --resolv-conf capture DNS only to those nameservers
// (captureAll false); they need DNS capture on (--redirect-dns or the config).
class CaptureFlags {
 public:
  CaptureFlags() = default;
  // CLI11 keeps pointers into this object: it must not move once bound.
  CaptureFlags(const CaptureFlags&) = delete;
  CaptureFlags& operator=(const CaptureFlags&) = delete;

  // Adds the flags to `app`. Call once per object.
  void bind(CLI::App& app, const CaptureFlagOptions& opts = {});

  // After parsing: `base`, then the config file, then the flags given.
  // Errors name the flag (or the config file) and the bad value; the result
  // is validated (spec.h validate()).
  Result<CaptureSpec> build(CaptureSpec base = {}) const;

  // True when the user gave any capture flag or --config.
  bool any_given() const;

 private:
  struct Bound {
    const SpecField* field = nullptr;  // nullptr: --resolv-conf
    std::string flag;                  // without "--"
    FieldArity arity = FieldArity::Value;
    std::string env;                   // empty without an env prefix
    CLI::Option* option = nullptr;
    std::vector<std::string> values;
    bool on = false;  // switches
  };
  std::optional<std::string> given(const Bound& b, std::string& what) const;
  std::optional<std::string> config_path() const;

  std::deque<Bound> bound_;  // deque: CLI11 holds pointers into elements
  std::string env_prefix_;
  CLI::Option* config_option_ = nullptr;
  std::string config_env_;
  std::string config_path_;
};

// Small parsers front ends also use for their own flags: the grammar of
// rules/spec_fields.h. `what` names the flag in the message.
// One port, 1-65535 ("8080"); a range is an error.
Result<uint16_t> parse_port_value(const std::string& what, const std::string& text);
// An unsigned 32-bit number, decimal or 0x-hex ("1337", "0x539").
Result<uint32_t> parse_u32_value(const std::string& what, const std::string& text);

// The nameservers of a resolv.conf file ("nameserver ADDR" lines; an IPv6
// zone such as "%eth0" is dropped). Io error when the file cannot be read,
// InvalidSpec when it names no nameserver or a malformed one.
Result<std::vector<Cidr>> read_resolv_conf(const std::string& path);
// The same, but a file without a nameserver line gives an empty list (for
// Istio's dialect, which then turns DNS capture off with a warning).
Result<std::vector<Cidr>> read_nameservers(const std::string& path);

// The whole of a regular file of at most `max_bytes`. Io errors, each naming
// `path`: it does not exist or cannot be opened (errno's text), it is a
// directory, a FIFO or another non-regular file (never opened for waiting:
// a FIFO does not block), or it is larger than `max_bytes`.
Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes);

}  // namespace weir
