// Root tests of the nftables filter, each in namespaces it creates
// (wt-nft-<pid>-<n>). They look at what the filter did with `nft` and
// `iptables-legacy-save`; the filter itself never runs either. Skipped
// without root or without nft.
#include "kernel/nft/filter.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <atomic>

#include <nlohmann/json.hpp>

#include "kernel/netns.h"
#include "rules/nft/ruleset.h"
#include "rules/plan.h"

namespace weir {
namespace {

struct Run {
  int code;
  std::string out;
};

Run sh(const std::string& cmd) {
  Run r{-1, ""};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool can_run() {
  static const bool ok = [] {
    if (::geteuid() != 0) {
      MESSAGE("skipped: not root");
      return false;
    }
    if (sh("nft --version").code != 0) {
      MESSAGE("skipped: no nft to look at the rules with");
      return false;
    }
    return true;
  }();
  return ok;
}
#define REQUIRE_ROOT() \
  do {                 \
    if (!can_run()) return; \
  } while (0)

std::mutex g_mu;
std::set<std::string> g_live;
void remove_all() {
  std::lock_guard<std::mutex> l(g_mu);
  for (const std::string& n : g_live) sh("ip netns del " + n);
  g_live.clear();
}
void on_signal(int sig) {
  remove_all();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// A throwaway namespace with lo up; `enter()` moves the calling thread in.
class TestNs {
 public:
  TestNs() {
    static bool once = [] {
      std::atexit(remove_all);
      ::signal(SIGINT, on_signal);
      ::signal(SIGTERM, on_signal);
      return true;
    }();
    (void)once;
    static int counter = 0;
    name_ = "wt-nft-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    {
      std::lock_guard<std::mutex> l(g_mu);
      g_live.insert(name_);
    }
    Run r = sh("ip netns add " + name_ + " && ip -n " + name_ + " link set lo up");
    REQUIRE_MESSAGE(r.code == 0, r.out);
  }
  ~TestNs() {
    sh("ip netns del " + name_);
    std::lock_guard<std::mutex> l(g_mu);
    g_live.erase(name_);
  }
  std::string path() const { return "/var/run/netns/" + name_; }
  std::string exec(const std::string& cmd) const { return "ip netns exec " + name_ + " " + cmd; }
  NetnsGuard enter() const {
    auto ns = Netns::open(path());
    REQUIRE(ns.ok());
    auto g = NetnsGuard::enter(*ns);
    REQUIRE(g.ok());
    return std::move(*g);
  }
  std::string ruleset() const { return sh(exec("nft list ruleset")).out; }
  std::string table() const { return sh(exec("nft -a list table inet weir")).out; }

 private:
  std::string name_;
};

Cidr addr(const std::string& s) {
  auto c = parse_cidr(s);
  REQUIRE_MESSAGE(c.ok(), s);
  return *c;
}

const std::vector<Family> kBoth{Family::V4, Family::V6};

// The lines of the two as nft text that the other lacks, for a readable
// message when they differ.
std::string diff_text(const CapturePolicy& live, const CapturePolicy& wanted) {
  auto lines = [](const std::string& t) {
    std::multiset<std::string> out;
    size_t a = 0;
    while (a < t.size()) {
      size_t b = t.find('\n', a);
      if (b == std::string::npos) b = t.size();
      out.insert(t.substr(a, b - a));
      a = b + 1;
    }
    return out;
  };
  const auto l = lines(nft::render_text(live)), w = lines(nft::render_text(wanted));
  std::string out;
  for (const auto& x : l)
    if (!w.count(x)) out += "live only:   " + x + "\n";
  for (const auto& x : w)
    if (!l.count(x)) out += "wanted only: " + x + "\n";
  if (!out.empty()) return out;
  // Same text: say where the structures part.
  if (live.families.size() != wanted.families.size()) return "families differ";
  for (size_t f = 0; f < live.families.size(); ++f) {
    const auto& lf = live.families[f];
    const auto& wf = wanted.families[f];
    if (lf.stages.size() != wf.stages.size()) return "stage count differs";
    for (size_t st = 0; st < lf.stages.size(); ++st) {
      const auto& ls = lf.stages[st];
      const auto& ws = wf.stages[st];
      for (size_t c = 0; c < std::max(ls.chains.size(), ws.chains.size()); ++c) {
        if (c >= ls.chains.size() || c >= ws.chains.size()) return "chain count differs";
        const auto& lc = ls.chains[c];
        const auto& wc = ws.chains[c];
        if (lc.name != wc.name || lc.hook != wc.hook) return "chain " + std::to_string(c) + ": " + lc.name + " vs " + wc.name;
        for (size_t i = 0; i < std::min(lc.steps.size(), wc.steps.size()); ++i) {
          const Step& a = lc.steps[i];
          const Step& b = wc.steps[i];
          if (a.match == b.match && a.action == b.action && a.reason == b.reason) continue;
          return "chain " + lc.name + " step " + std::to_string(i) + ": match " + (a.match == b.match ? "same" : "differs") +
                 ", action " + (a.action == b.action ? "same" : "differs (index " + std::to_string(a.action.index()) + " vs " + std::to_string(b.action.index()) + ")") +
                 ", reason " + (a.reason == b.reason ? "same" : "[" + a.reason + "] vs [" + b.reason + "]");
        }
      }
    }
  }
  return "differs somewhere else";
}
// Routes are not the filter's (packet_filter.h): compare the rules.
#define CHECK_SAME(live, wanted) CHECK_MESSAGE((live).families == (wanted).families, diff_text((live), (wanted)))

std::vector<CaptureSpec> spec_matrix() {
  std::vector<CaptureSpec> specs;
  CaptureSpec d;
  specs.push_back(d);
  CaptureSpec tp = d;
  tp.mode = InboundMode::Tproxy;
  specs.push_back(tp);
  CaptureSpec dns = d;
  dns.dns.capture = true;
  specs.push_back(dns);
  CaptureSpec dns_servers = dns;
  dns_servers.dns.capture_all = false;
  dns_servers.dns.servers = {addr("198.18.0.53"), addr("fd00::53")};
  specs.push_back(dns_servers);
  CaptureSpec many = tp;
  many.drop_invalid = true;
  many.proxy_uids = {1337, 1338};
  many.proxy_gids = {1337};
  many.exclude_interfaces = {"eth7"};
  many.kube_virt_interfaces = {"virt+"};
  many.exclude_inbound_cidrs = {addr("198.18.9.0/24"), addr("fd00:9::/64")};
  many.exclude_outbound_cidrs = {addr("198.18.4.0/24"), addr("198.18.5.0/24"), addr("198.18.7.7"), addr("fd00:1::/64")};
  many.outbound_cidrs = std::vector<Cidr>{addr("198.18.0.0/16"), addr("fd00::/16")};
  many.exclude_outbound_ports = {{9000, 9000}, {9100, 9200}};
  many.inbound_ports = std::vector<PortRange>{};
  for (uint16_t p = 8000; p < 8040; p += 2) many.inbound_ports->push_back({p, p});
  many.dns.capture = true;
  specs.push_back(many);
  CaptureSpec v4 = many;
  v4.ip_families = IpFamilies::V4;
  v4.exclude_inbound_cidrs = {addr("198.18.9.0/24")};
  v4.exclude_outbound_cidrs = {addr("198.18.4.0/24")};
  v4.outbound_cidrs = std::vector<Cidr>{addr("198.18.0.0/16")};
  specs.push_back(v4);
  return specs;
}

// A policy with sets of more than one element in every slot nft has.
CapturePolicy set_policy() {
  CapturePolicy p;
  Step s;
  s.match.dst = CidrSet{{addr("198.18.1.0/24"), addr("198.18.2.0/24"), addr("198.18.3.1")}, true};
  s.match.src = CidrSet{{addr("198.18.0.0/16"), addr("10.0.0.0/8")}, false};
  s.match.proto = Proto::Tcp;
  s.match.dport = PortSet{{{80, 80}, {443, 443}, {8000, 8100}}, false};
  s.match.sport = PortSet{{{1, 1023}}, true};
  s.match.out = IfaceMatch{"eth+", false};
  s.match.mark = MarkMatch{0x10, 0xf0, true};
  s.match.conntrack = Conntrack{Conntrack::kNew, false};
  s.action = SetMark{0x2, 0xf};
  s.reason = "sets in every slot to {dst}";
  Step r;
  r.match.dst = CidrSet{{addr("fd00::/64"), addr("fd00:0:0:1::/64"), addr("fd01::1")}, false};
  r.match.proto = Proto::Udp;
  r.match.dport = PortSet{{{53, 53}, {5353, 5353}}, true};
  r.action = Verdict{Verdict::Drop};
  r.reason = "v6 sets";
  Step j;
  j.action = Jump{"WEIR_SETS"};
  j.reason = "jump";
  p.families.push_back(FamilyPolicy{
      Family::V4,
      {StagePolicy{Stage::Mangle, {PolicyChain{"OUTPUT", Hook::Output, {j}, 0}, PolicyChain{"WEIR_SETS", std::nullopt, {s}, 0}}}}});
  p.families.push_back(FamilyPolicy{
      Family::V6,
      {StagePolicy{Stage::Mangle, {PolicyChain{"OUTPUT", Hook::Output, {j}, 0}, PolicyChain{"WEIR_SETS", std::nullopt, {r}, 0}}}}});
  return p;
}

TEST_CASE("nft filter: apply installs one inet table that reads back as the policy, with no xt expression") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  for (const CaptureSpec& spec : spec_matrix()) {
    TestNs ns;
    const CapturePolicy p = capture_policy(spec);
    {
      auto g = ns.enter();
      auto prev = filter->apply(p, kBoth);
      REQUIRE_MESSAGE(prev.ok(), (prev.ok() ? "" : prev.error().message));
      CHECK(prev->families.empty());
      auto live = filter->read(kBoth);
      REQUIRE(live.ok());
      CHECK_SAME(*live, filter->canonical(p));
    }
    const std::string json = sh(ns.exec("nft --json list table inet weir")).out;
    CHECK(json.find("\"xt\"") == std::string::npos);
    CHECK(json.find("\"chain\"") != std::string::npos);
    // Only weir's table.
    const std::string tables = sh(ns.exec("nft list tables")).out;
    CHECK(tables == "table inet weir\n");
    const std::string listed = ns.table();
    CHECK(listed.find("comment \"weir: outbound capture\"") != std::string::npos);
  }
}

TEST_CASE("nft filter: sets of every kind read back; nft prints them") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  const CapturePolicy p = set_policy();
  {
    auto g = ns.enter();
    auto prev = filter->apply(p, kBoth);
    REQUIRE_MESSAGE(prev.ok(), (prev.ok() ? "" : prev.error().message));
    auto live = filter->read(kBoth);
    REQUIRE(live.ok());
    CHECK_SAME(*live, filter->canonical(p));
  }
  const std::string t = ns.table();
  CAPTURE(t);
  CHECK(t.find("ip daddr != { 198.18.1.0-198.18.2.255, 198.18.3.1 }") != std::string::npos);
  CHECK(t.find("tcp dport { 80, 443, 8000-8100 }") != std::string::npos);
  CHECK(t.find("oifname \"eth*\"") != std::string::npos);
}

TEST_CASE("nft filter: the text weir plan prints is what nft -c accepts") {
  REQUIRE_ROOT();
  TestNs ns;
  std::vector<CapturePolicy> policies;
  for (const CaptureSpec& spec : spec_matrix()) policies.push_back(capture_policy(spec));
  policies.push_back(set_policy());
  int n = 0;
  for (const CapturePolicy& p : policies) {
    const std::string file = "/tmp/wt-nft-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    {
      std::ofstream(file + ".nft") << nft::render_text(p);
      std::ofstream(file + ".json") << nft::render_json(p).dump();
    }
    Run text = sh(ns.exec("nft -c -f " + file + ".nft"));
    CHECK_MESSAGE(text.code == 0, text.out);
    Run json = sh(ns.exec("nft -j -c -f " + file + ".json"));
    CHECK_MESSAGE(json.code == 0, json.out);
    std::remove((file + ".nft").c_str());
    std::remove((file + ".json").c_str());
  }
  CHECK(ns.ruleset().empty());
}

