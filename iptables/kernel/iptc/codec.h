// Encoding model Rules into the kernel's entry layout (struct ipt_entry /
// ip6t_entry followed by its matches and target, each XT_ALIGNed) and back.
// Pure byte work: no handle, no syscall, so it is tested without root.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rules/error.h"
#include "rules/model.h"

namespace weir::iptc {

// One encoded entry. Stored in 8-byte words so the kernel structs inside are
// aligned; `size` is the entry's next_offset.
struct EntryBuf {
  std::vector<uint64_t> words;
  size_t size = 0;
  const void* data() const { return words.data(); }
};

// Encodes `r` for family `f`, matches in the model's fixed order (tcp/udp,
// multiport, owner, conntrack, mark, connmark, comment), then the target.
// A Jump or Verdict becomes iptc's standard target named after the chain or
// verdict, which libiptc resolves at append time. Errors name what cannot be
// encoded (e.g. a multiport match with more than 15 ports).
Result<EntryBuf> encode(const Rule& r, Family f);

// Decodes an entry read from a libiptc handle of family `f`. `target_label`
// is what iptc_get_target()/ip6tc_get_target() returned for it (a verdict, a
// chain name, "" for no target, or a target module's name). Matches and
// targets weir does not know (by name and revision) land in
// Rule::unknown_matches / UnknownTarget. Counters are taken from the entry.
Rule decode(const void* entry, Family f, const char* target_label);

}  // namespace weir::iptc
