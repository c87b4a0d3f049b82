// The nftables form of a capture policy. Pure: the nftables filter
// (kernel/nft/) encodes canonical(policy) as netlink messages, and
// `weir plan --backend nftables` prints it as `nft -f` input or nft JSON.
//
// The shape: one table `inet weir` holds both families.
//  - Base chains, one per stage and hook the policy uses, shared by the
//    families: "raw_prerouting", "raw_output" (type filter, priority -300),
//    "mangle_prerouting" (filter, -150), "mangle_output" (type route, -150: a
//    mark set there re-routes the packet, as xtables' mangle OUTPUT does),
//    "nat_prerouting", "nat_output" (type nat, -100). A family's base-chain
//    steps sit there, each guarded by `meta nfproto ipv4|ipv6`.
//  - Regular chains, one per family, stage and policy chain:
//    "ip_nat_WEIR_OUTPUT", "ip6_mangle_WEIR_INBOUND" (ip/ip6 as nft names the
//    families), reached only from their family's base-chain steps.
//  - A port or CIDR set of more than one element is an anonymous interval set
//    (any size); one element is a plain comparison.
//  - Every rule has a counter and its reason as comment.
//  - Native expressions only: REDIRECT -> redirect, TPROXY -> tproxy + meta
//    mark set + accept, CT zone -> ct zone set, owner -> meta skuid/skgid,
//    conntrack -> ct state, CONNMARK -> ct mark set meta mark / meta mark set
//    ct mark, mark -> meta mark and M == V.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/error.h"
#include "rules/policy.h"

namespace weir::nft {

inline constexpr const char* kTable = "weir";  // family inet
// nft keeps at most 128 bytes of comment, with its NUL.
inline constexpr size_t kCommentMax = 127;

const char* stage_name(Stage s);  // "raw" / "mangle" / "nat"
const char* hook_name(Hook h);    // "prerouting" / "output"
int stage_priority(Stage s);      // -300 / -150 / -100
const char* family_name(Family f);  // "ip" / "ip6" (nft's words)
// "nat" for the nat stage, "route" for mangle output, else "filter".
const char* chain_type(Stage s, Hook h);

// "nat_prerouting": the base chain of a stage at a hook.
std::string base_chain_name(Stage s, Hook h);
// "ip_nat_WEIR_OUTPUT": a family's regular chain.
std::string chain_name(Family f, Stage s, const std::string& policy_chain);

// What a chain name of table weir stands for; nullopt for a name weir does
// not make.
struct ChainRef {
  std::optional<Family> family;  // unset for a base chain
  Stage stage = Stage::Nat;
  std::optional<Hook> hook;      // set for a base chain
  std::string name;              // the policy chain's name ("WEIR_OUTPUT", or "PREROUTING"/"OUTPUT")
};
std::optional<ChainRef> parse_chain_name(const std::string& name);

// The step's reason with its sets filled in (as fill_reason does), made a
// valid nft comment: at most kCommentMax bytes ("..." at the end when cut),
// printable ASCII, no double quote.
std::string comment_text(const Step& s);

// Error (InvalidSpec) when the policy cannot be written as nft rules: ports
// without tcp/udp, a redirect or tproxy without tcp/udp, an input interface
// at output or an output interface at prerouting, an owner outside output,
// an unknown match or target.
Status check(const CapturePolicy& policy);

// The policy as the nftables filter installs and reads it back: families V4
// then V6; stages raw, mangle, nat; in each stage the base chains that have
// steps (prerouting, output) first, then the regular chains in the policy's
// order; sets of more than one element sorted with overlaps merged (CIDRs as
// the fewest prefixes covering the same addresses); reasons replaced by
// comment_text. Routes are carried over. Pure and idempotent.
CapturePolicy canonical(const CapturePolicy& policy);

// A set element as the kernel stores it in an interval set: the half-open
// range [from, to) of keys in network byte order; `to` empty = up to the end
// of the key space.
struct KeyRange {
  std::vector<uint8_t> from;
  std::vector<uint8_t> to;
  bool operator==(const KeyRange&) const = default;
};
std::vector<KeyRange> key_ranges(const std::vector<PortRange>& ports);
std::vector<KeyRange> key_ranges(const std::vector<Cidr>& cidrs, Family f);
// Back: ranges of 2-byte keys to port ranges; of 4/16-byte keys to the
// fewest CIDRs covering them.
std::vector<PortRange> ports_of(const std::vector<KeyRange>& ranges);
std::vector<Cidr> cidrs_of(const std::vector<KeyRange>& ranges, Family f);

// How render_text prints.
struct TextOptions {
  // Each rule's counter with its values ("counter packets 12 bytes 720", as
  // `nft list` prints it): for live rules (weir show). Else plain "counter".
  bool counters = false;
  // Only the table, as `nft list table inet weir` shows it: without the
  // lines that make the text a transaction replacing weir's previous table.
  bool listing = false;
};

// One step as nft prints it in a chain of table weir, after its family guard
// ("meta l4proto tcp tcp dport != 15008 counter jump ip_nat_WEIR_IN_REDIRECT
// comment \"...\""). `base`: the step is in a base chain (gets the guard).
// `counters`: "counter packets N bytes M" with the step's counters.
std::string step_text(const Step& step, Family f, Stage stage, bool base, bool counters = false);

// canonical(policy) as `nft -f` input: creates table inet weir if missing,
// deletes it, and defines it again, so that running it replaces weir's
// previous table in one transaction; then the policy routes as comment
// lines (they are not nf_tables'). Call check() first. Either form is
// accepted by `nft -f` (a listing adds to a table rather than replacing it).
std::string render_text(const CapturePolicy& policy, const TextOptions& opts = {});

// The same transaction in nft's JSON syntax (`nft -j -f`). With
// opts.listing, the table's objects as `nft --json list table inet weir`
// prints them (no add/delete commands), plus a "routes" member beside
// "nftables" for the policy routes; opts.counters gives each rule's counter
// its values ({"counter": {"packets": N, "bytes": M}}).
nlohmann::json render_json(const CapturePolicy& policy, const TextOptions& opts = {});

}  // namespace weir::nft
