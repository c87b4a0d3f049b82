// The side-effecting layer behind a small interface, so another backend
// (nftables) can join later. A Backend works on the network namespace of the
// calling thread; callers enter the target namespace first (see netns.h) and
// serialize writers with NetnsLock.
#pragma once

#include <memory>
#include <vector>

#include "rules/model.h"

namespace weir {

class Backend {
 public:
  virtual ~Backend() = default;

  // Installs `plan` so that weir's rules are exactly the plan's: creates or
  // replaces weir's chains and its one jump per built-in chain, removes weir
  // chains the plan no longer has, installs the policy routes. Touches no
  // other rule. All-or-nothing: on error every table, family and route
  // already changed is put back as it was. Idempotent.
  virtual Status apply(const RulePlan& plan) = 0;

  // Reads weir's live rules (weir's chains and jumps only, with counters) and
  // weir's policy routes for the given families. Tables the kernel does not
  // have read as absent, not as errors.
  virtual Result<RulePlan> read(const std::vector<Family>& families) = 0;

  // Removes all of weir's jumps, chains and policy routes for the families.
  // Succeeds when there is nothing to remove. All-or-nothing like apply.
  virtual Status remove(const std::vector<Family>& families) = 0;
};

// The libiptc (legacy xtables) backend, with policy routes through libnl.
std::unique_ptr<Backend> make_iptc_backend();

// True when this namespace's kernel has IPv6 (so IPv6 rules are required
// whenever the spec asks for them: skipping them would let IPv6 bypass the proxy).
bool kernel_has_ipv6();

}  // namespace weir
