#include "kernel/ops.h"

#include <algorithm>
#include <optional>

#include "kernel/iptc/backend.h"
#include "kernel/netns.h"
#include "rules/plan.h"
#include "kernel/routes.h"

namespace weir {
namespace {

// Opens the target and refuses weir's own namespace unless asked for: a
// mistyped command must not capture the node's own traffic.
Result<Netns> open_target(const NetnsTarget& t, bool writes) {
  auto ns = Netns::open(t.netns_path);
  if (!ns) return ns.error();
  if (writes && !t.allow_own_netns) {
    auto self = Netns::current();
    if (!self) return self.error();
    if (ns->same_as(*self))
      return Error{ErrorKind::OwnNetns, "refusing to change the network namespace weir itself runs in (" +
                                                   t.netns_path + "); pass --netns self to mean it",
                   0};
  }
  return ns;
}

// Everything an operation holds while it works in the target namespace:
// the lock (writers only), then the thread inside the namespace.
struct Session {
  Netns ns;
  std::optional<NetnsLock> lock;
  std::optional<NetnsGuard> inside;
};

Result<Session> begin(const NetnsTarget& t, bool writes) {
  auto ns = open_target(t, writes);
  if (!ns) return ns.error();
  Session s{std::move(*ns), std::nullopt, std::nullopt};
  if (writes) {
    auto lock = NetnsLock::acquire(s.ns, t.lock_timeout_ms);
    if (!lock) return lock.error();
    s.lock.emplace(std::move(*lock));
  }
  auto guard = NetnsGuard::enter(s.ns);
  if (!guard) return guard.error();
  s.inside.emplace(std::move(*guard));
  return s;
}

// Keeps only the given families of a plan.
RulePlan restrict_to(RulePlan p, const std::vector<Family>& fams) {
  auto drop = [&](Family f) { return std::find(fams.begin(), fams.end(), f) == fams.end(); };
  std::erase_if(p.rulesets, [&](const Ruleset& rs) { return drop(rs.family); });
  std::erase_if(p.routes, [&](const PolicyRoute& r) { return drop(r.family); });
  return p;
}

// The families to work on, called inside the namespace. A spec asking for
// IPv6 in a namespace without IPv6 gets IPv4 only, with a warning (no IPv6
// traffic can bypass a proxy where there is no IPv6).
Result<std::vector<Family>> usable_families(const CaptureSpec& spec, const std::string& where,
                                            std::vector<std::string>* warnings) {
  std::vector<Family> fams = families(spec);
  bool wants_v6 = std::find(fams.begin(), fams.end(), Family::V6) != fams.end();
  if (!wants_v6 || kernel_has_ipv6()) return fams;
  fams.erase(std::remove(fams.begin(), fams.end(), Family::V6), fams.end());
  if (fams.empty())
    return Error{ErrorKind::Unsupported, "the spec asks for IPv6 only, but netns " + where + " has no IPv6", 0};
  if (warnings) warnings->push_back("netns " + where + " has no IPv6; installing IPv4 rules only");
  return fams;
}

std::vector<Family> all_families() {
  std::vector<Family> fams{Family::V4};
  if (kernel_has_ipv6()) fams.push_back(Family::V6);
  return fams;
}

std::unique_ptr<Backend> default_backend(Backend*& backend) {
  std::unique_ptr<Backend> owned;
  if (!backend) {
    owned = make_iptc_backend();
    backend = owned.get();
  }
  return owned;
}

void link_warnings(const CaptureSpec& spec, const std::string& where, std::vector<std::string>& warnings) {
  auto missing = [&](const std::string& name, const char* what) {
    auto exists = routes::link_exists(name);
    if (exists && !*exists) warnings.push_back(std::string(what) + " " + name + " does not exist in netns " + where);
  };
  for (const std::string& i : spec.exclude_interfaces) missing(i, "excluded interface");
  for (const std::string& i : spec.kube_virt_interfaces) missing(i, "kube-virt interface");
  auto up = routes::link_is_up("lo");
  if (up && !*up) warnings.push_back("lo is down in netns " + where + ": REDIRECT to the proxy needs lo up");
}

}  // namespace

Status open_target(const NetnsTarget& t) {
  auto ns = open_target(t, true);
  if (!ns) return ns.error();
  return {};
}

Status in_netns(const NetnsTarget& t, const std::function<Status()>& fn, bool* entered) {
  if (entered) *entered = false;
  auto session = begin(t, false);
  if (!session) return session.error();
  if (entered) *entered = true;
  return fn();
}

Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec, Backend* backend) {
  if (Status s = validate(spec); !s) return s.error();
  auto session = begin(t, true);
  if (!session) return session.error();
  auto owned = default_backend(backend);
  ApplyReport report;
  auto fams = usable_families(spec, t.netns_path, &report.warnings);
  if (!fams) return fams.error();
  report.plan = restrict_to(plan(spec), *fams);
  // The IPv6 rules let the proxy's connections from ::6 through; the proxy
  // can bind ::6 only once lo has it (127.0.0.6 needs nothing). Added before
  // the rules and taken back if they fail: all or nothing. Left in place by
  // clean: weir cannot tell its own from one the pod's runtime added.
  bool added_pt = false;
  if (report.plan.find(Family::V6) != nullptr) {
    auto added = routes::add_lo_address(passthrough_addr(Family::V6));
    if (!added) return added.error().wrap("apply in netns " + t.netns_path);
    added_pt = *added;
  }
  if (Status s = backend->apply(report.plan); !s) {
    if (added_pt) (void)routes::remove_lo_address(passthrough_addr(Family::V6));
    return s.error().wrap("apply in netns " + t.netns_path);
  }
  link_warnings(spec, t.netns_path, report.warnings);
  return report;
}

Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec, Backend* backend) {
  if (Status s = validate(spec); !s) return s.error();
  auto session = begin(t, false);
  if (!session) return session.error();
  auto owned = default_backend(backend);
  auto fams = usable_families(spec, t.netns_path, nullptr);
  if (!fams) return fams.error();
  CheckReport report;
  report.wanted = restrict_to(plan(spec), *fams);
  // Every family, not only the spec's: weir rules of a family the spec no
  // longer wants are drift too (apply would remove them).
  auto live = backend->read(all_families());
  if (!live) return live.error().wrap("read netns " + t.netns_path);
  report.live = order_like(*live, report.wanted);
  report.diff = diff(report.wanted, report.live);
  return report;
}

Status clean(const NetnsTarget& t, Backend* backend) {
  auto session = begin(t, true);
  if (!session) return session.error();
  auto owned = default_backend(backend);
  if (Status s = backend->remove(all_families()); !s) return s.error().wrap("clean netns " + t.netns_path);
  return {};
}

Result<RulePlan> show(const NetnsTarget& t, Backend* backend) {
  auto session = begin(t, false);
  if (!session) return session.error();
  auto owned = default_backend(backend);
  auto live = backend->read(all_families());
  if (!live) return live.error().wrap("read netns " + t.netns_path);
  return std::move(*live);
}

}  // namespace weir
