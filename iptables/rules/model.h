// The rule model: passive structs describing netfilter rules the way weir
// installs and reads them. The planner builds it, the renderer prints it, the
// libiptc backend encodes and decodes it, so check compares like with like.
//
// A Rule has one fixed slot per match weir knows, in the order the backend
// encodes them (and iptables-save therefore prints them):
//   -s -d -i -o -p, tcp/udp ports, multiport, owner, conntrack, mark,
//   connmark, comment, target.
// Matches weir does not know (found in a live table) land in `unknown` so a
// diff can still show them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rules/error.h"

namespace weir {

enum class Family { V4, V6 };
const char* to_string(Family f);  // "ipv4" / "ipv6"

struct Cidr {
  Family family = Family::V4;
  std::array<uint8_t, 16> addr{};  // network byte order; V4 uses the first 4
  uint8_t prefix = 32;             // 0..32 for V4, 0..128 for V6

  bool operator==(const Cidr&) const = default;
};

// Parses "198.18.0.1", "198.18.0.0/15", "fd00::1", "fd00::/8". A bare address
// gets a full-length prefix. Host bits below the prefix are an error.
Result<Cidr> parse_cidr(const std::string& text);
// "198.18.0.0/15", "fd00::/8", always with the prefix (as iptables-save does).
std::string format_cidr(const Cidr& c);
// The address alone, without prefix.
std::string format_addr(const Cidr& c);
bool cidr_contains(const Cidr& net, const Cidr& host);

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;  // == first for a single port
  bool operator==(const PortRange&) const = default;
};
// "8080" or "8000-8100" (also "8000:8100"); rejects 0, >65535, reversed.
// Each port is a number in the one grammar below ("0x1f90" is 8080).
Result<PortRange> parse_port_range(const std::string& text);

// The one number grammar of every input weir reads (flags, environment
// variables, annotations, the text forms in JSON, the Istio and Linkerd
// dialects, ports inside ranges): decimal digits, or "0x"/"0X" followed by hex
// digits; no sign, no spaces, no fraction, at most 4294967295. Leading zeros
// stay decimal ("010" is 10, never octal). Callers say what the number is for.
struct NumberText {
  enum Problem {
    None,       // `value` holds the number
    NotNumber,  // not digits at all ("x", "", "-1", "1e3")
    Fraction,   // digits with a fractional part ("15001.5"): not a whole number
    TooLarge,   // digits above 4294967295
  };
  Problem problem = NotNumber;
  uint32_t value = 0;
};
NumberText read_number(const std::string& text);
// `text` cut to at most `max` characters (with "..." when cut), for messages
// that quote what the user gave: a 49,000-character list must not become a
// 49,000-character message.
std::string clip(const std::string& text, std::size_t max = 64);
std::string format_port_range(const PortRange& r, char sep = '-');

enum class Proto { Any, Tcp, Udp };
const char* to_string(Proto p);  // "all" / "tcp" / "udp"

// -m tcp / -m udp --sport/--dport (one port or one range); proto is the rule's.
struct PortMatch {
  PortRange range;
  bool negated = false;
  bool operator==(const PortMatch&) const = default;
};

// -m multiport --dports (revision 1): at most 15 ports, a range counts as two.
struct Multiport {
  std::vector<PortRange> ports;
  bool negated = false;
  bool operator==(const Multiport&) const = default;
};
constexpr int kMultiportMaxPorts = 15;
// Packs a port list into groups that each fit one multiport rule.
std::vector<std::vector<PortRange>> pack_multiport(const std::vector<PortRange>& ports);

// -m owner --uid-owner / --gid-owner (revision 1). Numeric only: weir never
// resolves names, so no NSS look-up ever happens.
struct Owner {
  enum class Kind { Uid, Gid } kind = Kind::Uid;
  uint32_t id = 0;
  bool negated = false;
  bool operator==(const Owner&) const = default;
};

// -m conntrack --ctstate (revision 3). Bits as in the kernel's XT_CONNTRACK_STATE_*.
struct Conntrack {
  enum State : uint32_t {
    kInvalid = 1u << 0,
    kEstablished = 1u << 1,
    kRelated = 1u << 2,
    kNew = 1u << 3,
    kUntracked = 1u << 6,
  };
  uint32_t states = 0;
  bool negated = false;
  bool operator==(const Conntrack&) const = default;
};

// -m mark / -m connmark --mark value[/mask] (revision 1).
struct MarkMatch {
  uint32_t value = 0;
  uint32_t mask = 0xffffffff;
  bool negated = false;
  bool operator==(const MarkMatch&) const = default;
};

