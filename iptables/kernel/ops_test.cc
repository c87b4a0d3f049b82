// ops without root: the all-or-nothing transaction across the packet filter,
// the policy routes and lo's addresses, against fakes of all three; and the
// namespace checks that need no privilege. The target is weir's own
// namespace with allow_own_netns set: entering it needs no setns, locking it
// no privilege, and the fakes change nothing in it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "kernel/links.h"
#include "kernel/netns.h"
#include "kernel/ops.h"
#include "kernel/packet_filter.h"
#include "kernel/routing.h"
#include "rules/plan.h"

namespace weir {
namespace {

// weir's rules per family, as a filter holds them.
class FakeFilter : public PacketFilter {
 public:
  const char* name() const override { return "fake"; }
  Status probe(const CapturePolicy&) override { return {}; }

  Result<CapturePolicy> apply(const CapturePolicy& policy, const std::vector<Family>& scope) override {
    ++apply_calls;
    applied.push_back(policy);
    if (apply_calls == fail_apply_at) return Error{ErrorKind::Kernel, "commit ipv4 nat table: injected", EINVAL};
    CapturePolicy previous = read_now(scope);
    for (Family f : scope) {
      state.erase(f);
      for (const FamilyPolicy& fp : policy.families)
        if (fp.family == f) state[f] = fp;
    }
    return previous;
  }

  Result<CapturePolicy> read(const std::vector<Family>& families) override { return read_now(families); }
  CapturePolicy canonical(const CapturePolicy& policy) const override { return policy; }
  Result<std::vector<ForeignRules>> foreign_rules() override {
    ++foreign_calls;
    if (foreign_errno) return system_error(ErrorKind::Kernel, "list the nftables tables", foreign_errno);
    return foreign;
  }

  CapturePolicy read_now(const std::vector<Family>& families) const {
    CapturePolicy out;
    for (Family f : families)
      if (auto it = state.find(f); it != state.end()) out.families.push_back(it->second);
    return out;
  }
  bool has(Family f) const { return state.count(f) != 0; }

  std::map<Family, FamilyPolicy> state;
  std::vector<CapturePolicy> applied;
  int apply_calls = 0;
  int fail_apply_at = 0;  // 1-based; 0 = never
  // Other capture tools' rules this filter's kernel interface holds: apply
  // and clean must never change them (the fake has no way to, and ops no
  // call that could).
  std::vector<ForeignRules> foreign;
  int foreign_errno = 0;
  int foreign_calls = 0;
};

class FakeRouting : public PolicyRouting {
 public:
  Result<std::vector<PolicyRoute>> list(Family f) override {
    ++list_calls;
    std::vector<PolicyRoute> out;
    for (const PolicyRoute& r : routes)
      if (r.family == f) out.push_back(r);
    return out;
  }
  Status install(const PolicyRoute& r) override {
    if (++install_calls == fail_install_at) return Error{ErrorKind::Kernel, "install policy route: injected", EINVAL};
    if (std::find(routes.begin(), routes.end(), r) == routes.end()) routes.push_back(r);
    return {};
  }
  Status remove(const PolicyRoute& r) override {
    if (++remove_calls == fail_remove_at) return Error{ErrorKind::Kernel, "remove policy route: injected", EINVAL};
    std::erase(routes, r);
    return {};
  }

  std::vector<PolicyRoute> routes;
  int list_calls = 0, install_calls = 0, remove_calls = 0;
  int fail_install_at = 0, fail_remove_at = 0;
};

class FakeLinks : public Links {
 public:
  Result<bool> link_exists(const std::string& name) override { return name == "lo" || name == "eth0"; }
  Result<bool> link_is_up(const std::string&) override { return lo_up; }
  Result<bool> add_lo_address(const Cidr& addr) override {
    ++add_calls;
    if (add_errno) return system_error(ErrorKind::Kernel, "add " + format_cidr(addr) + " to lo", add_errno);
    if (std::find(lo.begin(), lo.end(), addr) != lo.end()) return false;
    lo.push_back(addr);
    return true;
  }
  Status remove_lo_address(const Cidr& addr) override {
    ++remove_calls;
    std::erase(lo, addr);
    return {};
  }
  bool has_ipv6() override { return ipv6; }
  Result<AddressFamilies> global_address_families() override { return AddressFamilies{true, ipv6}; }

