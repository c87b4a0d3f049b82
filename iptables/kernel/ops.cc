#include "kernel/ops.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include "kernel/iptc/filter.h"
#include "kernel/netns.h"
#if WEIR_HAVE_NFTABLES
#include "kernel/nft/filter.h"
#endif
#include "rules/plan.h"
#include "rules/xtables/lower.h"

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

// A filter a test has declared unavailable (WEIR_TEST_UNAVAILABLE_BACKEND),
// or one this build does not have: every call answers Unsupported with `why`
// and nothing reaches the kernel interface, as on a node whose kernel lacks
// it (RHEL 10 has no legacy xtables).
class UnavailableFilter final : public PacketFilter {
 public:
  UnavailableFilter(const char* name, std::string why) : name_(name), why_(std::move(why)) {}
  const char* name() const override { return name_; }
  Status probe(const CapturePolicy&) override { return missing(); }
  Result<CapturePolicy> apply(const CapturePolicy&, const std::vector<Family>&) override { return missing(); }
  Result<CapturePolicy> read(const std::vector<Family>&) override { return missing(); }
  CapturePolicy canonical(const CapturePolicy& p) const override { return p; }

 private:
  Error missing() const { return Error{ErrorKind::Unsupported, why_, 0}; }
  const char* name_;
  std::string why_;
};

constexpr bool kHaveNftables = WEIR_HAVE_NFTABLES;

bool test_says_unavailable(const char* name) {
  // Test-only, documented in kernel/README.md: a comma-separated list of
  // backends to treat as missing from the kernel.
  const char* v = std::getenv("WEIR_TEST_UNAVAILABLE_BACKEND");
  if (!v) return false;
  const std::string list = std::string(",") + v + ",";
  return list.find(std::string(",") + name + ",") != std::string::npos;
}

std::unique_ptr<PacketFilter> unavailable(const char* name, std::string why) {
  return std::make_unique<UnavailableFilter>(name, std::move(why));
}

std::unique_ptr<PacketFilter> real_nft_filter() {
#if WEIR_HAVE_NFTABLES
  if (!test_says_unavailable("nftables")) return make_nft_filter();
#else
  if (!test_says_unavailable("nftables"))
    return unavailable("nftables", "this build has no nftables backend (" WEIR_NFTABLES_MISSING_WHY ")");
#endif
  return unavailable("nftables", "nftables is unavailable (WEIR_TEST_UNAVAILABLE_BACKEND, a test switch)");
}

// The nftables and libiptc filters (in auto's order of preference),
// rtnetlink and /proc: what front ends get. A build without the nftables
// filter lists its stand-in last, so auto goes straight to libiptc and a
// spec asking for nftables hears why not.
struct RealKernel {
  std::unique_ptr<PacketFilter> nft = real_nft_filter();
  std::unique_ptr<PacketFilter> iptc =
      test_says_unavailable("iptables")
          ? unavailable("iptables", "iptables is unavailable (WEIR_TEST_UNAVAILABLE_BACKEND, a test switch)")
          : std::unique_ptr<PacketFilter>(new IptcFilter());
  NetlinkRouting routing;
  NetlinkLinks links;
  KernelSide side{kHaveNftables ? std::vector<PacketFilter*>{nft.get(), iptc.get()}
                                : std::vector<PacketFilter*>{iptc.get(), nft.get()},
                  routing, links};
};

// The filters the spec lets this operation use, in order of preference:
// `auto` takes every filter the kernel side has; `nftables` or `iptables`
// only that one.
Result<std::vector<PacketFilter*>> candidates(const KernelSide& kernel, FilterBackend wanted) {
  std::vector<PacketFilter*> out;
  for (PacketFilter* f : kernel.filters) {
    if (!f) continue;
    if (wanted == FilterBackend::Auto || std::string(f->name()) == to_string(wanted)) out.push_back(f);
  }
  if (out.empty())
    return Error{ErrorKind::Unsupported, std::string("weir has no ") + to_string(wanted) + " packet filter here", 0};
  return out;
}