// Targets.
struct Verdict {
  enum Kind { Accept, Drop, Return } kind = Accept;
  bool operator==(const Verdict&) const = default;
};
struct Jump {
  std::string chain;
  bool operator==(const Jump&) const = default;
};
struct Redirect {  // -j REDIRECT --to-ports N (nat)
  uint16_t port = 0;
  bool operator==(const Redirect&) const = default;
};
struct Tproxy {  // -j TPROXY --on-port N --on-ip 0.0.0.0|:: --tproxy-mark M/MASK (mangle, rev 1)
  uint16_t port = 0;
  uint32_t mark = 0;
  uint32_t mask = 0xffffffff;
  bool operator==(const Tproxy&) const = default;
};
struct SetMark {  // -j MARK --set-xmark V/MASK (rev 2)
  uint32_t value = 0;
  uint32_t mask = 0xffffffff;
  bool operator==(const SetMark&) const = default;
};
struct Connmark {  // -j CONNMARK --save-mark|--restore-mark (rev 1, full masks)
  enum Mode { Save, Restore } mode = Save;
  bool operator==(const Connmark&) const = default;
};
struct CtZone {  // -j CT --zone N (raw, rev 2)
  uint16_t zone = 0;
  bool operator==(const CtZone&) const = default;
};
// A target weir does not know, read from a live table.
struct UnknownTarget {
  std::string name;
  bool operator==(const UnknownTarget&) const = default;
};
using Target = std::variant<Verdict, Jump, Redirect, Tproxy, SetMark, Connmark, CtZone, UnknownTarget>;

// Packet and byte counters of a live rule. Never part of equality: two rules
// that differ only in counters are the same rule.
struct Counters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  bool operator==(const Counters&) const { return true; }
};

struct Rule {
  std::optional<Cidr> src;
  bool src_negated = false;
  std::optional<Cidr> dst;
  bool dst_negated = false;
  std::string in_iface;  // empty = any
  bool in_negated = false;
  std::string out_iface;
  bool out_negated = false;
  Proto proto = Proto::Any;
  bool proto_negated = false;
  std::optional<PortMatch> sport;  // needs proto tcp or udp
  std::optional<PortMatch> dport;
  std::optional<Multiport> multiport;  // destination ports; needs proto tcp or udp
  std::optional<Owner> owner;
  std::optional<Conntrack> conntrack;
  std::optional<MarkMatch> mark;
  std::optional<MarkMatch> connmark;
  std::string comment;                       // -m comment, empty = none
  std::vector<std::string> unknown_matches;  // names of matches weir does not decode
  Target target = Verdict{Verdict::Accept};
  Counters counters;

  bool operator==(const Rule&) const = default;
};

struct Chain {
  std::string name;
  std::vector<Rule> rules;
  // Built-in chains read from a namespace: how many rules of other tools sit
  // before weir's jumps. weir installs its jumps at the head (0), so that no
  // rule added later can let traffic bypass capture; more than 0 is drift.
  unsigned foreign_before = 0;
  bool operator==(const Chain&) const = default;
};

// Built-in chains weir hooks into, per table.
bool is_builtin_chain(const std::string& table, const std::string& chain);

// Every chain weir owns starts with this prefix; a rule in a built-in chain
// is weir's exactly when it jumps to such a chain.
inline constexpr const char* kChainPrefix = "WEIR_";
bool is_weir_chain(const std::string& name);
bool is_weir_jump(const Rule& r);

// weir's part of one table. `chains` holds weir's own chains and, under the
// built-in chain's name, the rules weir puts at the head of that built-in
// chain (exactly one jump each). Chains appear in the order they are created.
struct Table {
  std::string name;  // "nat", "mangle", "raw", "filter"
  std::vector<Chain> chains;
  bool operator==(const Table&) const = default;
  const Chain* find(const std::string& chain) const;
};

// weir's rules for one address family.
struct Ruleset {
  Family family = Family::V4;
  std::vector<Table> tables;
  bool operator==(const Ruleset&) const = default;
  const Table* find(const std::string& table) const;
};

// A policy-routing entry for TPROXY: `ip rule add fwmark MARK lookup TABLE`
// plus `ip route add local 0.0.0.0/0 (or ::/0) dev lo table TABLE`.
struct PolicyRoute {
  Family family = Family::V4;
  uint32_t fwmark = 0;
  uint32_t table = 0;
  bool operator==(const PolicyRoute&) const = default;
};

// Everything weir installs in one network namespace.
struct RulePlan {
  std::vector<Ruleset> rulesets;     // at most one per family, V4 first
  std::vector<PolicyRoute> routes;   // TPROXY only
  bool operator==(const RulePlan&) const = default;
  const Ruleset* find(Family f) const;
};

}  // namespace weir