  bool has_passthrough() const { return std::find(lo.begin(), lo.end(), passthrough_addr(Family::V6)) != lo.end(); }

  std::vector<Cidr> lo;
  bool ipv6 = true;
  bool lo_up = true;
  int add_errno = 0;
  int add_calls = 0, remove_calls = 0;
};

struct Fakes {
  FakeFilter filter;
  FakeRouting routing;
  FakeLinks links;
  KernelSide side{{&filter}, routing, links};
};

NetnsTarget own(bool allow = true) { return NetnsTarget{"/proc/self/ns/net", allow, 1000}; }

CaptureSpec tproxy_spec() {
  CaptureSpec s;
  s.mode = InboundMode::Tproxy;
  return s;
}
CaptureSpec v4_spec() {
  CaptureSpec s;
  s.ip_families = IpFamilies::V4;
  return s;
}
CaptureSpec v6_spec() {
  CaptureSpec s;
  s.ip_families = IpFamilies::V6;
  return s;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

const std::vector<PolicyRoute> kTproxyRoutes{{Family::V4, 1337, 133}, {Family::V6, 1337, 133}};

// ---------------------------------------------------------------------------
// The transaction, step by step.

TEST_CASE("ops apply: ::6, then the filter, then routes; routes are not even listed without TPROXY") {
  Fakes k;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_MESSAGE(rep.ok(), rep.error().message);
  CHECK(k.filter.has(Family::V4));
  CHECK(k.filter.has(Family::V6));
  CHECK(k.links.has_passthrough());
  CHECK(k.routing.list_calls == 0);  // listing costs more than the rest of an apply
  CHECK(rep->plan.rulesets.size() == 2);

  // IPv4 only: no ::6 wanted, IPv6 rules of weir removed (scope is both).
  Fakes v4;
  REQUIRE(apply(own(), v4_spec(), v4.side).ok());
  CHECK(v4.filter.has(Family::V4));
  CHECK_FALSE(v4.filter.has(Family::V6));
  CHECK(v4.links.add_calls == 0);
}

TEST_CASE("ops apply: TPROXY installs the policy routes; a second apply changes nothing") {
  Fakes k;
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());
  CHECK(k.routing.routes == kTproxyRoutes);
  const int installs = k.routing.install_calls;
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());
  CHECK(k.routing.install_calls == installs);
  CHECK(k.routing.routes == kTproxyRoutes);
  // Away from TPROXY: the previous rules had TPROXY, so routes are looked for and removed.
  REQUIRE(apply(own(), CaptureSpec{}, k.side).ok());
  CHECK(k.routing.routes.empty());
}

TEST_CASE("ops apply: adding ::6 fails -> nothing else is touched") {
  Fakes k;
  k.links.add_errno = EPERM;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_FALSE(rep.ok());
  CHECK(rep.error().sys_errno == EPERM);
  CHECK(rep.error().message.find("apply in netns /proc/self/ns/net: add ::6/128 to lo") == 0);
  CHECK(k.filter.apply_calls == 0);
  CHECK(k.routing.install_calls == 0);
}

TEST_CASE("ops apply: the filter fails -> ::6 is taken back when this apply added it, kept otherwise") {
  Fakes k;
  k.filter.fail_apply_at = 1;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_FALSE(rep.ok());
  CHECK(rep.error().message.find("injected") != std::string::npos);
  CHECK_FALSE(k.links.has_passthrough());
  CHECK(k.links.remove_calls == 1);
  CHECK(k.filter.state.empty());
  CHECK(k.routing.routes.empty());

  Fakes had;
  had.links.lo.push_back(passthrough_addr(Family::V6));  // the runtime's, or an earlier apply's
  had.filter.fail_apply_at = 1;
  REQUIRE_FALSE(apply(own(), CaptureSpec{}, had.side).ok());
  CHECK(had.links.has_passthrough());
  CHECK(had.links.remove_calls == 0);
}

TEST_CASE("ops apply: a route install fails after the filter applied -> filter put back, routes back, ::6 removed") {
  for (int n : {1, 2}) {
    CAPTURE(n);
    Fakes k;
    REQUIRE(apply(own(), v4_spec(), k.side).ok());  // weir's IPv4 rules before
    const CapturePolicy before = k.filter.read_now({Family::V4, Family::V6});
    k.routing.fail_install_at = n;
    auto rep = apply(own(), tproxy_spec(), k.side);
    REQUIRE_FALSE(rep.ok());
    CHECK(rep.error().message.find("install policy route: injected") != std::string::npos);
    CHECK(k.filter.read_now({Family::V4, Family::V6}) == before);  // the previous rules, not the TPROXY ones
    CHECK(k.filter.applied.back() == before);                      // put back with filter.apply(previous)
    CHECK(k.routing.routes.empty());                               // the first route (n == 2) taken back
    CHECK_FALSE(k.links.has_passthrough());                        // added by this apply, so removed
  }
}

TEST_CASE("ops apply: a route remove fails -> routes and the TPROXY rules stay as they were") {
  Fakes k;
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());
  const CapturePolicy before = k.filter.read_now({Family::V4, Family::V6});
  for (int n : {1, 2}) {
    CAPTURE(n);
    k.routing.remove_calls = 0;
    k.routing.fail_remove_at = n;
    auto rep = apply(own(), CaptureSpec{}, k.side);
    REQUIRE_FALSE(rep.ok());
    CHECK(rep.error().message.find("remove policy route: injected") != std::string::npos);
    CHECK(k.filter.read_now({Family::V4, Family::V6}) == before);
    std::vector<PolicyRoute> sorted = k.routing.routes;
    std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.family < b.family; });
    CHECK(sorted == kTproxyRoutes);
    CHECK(k.links.has_passthrough());  // there before this apply: kept
  }
}

