// Policy routing for TPROXY: the rule "fwmark MARK lookup TABLE" and the
// route "local 0.0.0.0/0 (or ::/0) dev lo table TABLE", both carrying weir's
// protocol number so that weir's are told from another tool's look-alikes.
// Works on the calling thread's network namespace. ops (ops.h) decides which
// routes to install or remove and puts them back when its transaction fails.
#pragma once

#include <vector>

#include "rules/error.h"
#include "rules/model.h"

namespace weir {

class PolicyRouting {
 public:
  virtual ~PolicyRouting() = default;

  // weir's policy routes of one family: a "fwmark M lookup T" rule (full
  // mask) whose table T holds a local default route on lo. A family the
  // kernel does not have gives an empty list.
  virtual Result<std::vector<PolicyRoute>> list(Family f) = 0;

  // Installs the rule and the route. Idempotent: what already exists is kept.
  virtual Status install(const PolicyRoute& r) = 0;

  // Removes the rule and the route. Succeeds when they are absent.
  virtual Status remove(const PolicyRoute& r) = 0;
};

// Through rtnetlink (libnl-route-3). Each call opens its own socket, in the
// namespace current at the call: make it anywhere, use it inside the target.
class NetlinkRouting final : public PolicyRouting {
 public:
  Result<std::vector<PolicyRoute>> list(Family f) override;
  Status install(const PolicyRoute& r) override;
  Status remove(const PolicyRoute& r) override;
};

}  // namespace weir