// weir's rules of the given families in `f`, or nothing when the filter
// cannot be read here (its kernel interface is missing).
std::optional<CapturePolicy> rules_in(PacketFilter& f, const std::vector<Family>& fams) {
  auto live = f.read(fams);
  if (!live) return std::nullopt;
  std::erase_if(live->families, [](const FamilyPolicy& fp) { return fp.stages.empty(); });
  live->routes.clear();
  if (live->families.empty()) return std::nullopt;
  return std::move(*live);
}

// For readers (check, show): the filter whose rules are live, in order of
// preference; with none live, the first candidate that can be read.
Result<PacketFilter*> filter_in_use(const KernelSide& kernel, FilterBackend wanted, const std::vector<Family>& fams) {
  auto cands = candidates(kernel, wanted);
  if (!cands) return cands.error();
  if (cands->size() == 1) return cands->front();
  for (PacketFilter* f : *cands)
    if (rules_in(*f, fams)) return f;
  std::string why;
  for (PacketFilter* f : *cands) {
    auto live = f->read(fams);
    if (live) return f;
    why += std::string(why.empty() ? "" : "; ") + f->name() + ": " + live.error().message;
  }
  return Error{ErrorKind::Unsupported, "no packet filter can be read here (" + why + ")", 0};
}

bool contains(const std::vector<Family>& fams, Family f) { return std::find(fams.begin(), fams.end(), f) != fams.end(); }

// The families to work on, called inside the namespace. A spec asking for
// IPv6 in a namespace without IPv6 gets IPv4 only, with a warning (no IPv6
// traffic can bypass a proxy where there is no IPv6). `every`: the
// namespace's families (all_families()).
Result<std::vector<Family>> usable_families(const CaptureSpec& spec, const std::string& where,
                                            const std::vector<Family>& every, std::vector<std::string>* warnings) {
  std::vector<Family> fams = families(spec);
  if (!contains(fams, Family::V6) || contains(every, Family::V6)) return fams;
  std::erase(fams, Family::V6);
  if (fams.empty())
    return Error{ErrorKind::Unsupported, "the spec asks for IPv6 only, but netns " + where + " has no IPv6", 0};
  if (warnings) warnings->push_back("netns " + where + " has no IPv6; installing IPv4 rules only");
  return fams;
}

// The namespace's families. Asked once per operation: each asking reads /proc.
std::vector<Family> all_families(Links& links) {
  std::vector<Family> fams{Family::V4};
  if (links.has_ipv6()) fams.push_back(Family::V6);
  return fams;
}

void link_warnings(const CaptureSpec& spec, const std::string& where, Links& links, std::vector<std::string>& warnings) {
  auto missing = [&](const std::string& name, const char* what) {
    auto exists = links.link_exists(name);
    if (exists && !*exists) warnings.push_back(std::string(what) + " " + name + " does not exist in netns " + where);
  };
  for (const std::string& i : spec.exclude_interfaces) missing(i, "excluded interface");
  for (const std::string& i : spec.kube_virt_interfaces) missing(i, "kube-virt interface");
  auto up = links.link_is_up("lo");
  if (up && !*up) warnings.push_back("lo is down in netns " + where + ": REDIRECT to the proxy needs lo up");
}

bool has_tproxy(const CapturePolicy& p, Family f) {
  const FamilyPolicy* fp = nullptr;
  for (const FamilyPolicy& x : p.families)
    if (x.family == f) fp = &x;
  if (!fp) return false;
  for (const StagePolicy& s : fp->stages)
    for (const PolicyChain& c : s.chains)
      for (const Step& st : c.steps)
        if (std::holds_alternative<Tproxy>(st.action)) return true;
  return false;
}

bool has_family(const CapturePolicy& p, Family f) {
  return std::any_of(p.families.begin(), p.families.end(), [&](const FamilyPolicy& x) { return x.family == f; });
}

// One all-or-nothing change of weir's state in `scope` to `wanted`.
struct Transaction {
  KernelSide& kernel;
  PacketFilter& filter;
  std::vector<Family> scope;
  // Look for weir's policy routes even where neither the wanted policy nor
  // weir's previous rules have TPROXY (listing routes costs more than the
  // rest of an apply, and weir installs them only beside its TPROXY rules;
  // clean looks everywhere).
  bool all_routes = false;
  std::vector<std::string>* warnings = nullptr;
  std::string where;

