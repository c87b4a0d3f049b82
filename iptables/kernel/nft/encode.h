// The batch the nftables filter sends (internal to kernel/nft/): canonical
// policy -> netlink messages, native expressions only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "kernel/nft/netlink.h"
#include "rules/policy.h"

namespace weir::nft::netlink {

struct Batch {
  Messages messages;
  uint32_t last_seq = 0;                 // the last message that asks for an ack
  std::map<uint32_t, std::string> what;  // per sequence number: "rule 3 of chain ip_nat_WEIR_OUTPUT"
  std::string describe(uint32_t seq) const;
};

// Begin, [add + delete table weir when it exists], add table weir (EXCL) with
// every chain, set and rule of `wanted` (canonical), [end]. Without the end
// (a probe) the kernel checks and validates everything, then aborts.
// Deleting costs the closing of the socket an RCU grace period, and the
// fresh pod namespace, the common case, has nothing to delete.
// `refused_rule`: the test hook of NftOptions.
Batch build_batch(Socket& s, const CapturePolicy& wanted, bool with_end, bool table_exists, bool refused_rule);

}  // namespace weir::nft::netlink
