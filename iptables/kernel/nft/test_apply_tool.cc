// weir-nft-test-apply: a test tool, not a product binary. Until the front
// ends can select the nftables filter (ops integration), the real-traffic
// test (tests/e2e/test_nft_capture.py) installs weir's nft ruleset with it:
// the spec's policy through the nftables filter, plus what ops adds around
// a filter (TPROXY's policy routes, ::6 on lo), in the named namespace.
//
//   weir-nft-test-apply --netns PATH [--spec JSON]   apply (default spec if none)
//   weir-nft-test-apply --netns PATH --clean [--spec JSON]
//   --no-probe: skip the probe (it costs an RCU grace period), as a plugin
//   that applies and falls back on Unsupported would
//
// Prints "ok" or the error and exits 1.
#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "kernel/netns.h"
#include "kernel/nft/filter.h"
#include "kernel/links.h"
#include "kernel/routing.h"
#include "rules/plan.h"

using namespace weir;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "weir-nft-test-apply: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string netns, spec_json = "{}";
  bool clean = false, probe = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--netns" && i + 1 < argc) netns = argv[++i];
    else if (a == "--spec" && i + 1 < argc) spec_json = argv[++i];
    else if (a == "--clean") clean = true;
    else if (a == "--no-probe") probe = false;
    else return fail("unknown argument " + a);
  }
  if (netns.empty()) return fail("--netns is required (never this namespace)");
  CaptureSpec spec;
  try {
    if (Status st = merge_json(spec, nlohmann::json::parse(spec_json)); !st.ok()) return fail(st.error().message);
  } catch (const std::exception& e) {
    return fail(std::string("--spec: ") + e.what());
  }
  auto ns = Netns::open(netns_path(netns));
  if (!ns) return fail(ns.error().message);
  auto self = Netns::current();
  if (!self) return fail(self.error().message);
  if (ns->same_as(*self)) return fail("refusing this tool's own namespace");
  auto lock = NetnsLock::acquire(*ns, 5000);
  if (!lock) return fail(lock.error().message);
  auto guard = NetnsGuard::enter(*ns);
  if (!guard) return fail(guard.error().message);

  const CapturePolicy policy = capture_policy(spec);
  auto filter = make_nft_filter();
  NetlinkRouting routes;
  NetlinkLinks links;
  if (clean) {
    if (auto r = filter->apply(CapturePolicy{}, {Family::V4, Family::V6}); !r) return fail(r.error().message);
    for (const PolicyRoute& r : policy.routes)
      if (Status st = routes.remove(r); !st.ok()) return fail(st.error().message);
    std::puts("ok");
    return 0;
  }
  if (probe)
    if (Status st = filter->probe(policy); !st.ok()) return fail("probe: " + st.error().message);
  if (auto r = filter->apply(policy, {Family::V4, Family::V6}); !r) return fail(r.error().message);
  for (const PolicyRoute& r : policy.routes)
    if (Status st = routes.install(r); !st.ok()) return fail(st.error().message);
  for (const FamilyPolicy& f : policy.families)
    if (f.family == Family::V6)
      if (auto added = links.add_lo_address(passthrough_addr(Family::V6)); !added) return fail(added.error().message);
  std::puts("ok");
  return 0;
}
