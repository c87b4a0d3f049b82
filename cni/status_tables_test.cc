#include "cni/status_probe.h"

#include <algorithm>

#include <doctest/doctest.h>

using namespace weir;
using namespace weir::cni;

namespace {
std::vector<TableProbe> probes(const CaptureSpec& spec, bool ipv6 = true) {
  auto t = tables_to_probe(spec, ipv6);
  REQUIRE(t.ok());
  return t.value();
}
}  // namespace

TEST_CASE("STATUS probes the tables the spec needs") {
  // The default spec: nat in both families.
  CHECK(probes(CaptureSpec{}) == std::vector<TableProbe>{{Family::V4, "nat"}, {Family::V6, "nat"}});
  // IPv6 only when the kernel has it.
  CHECK(probes(CaptureSpec{}, false) == std::vector<TableProbe>{{Family::V4, "nat"}});
  CaptureSpec v4;
  v4.ip_families = IpFamilies::V4;
  CHECK(probes(v4) == std::vector<TableProbe>{{Family::V4, "nat"}});

  CaptureSpec tproxy = v4;
  tproxy.mode = InboundMode::Tproxy;
  auto t = probes(tproxy);
  CHECK(std::find(t.begin(), t.end(), TableProbe{Family::V4, "mangle"}) != t.end());
  CHECK(std::find(t.begin(), t.end(), TableProbe{Family::V4, "raw"}) == t.end());

  CaptureSpec dns;
  dns.dns.capture = true;
  auto d = probes(dns);
  CHECK(std::find(d.begin(), d.end(), TableProbe{Family::V4, "raw"}) != d.end());
  CHECK(std::find(d.begin(), d.end(), TableProbe{Family::V6, "raw"}) != d.end());
  CHECK(std::find(d.begin(), d.end(), TableProbe{Family::V4, "mangle"}) == d.end());
}

TEST_CASE("STATUS: the IPv4 nat table always, IPv6 alone needs IPv6") {
  CaptureSpec v6;
  v6.ip_families = IpFamilies::V6;
  auto t = probes(v6);
  REQUIRE_FALSE(t.empty());
  CHECK(t.front() == TableProbe{Family::V4, "nat"});  // DEL cleans IPv4 whatever the spec
  CHECK(std::find(t.begin(), t.end(), TableProbe{Family::V6, "nat"}) != t.end());
  auto none = tables_to_probe(v6, false);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().kind == ErrorKind::Unsupported);
}