  struct RouteChange {
    PolicyRoute route;
    bool installed;  // false: removed
  };

  Status run(const CapturePolicy& wanted, bool add_passthrough) {
    // 1. ::6 on lo. The IPv6 rules let the proxy's connections from ::6
    // through; the proxy can bind ::6 only once lo has it (127.0.0.6 needs
    // nothing). Left in place by clean: weir cannot tell its own from one
    // the pod's runtime added.
    bool added_pt = false;
    if (add_passthrough && has_family(wanted, Family::V6)) {
      auto added = kernel.links.add_lo_address(passthrough_addr(Family::V6));
      if (!added) {
        // IPv6 disabled on lo by sysctl: no IPv6 traffic flows there, so
        // none can bypass the proxy; the IPv6 rules go in all the same.
        if (added.error().sys_errno != EACCES) return added.error();
        if (warnings)
          warnings->push_back("IPv6 is disabled in netns " + where +
                              " (disable_ipv6 sysctl): the IPv6 rules are installed, ::6 is not added to lo");
      } else {
        added_pt = *added;
      }
    }
    auto undo_passthrough = [&](std::string& failures) {
      if (!added_pt) return;
      if (Status s = kernel.links.remove_lo_address(passthrough_addr(Family::V6)); !s) failures += "; " + s.error().message;
    };
    auto fail = [](Error cause, const std::string& failures) {
      if (!failures.empty()) cause.message += " (and putting back the previous state failed" + failures + ")";
      return cause;
    };

    // 2. The packet filter (itself all or nothing).
    auto previous = filter.apply(wanted, scope);
    if (!previous) {
      std::string failures;
      undo_passthrough(failures);
      return fail(previous.error(), failures);
    }
    auto undo_filter = [&](std::string& failures) {
      auto back = filter.apply(*previous, scope);
      if (!back) failures += "; " + back.error().message;
    };

    // 3. The policy routes.
    std::vector<RouteChange> changes;
    auto rollback = [&](const Error& cause) {
      std::string failures;
      for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
        Status s = it->installed ? kernel.routing.remove(it->route) : kernel.routing.install(it->route);
        if (!s) failures += "; " + s.error().message;
      }
      undo_filter(failures);
      undo_passthrough(failures);
      return fail(cause, failures);
    };
    std::vector<PolicyRoute> old_routes;
    for (Family f : scope) {
      bool wanted_here = std::any_of(wanted.routes.begin(), wanted.routes.end(),
                                     [&](const PolicyRoute& r) { return r.family == f; });
      if (!all_routes && !wanted_here && !has_tproxy(*previous, f)) continue;
      auto listed = kernel.routing.list(f);
      if (!listed) return rollback(listed.error().wrap(std::string("read ") + to_string(f) + " policy routes"));
      old_routes.insert(old_routes.end(), listed->begin(), listed->end());
    }
    for (const PolicyRoute& r : old_routes) {
      if (std::find(wanted.routes.begin(), wanted.routes.end(), r) != wanted.routes.end()) continue;
      if (Status s = kernel.routing.remove(r); !s) return rollback(s.error());
      changes.push_back({r, false});
    }
    for (const PolicyRoute& r : wanted.routes) {
      if (!contains(scope, r.family)) continue;
      if (std::find(old_routes.begin(), old_routes.end(), r) != old_routes.end()) continue;
      if (Status s = kernel.routing.install(r); !s) return rollback(s.error());
      changes.push_back({r, true});
    }
    return {};
  }
};

// weir's live state: the filter's rules and the policy routes.
Result<CapturePolicy> read_live(KernelSide& kernel, PacketFilter& filter, const std::vector<Family>& fams) {
  auto live = filter.read(fams);
  if (!live) return live.error();
  std::erase_if(live->families, [](const FamilyPolicy& fp) { return fp.stages.empty(); });
  live->routes.clear();  // not the filter's
  for (Family f : fams) {
    auto routes = kernel.routing.list(f);
    if (!routes) return routes.error().wrap(std::string("read ") + to_string(f) + " policy routes");
    live->routes.insert(live->routes.end(), routes->begin(), routes->end());
  }
  return live;
}