TEST_CASE("ops apply: when putting back fails too, the error says so") {
  Fakes k;
  k.routing.fail_install_at = 1;
  k.filter.fail_apply_at = 2;  // the put-back
  auto rep = apply(own(), tproxy_spec(), k.side);
  REQUIRE_FALSE(rep.ok());
  CHECK(rep.error().message.find("install policy route: injected") != std::string::npos);
  CHECK(rep.error().message.find("and putting back the previous state failed; commit ipv4 nat table: injected") !=
        std::string::npos);
}

// ---------------------------------------------------------------------------
// Families.

TEST_CASE("ops apply: a namespace without IPv6 gets IPv4 only with a warning; IPv6 only fails") {
  Fakes k;
  k.links.ipv6 = false;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE(rep.ok());
  CHECK(joined(rep->warnings).find("has no IPv6; installing IPv4 rules only") != std::string::npos);
  CHECK(k.filter.has(Family::V4));
  CHECK_FALSE(k.filter.has(Family::V6));
  CHECK(k.links.add_calls == 0);
  CHECK(rep->plan.rulesets.size() == 1);

  Fakes only6;
  only6.links.ipv6 = false;
  auto six = apply(own(), v6_spec(), only6.side);
  REQUIRE_FALSE(six.ok());
  CHECK(six.error().kind == ErrorKind::Unsupported);
  CHECK(six.error().message.find("IPv6 only") != std::string::npos);
  CHECK(only6.filter.apply_calls == 0);
}