TEST_CASE("nft filter: applying the same policy twice writes nothing; a change replaces the table") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  CaptureSpec spec;
  const CapturePolicy p = capture_policy(spec);
  auto g = ns.enter();
  REQUIRE(filter->apply(p, kBoth).ok());
  const std::string once = ns.table();  // with handles: a rewrite would change them
  auto again = filter->apply(p, kBoth);
  REQUIRE(again.ok());
  CHECK_SAME(*again, filter->canonical(p));
  CHECK(ns.table() == once);
  spec.mode = InboundMode::Tproxy;
  const CapturePolicy tp = capture_policy(spec);
  auto prev = filter->apply(tp, kBoth);
  REQUIRE(prev.ok());
  CHECK_SAME(*prev, filter->canonical(p));
  CHECK_SAME(*filter->read(kBoth), filter->canonical(tp));
  CHECK(sh(ns.exec("nft list tables")).out == "table inet weir\n");
  // Scope: an IPv4-only apply keeps the IPv6 half as it is.
  CaptureSpec v4 = spec;
  v4.ip_families = IpFamilies::V4;
  v4.mode = InboundMode::Redirect;
  REQUIRE(filter->apply(capture_policy(v4), {Family::V4}).ok());
  auto live = filter->read(kBoth);
  REQUIRE(live.ok());
  REQUIRE(live->families.size() == 2);
  CHECK(live->families[0] == filter->canonical(capture_policy(v4)).families[0]);
  CHECK(live->families[1] == filter->canonical(tp).families[1]);
  // Clean: the empty policy removes the table; again is a no-op.
  REQUIRE(filter->apply(CapturePolicy{}, kBoth).ok());
  CHECK(ns.ruleset().empty());
  REQUIRE(filter->apply(CapturePolicy{}, kBoth).ok());
}