// Other capture tools' rules, as every filter sees them in its kernel
// interface (one whose interface is missing sees none). Called inside the
// namespace.
Result<std::vector<ForeignRules>> foreign_rules_in(const KernelSide& kernel) {
  std::vector<ForeignRules> out;
  for (PacketFilter* f : kernel.filters) {
    if (!f) continue;
    auto found = f->foreign_rules();
    if (!found) return found.error().wrap(std::string("look for other capture tools' rules (") + f->name() + ")");
    out.insert(out.end(), found->begin(), found->end());
  }
  return out;
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

Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec, KernelSide& kernel) {
  if (Status s = validate(spec); !s) return s.error();
  auto session = begin(t, true);
  if (!session) return session.error();
  auto cands = candidates(kernel, spec.backend);
  if (!cands) return cands.error();
  ApplyReport report;
  const std::vector<Family> every = all_families(kernel.links);
  auto fams = usable_families(spec, t.netns_path, every, &report.warnings);
  if (!fams) return fams.error();
  const CapturePolicy wanted = restrict_to(capture_policy(spec), *fams);
  auto rules = xtables::lower(wanted);  // what the report shows (plan() does the same)
  if (!rules) return rules.error();
  report.plan = std::move(*rules);
  // auto: the first filter whose kernel interface takes the rules. A filter
  // that is missing or lacks something answers Unsupported, having changed
  // nothing (each transaction is all or nothing); any other error is final.
  PacketFilter* used = nullptr;
  std::string refused;
  for (PacketFilter* f : *cands) {
    Transaction tx{kernel, *f, every, false, &report.warnings, t.netns_path};
    Status s = tx.run(wanted, true);
    if (s) {
      used = f;
      break;
    }
    if (s.error().kind != ErrorKind::Unsupported || cands->size() == 1)
      return s.error().wrap("apply in netns " + t.netns_path);
    refused += std::string(refused.empty() ? "" : "; ") + f->name() + ": " + s.error().message;
  }
  if (!used)
    return Error{ErrorKind::Unsupported,
                 "apply in netns " + t.netns_path + ": no packet filter takes weir's rules (" + refused + ")", 0};
  report.backend = used->name();
  // Migration: only after the new rules are committed, weir's rules leave
  // the other filters (a pod moved from iptables to nftables, or back). A
  // filter whose kernel interface is missing has nothing to remove.
  for (PacketFilter* other : kernel.filters) {
    if (!other || other == used) continue;
    auto removed = other->apply(CapturePolicy{}, every);
    if (!removed && removed.error().kind != ErrorKind::Unsupported)
      report.warnings.push_back(std::string("weir's rules in the ") + other->name() +
                                " backend were not removed: " + removed.error().message);
  }
  // Another capture tool's rules: left as they are (not weir's), reported.
  if (auto foreign = foreign_rules_in(kernel); !foreign) {
    report.warnings.push_back(foreign.error().message);
  } else {
    for (const ForeignRules& f : *foreign) report.warnings.push_back(describe(f) + " (netns " + t.netns_path + ")");
    report.foreign = std::move(*foreign);
  }
  link_warnings(spec, t.netns_path, kernel.links, report.warnings);
  return report;
}

Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec, KernelSide& kernel) {
  if (Status s = validate(spec); !s) return s.error();
  auto session = begin(t, false);
  if (!session) return session.error();
  const std::vector<Family> every = all_families(kernel.links);
  auto fams = usable_families(spec, t.netns_path, every, nullptr);
  if (!fams) return fams.error();
  auto filter = filter_in_use(kernel, spec.backend, every);
  if (!filter) return filter.error().wrap("check netns " + t.netns_path);
  CheckReport report;
  report.backend = (*filter)->name();
  // At the filter's granularity, as it reads its rules back.
  report.wanted = (*filter)->canonical(restrict_to(capture_policy(spec), *fams));
  // Every family, not only the spec's: weir rules of a family the spec no
  // longer wants are drift too (apply would remove them).
  auto live = read_live(kernel, **filter, every);
  if (!live) return live.error().wrap("read netns " + t.netns_path);
  report.live = order_like(*live, report.wanted);
  report.diff = diff(report.wanted, report.live);
  // weir's rules in another filter too: apply would remove them.
  for (PacketFilter* other : kernel.filters) {
    if (!other || other == *filter) continue;
    if (rules_in(*other, every))
      report.diff.lines.push_back(DiffLine{DiffLine::Extra, std::string(other->name()) + " backend", "",
                                           std::string("weir's rules are also in the ") + other->name() +
                                               " backend (apply with " + (*filter)->name() + " removes them)"});
  }
  auto foreign = foreign_rules_in(kernel);
  if (!foreign) return foreign.error().wrap("check netns " + t.netns_path);
  report.foreign = std::move(*foreign);
  return report;
}