TEST_CASE("ops apply: IPv6 disabled by sysctl (EACCES on ::6) -> IPv6 rules installed, ::6 skipped, warning") {
  Fakes k;
  k.links.add_errno = EACCES;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_MESSAGE(rep.ok(), rep.error().message);
  CHECK(joined(rep->warnings).find("IPv6 is disabled in netns /proc/self/ns/net") != std::string::npos);
  CHECK(k.filter.has(Family::V4));
  CHECK(k.filter.has(Family::V6));
  CHECK_FALSE(k.links.has_passthrough());
  // And a filter failure after it has no ::6 to take back.
  Fakes f;
  f.links.add_errno = EACCES;
  f.filter.fail_apply_at = 1;
  REQUIRE_FALSE(apply(own(), CaptureSpec{}, f.side).ok());
  CHECK(f.links.remove_calls == 0);
}

TEST_CASE("ops apply: link warnings") {
  Fakes k;
  k.links.lo_up = false;
  CaptureSpec spec;
  spec.exclude_interfaces = {"eth7", "eth0"};
  auto rep = apply(own(), spec, k.side);
  REQUIRE(rep.ok());
  const std::string all = joined(rep->warnings);
  CHECK(all.find("excluded interface eth7 does not exist") != std::string::npos);
  CHECK(all.find("eth0") == std::string::npos);
  CHECK(all.find("REDIRECT to the proxy needs lo up") != std::string::npos);
}

// ---------------------------------------------------------------------------
// The own-namespace refusal, check, clean, show.

TEST_CASE("ops: weir's own namespace is refused for writes before anything is touched") {
  Fakes k;
  auto rep = apply(own(false), CaptureSpec{}, k.side);
  REQUIRE_FALSE(rep.ok());
  CHECK(rep.error().kind == ErrorKind::OwnNetns);
  CHECK(rep.error().message.find("refusing to change the network namespace weir itself runs in") != std::string::npos);
  Status c = clean(own(false), k.side);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("refusing") != std::string::npos);
  CHECK(k.filter.apply_calls == 0);
  CHECK(k.links.add_calls == 0);
  CHECK(k.routing.list_calls == 0);
  // Reading is not a write: check and show may look at it.
  CHECK(check(own(false), CaptureSpec{}, k.side).ok());
  CHECK(show(own(false), k.side).ok());
}

TEST_CASE("ops check: in sync after apply; a step removed or a route missing is drift") {
  Fakes k;
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());
  auto ok = check(own(), tproxy_spec(), k.side);
  REQUIRE_MESSAGE(ok.ok(), ok.error().message);
  CHECK(ok->diff.empty());

  auto& chains = k.filter.state[Family::V4].stages.front().chains;
  auto it = std::find_if(chains.begin(), chains.end(), [](const PolicyChain& c) { return !c.steps.empty() && !c.hook; });
  REQUIRE(it != chains.end());
  it->steps.pop_back();
  auto drift = check(own(), tproxy_spec(), k.side);
  REQUIRE(drift.ok());
  CHECK_FALSE(drift->diff.empty());
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());  // repairs it
  auto repaired = check(own(), tproxy_spec(), k.side);
  REQUIRE(repaired.ok());
  CHECK(repaired->diff.empty());

  k.routing.routes.pop_back();
  auto routes = check(own(), tproxy_spec(), k.side);
  REQUIRE(routes.ok());
  CHECK_FALSE(routes->diff.empty());

  // IPv6 rules of weir that the spec no longer wants are drift too.
  Fakes six;
  REQUIRE(apply(own(), CaptureSpec{}, six.side).ok());
  auto stale = check(own(), v4_spec(), six.side);
  REQUIRE(stale.ok());
  CHECK_FALSE(stale->diff.empty());
}

