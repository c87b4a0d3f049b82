// The nftables packet filter: programs nf_tables in-process over netlink
// (libnftnl builds the messages, libmnl carries them), in the network
// namespace of the calling thread. Never runs nft, never links libnftables,
// never emits an xt (compat) expression.
//
// It owns exactly one table, `inet weir` (its shape: rules/nft/ruleset.h),
// and never dumps the rules of, reads or changes another: every request
// names the table (foreign_rules, below, lists only other tables' names).
//  - apply: reads table weir; when it already is the wanted ruleset nothing
//    is sent; otherwise ONE batch deletes the table (if any) and creates it
//    again with every chain, set and rule of both families. The kernel
//    commits all of it or none.
//  - read: dumps table weir's chains, sets (and their elements) and rules,
//    and raises them into a CapturePolicy; an expression weir does not make
//    becomes Match::unknown (or UnknownTarget), so it shows and is drift.
//  - probe: sends the batch apply would send but without its end message:
//    nf_tables then checks every message (loads what it autoloads, refuses an
//    expression, chain type or hook it lacks), validates the ruleset and
//    aborts the transaction (NFNL_ABORT_VALIDATE, what `nft -c` relies on).
//    Nothing is committed, so nothing a user can see changes. It costs one
//    RCU grace period (an aborted nf_tables transaction waits for one: 10-20
//    ms here), so a caller on a per-pod path should rather apply and fall
//    back on an Unsupported error: apply is all-or-nothing, and a kernel
//    that lacks a chain type or expression fails it with Unsupported.
//  - foreign_rules: one dump of every family's table names (Istio's
//    istio-proxy-* tables) and, for iptables-nft's ip/ip6 nat, mangle and
//    raw tables, of their chain names (ISTIO_*, PROXY_INIT_*): names only,
//    never another table's rules (kernel/nft/foreign.h).
#pragma once

#include <memory>

#include "kernel/packet_filter.h"

namespace weir {

struct NftOptions {
  // Test hook: every batch apply sends carries one more rule the kernel
  // refuses (an expression with no such name), so a test can prove that a
  // refused batch leaves the namespace as it was.
  bool refused_rule = false;
};

std::unique_ptr<PacketFilter> make_nft_filter(const NftOptions& options = {});

}  // namespace weir