Status clean(const NetnsTarget& t, KernelSide& kernel, std::vector<std::string>* remaining) {
  auto session = begin(t, true);
  if (!session) return session.error();
  // Every filter: weir's rules may be in any of them (a migration, a
  // backend pinned by an earlier spec). A missing interface has none.
  bool routes_done = false;
  const std::vector<Family> every = all_families(kernel.links);
  for (PacketFilter* f : kernel.filters) {
    if (!f) continue;
    Transaction tx{kernel, *f, every, !routes_done, nullptr, t.netns_path};
    Status s = tx.run(CapturePolicy{}, false);
    if (!s && s.error().kind == ErrorKind::Unsupported) continue;
    if (!s) return s.error().wrap(std::string("clean netns ") + t.netns_path + " (" + f->name() + ")");
    routes_done = true;
  }
  if (remaining) {
    // weir's rules are gone; what another tool left is not weir's to remove.
    auto foreign = foreign_rules_in(kernel);
    if (!foreign) remaining->push_back(foreign.error().message);
    else
      for (const ForeignRules& f : *foreign)
        remaining->push_back(describe_remaining(f) + " (netns " + t.netns_path + ")");
  }
  return {};
}

Result<ShowReport> show(const NetnsTarget& t, KernelSide& kernel) {
  auto session = begin(t, false);
  if (!session) return session.error();
  const std::vector<Family> every = all_families(kernel.links);
  auto filter = filter_in_use(kernel, FilterBackend::Auto, every);
  if (!filter) return filter.error().wrap("show netns " + t.netns_path);
  auto live = read_live(kernel, **filter, every);
  if (!live) return live.error().wrap("read netns " + t.netns_path);
  auto rules = xtables::lower(*live);
  if (!rules) return rules.error().wrap(std::string("read back the ") + (*filter)->name() + " rules in " + t.netns_path);
  return ShowReport{(*filter)->name(), std::move(*live), std::move(*rules)};
}

Result<std::string> probe(const CaptureSpec& spec, KernelSide& kernel) {
  auto cands = candidates(kernel, spec.backend);
  if (!cands) return cands.error();
  const CapturePolicy wanted = restrict_to(capture_policy(spec), all_families(kernel.links));
  std::string refused;
  for (PacketFilter* f : *cands) {
    Status s = f->probe(wanted);
    if (s) return std::string(f->name());
    refused += std::string(refused.empty() ? "" : "; ") + f->name() + ": " + s.error().message;
  }
  return Error{ErrorKind::Unsupported, "no packet filter takes weir's rules here (" + refused + ")", 0};
}

const char* nftables_backend() {
#if WEIR_HAVE_NFTABLES
  return "built in";
#else
  return "not built in (" WEIR_NFTABLES_MISSING_WHY ")";
#endif
}

Result<ApplyReport> apply(const NetnsTarget& t, const CaptureSpec& spec) {
  RealKernel k;
  return apply(t, spec, k.side);
}

Result<CheckReport> check(const NetnsTarget& t, const CaptureSpec& spec) {
  RealKernel k;
  return check(t, spec, k.side);
}

Status clean(const NetnsTarget& t, std::vector<std::string>* remaining) {
  RealKernel k;
  return clean(t, k.side, remaining);
}

Result<ShowReport> show(const NetnsTarget& t) {
  RealKernel k;
  return show(t, k.side);
}

Result<std::string> probe(const CaptureSpec& spec) {
  RealKernel k;
  return probe(spec, k.side);
}

}  // namespace weir