TEST_CASE("ops clean: succeeds with nothing to remove; removes rules and every weir route") {
  Fakes empty;
  CHECK(clean(own(), empty.side).ok());
  CHECK(empty.filter.state.empty());

  Fakes k;
  REQUIRE(apply(own(), tproxy_spec(), k.side).ok());
  REQUIRE(clean(own(), k.side).ok());
  CHECK(k.filter.state.empty());
  CHECK(k.routing.routes.empty());
  CHECK(k.links.has_passthrough());  // not weir's to take: the runtime may have added it

  // A weir route without weir's TPROXY rules (a half state): apply does not
  // look for it, clean does.
  Fakes stray;
  stray.routing.routes = {PolicyRoute{Family::V4, 1337, 133}};
  REQUIRE(apply(own(), CaptureSpec{}, stray.side).ok());
  CHECK(stray.routing.list_calls == 0);
  REQUIRE(clean(own(), stray.side).ok());
  CHECK(stray.routing.routes.empty());

  // clean is all or nothing too.
  Fakes fail;
  REQUIRE(apply(own(), tproxy_spec(), fail.side).ok());
  const CapturePolicy before = fail.filter.read_now({Family::V4, Family::V6});
  fail.routing.fail_remove_at = 2;
  REQUIRE_FALSE(clean(own(), fail.side).ok());
  CHECK(fail.filter.read_now({Family::V4, Family::V6}) == before);
  CHECK(fail.routing.routes.size() == 2);
}

TEST_CASE("ops show: the filter's rules and the routes, in xtables form") {
  Fakes k;
  auto rep = apply(own(), tproxy_spec(), k.side);
  REQUIRE(rep.ok());
  auto live = show(own(), k.side);
  REQUIRE(live.ok());
  CHECK(live->rules.rulesets == rep->plan.rulesets);
  CHECK(live->rules.routes.size() == 2);
  CHECK(live->backend == rep->backend);
}

// ---------------------------------------------------------------------------
// Other capture tools' rules (issue 10, item 6): reported, never removed.

const ForeignRules kIstioLegacy{"Istio", "legacy iptables", "nat", {"ISTIO_INBOUND", "ISTIO_OUTPUT"}};
const ForeignRules kIstioNative{"Istio", "nftables", "inet istio-proxy-nat", {}};
const ForeignRules kLinkerdNft{"Linkerd", "iptables-nft", "ip nat", {"PROXY_INIT_OUTPUT", "PROXY_INIT_REDIRECT"}};

// Two filters, as the real kernel side has (nftables, then libiptc).
struct TwoFilters {
  FakeFilter nft, iptc;
  FakeRouting routing;
  FakeLinks links;
  KernelSide side{{&nft, &iptc}, routing, links};
};

TEST_CASE("ops apply: other capture tools' rules in any backend are one warning each, and apply still applies") {
  TwoFilters k;
  k.nft.foreign = {kIstioNative, kLinkerdNft};
  k.iptc.foreign = {kIstioLegacy};
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_MESSAGE(rep.ok(), rep.error().message);
  CHECK(k.nft.has(Family::V4));  // installed all the same
  CHECK(rep->foreign == std::vector<ForeignRules>{kIstioNative, kLinkerdNft, kIstioLegacy});
  const std::string w = joined(rep->warnings);
  CHECK(w.find("Istio's table inet istio-proxy-nat in nftables: another capture tool's rules; weir leaves them, "
               "but traffic may be captured twice (netns /proc/self/ns/net)") != std::string::npos);
  CHECK(w.find("Linkerd's PROXY_INIT_OUTPUT, PROXY_INIT_REDIRECT in iptables-nft ip nat: another capture tool's "
               "rules") != std::string::npos);
  CHECK(w.find("Istio's ISTIO_INBOUND, ISTIO_OUTPUT in legacy iptables nat: another capture tool's rules") !=
        std::string::npos);
  // Still there for the next look: nothing in apply took them away.
  CHECK(k.nft.foreign == std::vector<ForeignRules>{kIstioNative, kLinkerdNft});
  CHECK(k.iptc.foreign == std::vector<ForeignRules>{kIstioLegacy});

  // None: no warning about them.
  TwoFilters clean_pod;
  auto quiet = apply(own(), CaptureSpec{}, clean_pod.side);
  REQUIRE(quiet.ok());
  CHECK(quiet->foreign.empty());
  CHECK(joined(quiet->warnings).find("capture tool") == std::string::npos);
  CHECK(clean_pod.nft.foreign_calls == 1);
  CHECK(clean_pod.iptc.foreign_calls == 1);
}

