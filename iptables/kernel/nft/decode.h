// Reading table inet weir back (internal to kernel/nft/): dumps of that one
// table only, raised into a CapturePolicy in nft::canonical's order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernel/nft/netlink.h"
#include "rules/policy.h"

namespace weir::nft::netlink {

struct LiveSet {
  uint32_t key_len = 0;
  std::vector<KeyRange> ranges;
};

struct LiveChain {
  std::string name;
  bool base = false;
  uint32_t hooknum = 0;
  int32_t prio = 0;
  std::string type;
  uint32_t policy = NF_ACCEPT;
};

struct LiveRule {
  std::string chain;
  RulePtr rule;
};

struct LiveTable {
  bool exists = false;
  std::vector<LiveChain> chains;  // kernel order
  std::map<std::string, LiveSet> sets;
  std::vector<LiveRule> rules;  // kernel order
};


// Gets table inet weir and, when it exists, dumps its chains, sets (with
// their elements) and rules, each request filtered by the table's name.
Result<LiveTable> read_table(Socket& s);

// The live table as a policy: an expression weir does not make becomes
// Match::unknown, an action UnknownTarget, a chain weir does not name a step
// of unknown kind; empty when the table does not exist.
CapturePolicy raise(const LiveTable& t);

// The payload of a get of table inet weir.
void put_table_payload(nlmsghdr* nlh, const void*);

}  // namespace weir::nft::netlink