TEST_CASE("nft filter: a foreign inet table and a foreign legacy rule are byte-identical after apply and clean") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  REQUIRE(sh(ns.exec("nft add table inet foreign")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain inet foreign out '{ type nat hook output priority -100; }'")).code == 0);
  REQUIRE(sh(ns.exec("nft add rule inet foreign out tcp dport 9 counter return comment \\\"theirs\\\"")).code == 0);
  REQUIRE(sh(ns.exec("iptables-legacy -t nat -A OUTPUT -p tcp --dport 7 -j RETURN")).code == 0);
  const std::string foreign = sh(ns.exec("nft -a list table inet foreign")).out;
  const std::string legacy = sh(ns.exec("iptables-legacy-save -t nat")).out;
  auto strip = [](const std::string& s) {  // iptables-save's date lines
    std::string out;
    size_t a = 0;
    while (a < s.size()) {
      size_t b = s.find('\n', a);
      if (b == std::string::npos) b = s.size();
      if (s[a] != '#') out += s.substr(a, b - a) + "\n";
      a = b + 1;
    }
    return out;
  };
  {
    auto g = ns.enter();
    REQUIRE(filter->apply(capture_policy(CaptureSpec{}), kBoth).ok());
  }
  CHECK(sh(ns.exec("nft -a list table inet foreign")).out == foreign);
  CHECK(strip(sh(ns.exec("iptables-legacy-save -t nat")).out) == strip(legacy));
  {
    auto g = ns.enter();
    auto live = filter->read(kBoth);
    REQUIRE(live.ok());
    CHECK_SAME(*live, filter->canonical(capture_policy(CaptureSpec{})));
    REQUIRE(filter->apply(CapturePolicy{}, kBoth).ok());
  }
  CHECK(sh(ns.exec("nft -a list table inet foreign")).out == foreign);
  CHECK(strip(sh(ns.exec("iptables-legacy-save -t nat")).out) == strip(legacy));
  CHECK(sh(ns.exec("nft list tables")).out == "table inet foreign\n");
}

TEST_CASE("nft filter: other capture tools' tables and iptables-nft chains are named, by their names only") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  {
    auto g = ns.enter();
    auto none = filter->foreign_rules();
    REQUIRE_MESSAGE(none.ok(), none.error().message);
    CHECK(none->empty());  // an empty namespace
    REQUIRE(filter->apply(capture_policy(CaptureSpec{}), kBoth).ok());
    auto own = filter->foreign_rules();
    REQUIRE(own.ok());
    CHECK(own->empty());  // weir's own table is nobody else's
  }
  // Istio 1.27's native tables, and an iptables-nft nat table (as
  // iptables-nft makes it) holding Istio's and Linkerd's chains.
  REQUIRE(sh(ns.exec("nft add table inet istio-proxy-nat")).code == 0);
  REQUIRE(sh(ns.exec("nft add table inet istio-proxy-mangle")).code == 0);
  REQUIRE(sh(ns.exec("nft add table ip nat")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip nat PREROUTING '{ type nat hook prerouting priority -100; }'")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip nat ISTIO_INBOUND")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip nat PROXY_INIT_REDIRECT")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip nat ISTIO_OUTPUT")).code == 0);
  REQUIRE(sh(ns.exec("nft add table ip6 mangle")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip6 mangle ISTIO_PRERT")).code == 0);
  // Not a capture tool's: a filter table, and a chain of that name elsewhere.
  REQUIRE(sh(ns.exec("nft add table ip filter")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip filter ISTIO_NOT_CAPTURE")).code == 0);
  const std::string before = ns.ruleset();
  auto g = ns.enter();
  auto found = filter->foreign_rules();
  REQUIRE_MESSAGE(found.ok(), found.error().message);
  std::vector<ForeignRules> want{
      {"Istio", "nftables", "inet istio-proxy-nat", {}},
      {"Istio", "nftables", "inet istio-proxy-mangle", {}},
      {"Istio", "iptables-nft", "ip nat", {"ISTIO_INBOUND", "ISTIO_OUTPUT"}},
      {"Linkerd", "iptables-nft", "ip nat", {"PROXY_INIT_REDIRECT"}},
      {"Istio", "iptables-nft", "ip6 mangle", {"ISTIO_PRERT"}},
  };
  // The kernel lists tables newest first or oldest first depending on its
  // version; compare as sets.
  auto sorted = [](std::vector<ForeignRules> v) {
    for (auto& f : v) std::sort(f.chains.begin(), f.chains.end());
    std::sort(v.begin(), v.end(), [](const ForeignRules& a, const ForeignRules& b) {
      return std::tie(a.tool, a.backend, a.table) < std::tie(b.tool, b.backend, b.table);
    });
    return v;
  };
  CHECK(sorted(*found) == sorted(want));
  CHECK(ns.ruleset() == before);  // looking changed nothing
}

TEST_CASE("nft filter: what looking for other tools' rules costs an apply (information only)") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  auto g = ns.enter();
  REQUIRE(filter->apply(capture_policy(CaptureSpec{}), kBoth).ok());
  auto time_it = [&] {
    std::vector<double> us;
    for (int i = 0; i < 200; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto found = filter->foreign_rules();
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      REQUIRE(found.ok());
    }
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
  };
  const double alone = time_it();
  // With an iptables-nft nat table beside weir's: one more dump (chains).
  REQUIRE(sh(ns.exec("nft add table ip nat")).code == 0);
  REQUIRE(sh(ns.exec("nft add chain ip nat ISTIO_OUTPUT")).code == 0);
  const double beside = time_it();
  MESSAGE("foreign_rules median: " << alone << " us with only weir's table, " << beside
                                   << " us beside an ip nat table (200 calls each)");
}

TEST_CASE("nft filter: a batch the kernel refuses leaves the namespace as it was") {
  REQUIRE_ROOT();
  auto good = make_nft_filter();
  auto refused = make_nft_filter(NftOptions{true});
  TestNs ns;
  auto g = ns.enter();
  // Nothing before.
  auto r = refused->apply(capture_policy(CaptureSpec{}), kBoth);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("refused rule") != std::string::npos);
  CHECK(ns.ruleset().empty());
  // weir's table before.
  REQUIRE(good->apply(capture_policy(CaptureSpec{}), kBoth).ok());
  const std::string before = ns.table();
  CaptureSpec tp;
  tp.mode = InboundMode::Tproxy;
  tp.dns.capture = true;
  r = refused->apply(capture_policy(tp), kBoth);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::Unsupported);  // a key nf_tables lacks: "not here"
  CHECK(ns.table() == before);
  // And the probe says so without changing anything.
  Status pr = refused->probe(capture_policy(tp));
  CHECK_FALSE(pr.ok());
  CHECK(ns.table() == before);
}