TEST_CASE("ops apply: looking for other tools' rules fails -> a warning; weir's rules are applied") {
  TwoFilters k;
  k.nft.foreign_errno = EIO;
  auto rep = apply(own(), CaptureSpec{}, k.side);
  REQUIRE_MESSAGE(rep.ok(), rep.error().message);
  CHECK(k.nft.has(Family::V4));
  CHECK(joined(rep->warnings).find("look for other capture tools' rules (fake): list the nftables tables") !=
        std::string::npos);
}

TEST_CASE("ops check: other tools' rules are a problem of their own, not drift; an apply does not change them") {
  TwoFilters k;
  REQUIRE(apply(own(), CaptureSpec{}, k.side).ok());
  auto ok = check(own(), CaptureSpec{}, k.side);
  REQUIRE_MESSAGE(ok.ok(), ok.error().message);
  CHECK(ok->in_sync());

  k.iptc.foreign = {kIstioLegacy};
  auto twice = check(own(), CaptureSpec{}, k.side);
  REQUIRE(twice.ok());
  CHECK(twice->diff.empty());  // weir's own rules are right: re-applying would not help
  CHECK(twice->foreign == std::vector<ForeignRules>{kIstioLegacy});
  CHECK_FALSE(twice->in_sync());

  // With drift too, both are reported.
  k.nft.state.erase(Family::V6);
  auto both = check(own(), CaptureSpec{}, k.side);
  REQUIRE(both.ok());
  CHECK_FALSE(both->diff.empty());
  CHECK(both->foreign.size() == 1);

  // A failure to look is check's failure: "in sync" would be a guess.
  k.nft.foreign_errno = EIO;
  auto failed = check(own(), CaptureSpec{}, k.side);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().message.find("check netns /proc/self/ns/net: look for other capture tools' rules") == 0);
}

TEST_CASE("ops clean: weir's rules go, other tools' stay and are named when asked") {
  TwoFilters k;
  k.nft.foreign = {kIstioNative};
  k.iptc.foreign = {kIstioLegacy};
  REQUIRE(apply(own(), CaptureSpec{}, k.side).ok());
  std::vector<std::string> remaining;
  REQUIRE(clean(own(), k.side, &remaining).ok());
  CHECK(k.nft.state.empty());
  CHECK(k.iptc.state.empty());
  REQUIRE(remaining.size() == 2);
  CHECK(remaining[0] ==
        "Istio's table inet istio-proxy-nat in nftables remains: another capture tool's rules, which weir does not "
        "remove; that tool may still capture the traffic (netns /proc/self/ns/net)");
  CHECK(remaining[1].find("Istio's ISTIO_INBOUND, ISTIO_OUTPUT in legacy iptables nat remain") == 0);
  CHECK(k.nft.foreign == std::vector<ForeignRules>{kIstioNative});

  // Not asked (CNI DEL): not looked for at all.
  TwoFilters del;
  del.iptc.foreign = {kIstioLegacy};
  REQUIRE(clean(own(), del.side).ok());
  CHECK(del.iptc.foreign_calls == 0);
}

// ---------------------------------------------------------------------------
// Namespace paths that need no root (issue 12: items 2, 4, 7).

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/wt-ops-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

