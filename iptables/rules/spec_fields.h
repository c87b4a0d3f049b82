// The table of capture spec fields: one entry per CaptureSpec field, with
// every name an input knows it by and the one parser of its text. The JSON
// merge and printer (spec.h merge_json/to_json), the CLI flags and their
// environment variables (frontend/capture_flags.h) and the weir.dev/*
// annotations (cni/annotations.h) all iterate this table; none lists the
// fields itself. Adding a field here gives it a JSON key, a flag, a WEIR_*
// variable and an annotation at once (tests check each field through each).
//
// Names of a field, from its entry:
//   JSON key     `key`; "dns.port" is the key "port" of the "dns" object
//   flag         "--" + `flag` (e.g. --outbound-port)
//   environment  WEIR_ + `flag` in upper case, '-' -> '_' (WEIR_OUTBOUND_PORT)
//   annotation   "weir.dev/" + `key` (weir.dev/outboundPort, weir.dev/dns.port)
//
// The grammar, the same in every input (flags, environment, annotations, the
// text forms JSON accepts, the Istio and Linkerd dialects):
//   number     decimal digits, or 0x/0X and hex digits ("1337", "0x539"); no
//              sign, no spaces, no fraction ("15001.5" is "not a whole
//              number"); at most 4294967295. Leading zeros are decimal.
//              Marks, route tables, IDs and ports all use it, so a mark
//              written in hex is accepted wherever a mark is.
//   port       a number 1-65535; inboundTunnelPort also takes 0 (none)
//   range      "first-last" or "first:last", both ports, first <= last
//   list       items separated by commas, spaces around items ignored; ""
//              is the empty list; an empty item ("80,,81") is an error
//   selector   "*" (everything) or a list
//   CIDR       an address with an optional decimal prefix ("198.18.0.0/15",
//              "fd00::1" is /128); host bits below the prefix are an error
//              (Istio's annotations alone mask them, with a warning, as
//              Istio does)
//   boolean    true, false, 1 or 0, in any case ("True", "FALSE")
//   names      ipFamilies ipv4|ipv6|dual, mode redirect|tproxy, backend
//              auto|nftables|iptables, kubeVirtExcludes apply|ignore, in
//              any case
// JSON takes JSON numbers and booleans for scalar fields (a port as a string
// is refused, so a quoted number is noticed); tproxyMark and tproxyRouteTable
// also take a string in the number grammar, since JSON has no hex literal;
// lists take an array or one string in the list grammar.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/error.h"
#include "rules/spec.h"

namespace weir {

// How a field is given on a command line.
enum class FieldArity {
  Value,   // one value; given twice, the last wins
  List,    // a list; the flag may be repeated and the parts are joined
  Switch,  // no value on the command line; "true"/"false" in the environment
};

struct SpecField {
  std::string key;         // JSON key, "dns.port" for a key of the dns object
  std::string flag;        // long flag without "--"
  FieldArity arity = FieldArity::Value;
  std::string value_name;  // --help: "--outbound-port PORT"; empty for a switch
  std::string help;
  // Sets the field from its text form (flag value, environment variable,
  // annotation). `what` names the input in errors ("--outbound-port",
  // "annotation weir.dev/outboundPort"); messages start with it. Setting
  // dns.servers turns dns.captureAll off and setting dns.captureAll on clears
  // dns.servers, as --dns-servers and --capture-all-dns always did.
  std::function<Status(CaptureSpec&, const std::string& what, const std::string& text)> set_text;
  // Sets the field from a JSON value; `what` is the JSON key path.
  std::function<Status(CaptureSpec&, const std::string& what, const nlohmann::json& value)> set_json;
  // The field's value as JSON, as to_json prints it and set_json reads it.
  std::function<nlohmann::json(const CaptureSpec&)> get_json;
};

// Every field, in the order flags are applied and listed in --help (order
// matters once: proxyUids comes before proxyGids, which default to them).
const std::vector<SpecField>& spec_fields();
// The field with JSON key `key` ("outboundPort", "dns.port"), or nullptr.
const SpecField* find_spec_field(std::string_view key);

inline constexpr const char* kFieldAnnotationPrefix = "weir.dev/";
std::string field_annotation(const SpecField& f);  // "weir.dev/" + key
// PREFIX + the flag name in upper case with '-' -> '_': WEIR_OUTBOUND_PORT.
std::string flag_env_name(const std::string& prefix, const std::string& flag);

// The scalar parsers of the grammar above. `what` starts each message.
Result<uint16_t> parse_port_text(const std::string& what, const std::string& text);
Result<uint16_t> parse_port_or_none_text(const std::string& what, const std::string& text);  // 0 = none
Result<uint32_t> parse_u32_text(const std::string& what, const std::string& text);
Result<bool> parse_bool_text(const std::string& what, const std::string& text);

}  // namespace weir