TEST_CASE("nft filter: probe accepts every spec and commits nothing") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  auto g = ns.enter();
  for (const CaptureSpec& spec : spec_matrix()) {
    Status st = filter->probe(capture_policy(spec));
    CHECK_MESSAGE(st.ok(), (st.ok() ? "" : st.error().message));
  }
  CHECK(filter->probe(CapturePolicy{}).ok());
  CHECK(ns.ruleset().empty());
  // A policy nft cannot say is refused before the kernel is asked.
  CapturePolicy bad = capture_policy(CaptureSpec{});
  bad.families[0].stages[0].chains[0].steps[0].match.unknown.push_back("-m statistic");
  CHECK(filter->probe(bad).error().kind == ErrorKind::InvalidSpec);
}

TEST_CASE("nft filter: a rule someone added to weir's table reads as unknown, and apply puts the table back") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  const CapturePolicy p = capture_policy(CaptureSpec{});
  auto g = ns.enter();
  REQUIRE(filter->apply(p, kBoth).ok());
  REQUIRE(sh(ns.exec("nft insert rule inet weir ip_nat_WEIR_OUTPUT ip ttl 5 meta random 3 accept")).code == 0);
  auto live = filter->read(kBoth);
  REQUIRE(live.ok());
  CHECK_FALSE(*live == filter->canonical(p));
  bool unknown = false;
  for (const auto& fp : live->families)
    for (const auto& sp : fp.stages)
      for (const auto& c : sp.chains)
        for (const auto& s : c.steps) unknown |= !s.match.unknown.empty();
  CHECK(unknown);
  REQUIRE(filter->apply(p, kBoth).ok());
  CHECK(*filter->read(kBoth) == filter->canonical(p));
}