TEST_CASE("netns: a FIFO is refused at once, not waited on (CNI code 4)") {
  TempDir dir;
  const std::string fifo = dir.path + "/ns";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto pending = std::async(std::launch::async, [&] { return Netns::open(fifo); });
  if (pending.wait_for(std::chrono::seconds(3)) != std::future_status::ready) {
    // Let the blocked open go (a writer appears) so the test can end.
    int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    FAIL("Netns::open blocked on a FIFO");
    if (w >= 0) ::close(w);
    return;
  }
  auto r = pending.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::InvalidArgument);  // CNI: code 4
  CHECK(r.error().message == fifo + " is not a network namespace (it is a FIFO)");

  auto d = Netns::open(dir.path);
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().kind == ErrorKind::InvalidArgument);
  CHECK(d.error().message.find("(it is a directory)") != std::string::npos);

  // And through ops: the same answer, nothing touched.
  Fakes k;
  auto rep = apply(NetnsTarget{fifo, false, 1000}, CaptureSpec{}, k.side);
  REQUIRE_FALSE(rep.ok());
  CHECK(rep.error().kind == ErrorKind::InvalidArgument);
  CHECK(k.filter.apply_calls == 0);
}

TEST_CASE("netns: only ENOENT and ENOTDIR mean 'not found'; other failures keep their errno") {
  auto missing = Netns::open("/var/run/netns/wt-ops-does-not-exist");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind == ErrorKind::NetnsNotFound);
  CHECK(missing.error().sys_errno == ENOENT);

  auto notdir = Netns::open("/etc/hostname/ns");
  REQUIRE_FALSE(notdir.ok());
  CHECK(notdir.error().kind == ErrorKind::NetnsNotFound);
  CHECK(notdir.error().sys_errno == ENOTDIR);

  auto file = Netns::open("/etc/hostname");
  REQUIRE_FALSE(file.ok());
  CHECK(file.error().kind == ErrorKind::InvalidArgument);
  CHECK(file.error().sys_errno == 0);
}

// Lowers the soft RLIMIT_NOFILE so that the next descriptor fails with
// EMFILE; restores it on destruction.
struct NoMoreFds {
  NoMoreFds() {
    ::getrlimit(RLIMIT_NOFILE, &saved);
    int probe = ::dup(0);
    REQUIRE(probe >= 0);
    ::close(probe);
    rlimit lower = saved;
    lower.rlim_cur = static_cast<rlim_t>(probe);  // the lowest free descriptor is the limit
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lower) == 0);
  }
  ~NoMoreFds() { ::setrlimit(RLIMIT_NOFILE, &saved); }
  rlimit saved{};
};

TEST_CASE("netns and netlink: out of descriptors is named EMFILE, not 'not found' or 'Unspecific failure'") {
  Result<Netns> ns = Error{};
  Result<AddressFamilies> addrs = Error{};
  Result<bool> up = Error{};
  // Made before the limit and destroyed after it: UBSan checks the dynamic
  // type of a polymorphic object when its destructor runs, testing the
  // object's memory through a pipe(2), which cannot be made with no
  // descriptor left, and then reports an "invalid vptr". It holds no
  // descriptor itself.
  NetlinkLinks links;
  {
    NoMoreFds limit;
    ns = Netns::open("/proc/self/ns/net");
    addrs = links.global_address_families();  // reads only
    up = links.link_is_up("lo");
  }
  REQUIRE_FALSE(ns.ok());
  CHECK(ns.error().kind != ErrorKind::NetnsNotFound);
  CHECK(ns.error().kind == ErrorKind::Io);
  CHECK(ns.error().sys_errno == EMFILE);
  CHECK(ns.error().message.find("EMFILE") != std::string::npos);

  REQUIRE_FALSE(addrs.ok());
  CHECK(addrs.error().sys_errno == EMFILE);
  CHECK_MESSAGE(addrs.error().message.find("Too many open files") != std::string::npos, addrs.error().message);
  CHECK(addrs.error().message.find("Unspecific failure") == std::string::npos);

  REQUIRE_FALSE(up.ok());
  CHECK(up.error().sys_errno == EMFILE);
}

}  // namespace
}  // namespace weir