TEST_CASE("nft filter: counters count real packets") {
  REQUIRE_ROOT();
  auto filter = make_nft_filter();
  TestNs ns;
  const CapturePolicy p = capture_policy(CaptureSpec{});
  auto g = ns.enter();
  REQUIRE(filter->apply(p, kBoth).ok());
  sh(ns.exec("sh -c 'echo x > /dev/tcp/127.0.0.1/9' 2>/dev/null; true"));
  sh(ns.exec("bash -c 'echo x > /dev/tcp/127.0.0.1/9' 2>/dev/null; true"));
  auto live = filter->read(kBoth);
  REQUIRE(live.ok());
  uint64_t packets = 0;
  for (const auto& c : live->families[0].stages.back().chains)
    if (c.name == "OUTPUT")
      for (const auto& s : c.steps) packets += s.counters.packets;
  CHECK(packets >= 1);
}

}  // namespace
}  // namespace weir

namespace weir {
namespace {

TEST_CASE("nft filter: writers to one namespace with different specs end with exactly one consistent table") {
  REQUIRE_ROOT();
  TestNs ns;
  std::vector<CaptureSpec> specs = spec_matrix();
  std::vector<CapturePolicy> wanted;
  auto filter = make_nft_filter();
  for (const auto& s : specs) wanted.push_back(filter->canonical(capture_policy(s)));
  for (bool locked : {true, false}) {
    std::atomic<int> failed{0};
    std::vector<std::thread> writers;
    for (size_t w = 0; w < 4; ++w)
      writers.emplace_back([&, w] {
        auto f = make_nft_filter();
        auto target = Netns::open(ns.path());
        if (!target) return void(++failed);
        auto g = NetnsGuard::enter(*target);
        if (!g) return void(++failed);
        for (int i = 0; i < 10; ++i) {
          const CapturePolicy& p = wanted[(w + static_cast<size_t>(i)) % wanted.size()];
          if (locked) {
            auto lock = NetnsLock::acquire(*target, 10000);
            if (!lock || !f->apply(p, kBoth).ok()) ++failed;
          } else if (!f->apply(p, kBoth).ok()) {
            ++failed;  // without the lock a writer may lose (EEXIST, ENOENT); the table stays whole
          }
        }
      });
    for (auto& t : writers) t.join();
    if (locked) CHECK(failed == 0);
    CHECK(sh(ns.exec("nft list tables")).out == "table inet weir\n");
    auto g = ns.enter();
    auto live = filter->read(kBoth);
    REQUIRE(live.ok());
    bool one_of = false;
    for (const auto& p : wanted) one_of |= live->families == p.families;
    CHECK_MESSAGE(one_of, (locked ? "locked" : "unlocked"));
  }
}

}  // namespace
}  // namespace weir
