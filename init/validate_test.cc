#include "init/validate.h"

#include <doctest/doctest.h>

namespace weir {

TEST_CASE("endpoints: IPv4 and bracketed IPv6, round trip") {
  auto v4 = parse_endpoint("--target", "198.19.255.254:15999");
  REQUIRE(v4.ok());
  CHECK(v4->addr.family == Family::V4);
  CHECK(v4->port == 15999);
  CHECK(format_endpoint(*v4) == "198.19.255.254:15999");
  auto v6 = parse_endpoint("--target", "[fd00::1]:80");
  REQUIRE(v6.ok());
  CHECK(v6->addr.family == Family::V6);
  CHECK(format_endpoint(*v6) == "[fd00::1]:80");
  CHECK(parse_endpoint("t", kDefaultValidationTarget).ok());
}

TEST_CASE("endpoints: errors name the flag and the problem") {
  for (const char* bad : {"198.19.255.254", "198.19.255.254:0", "198.19.255.254:70000", "fd00::1:80",
                          "[fd00::1]80", "198.18.0.0/15:80", "nonsense:80", "1.2.3.4:x"}) {
    auto r = parse_endpoint("--target", bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.error().message.find("--target") != std::string::npos);
  }
}

TEST_CASE("probes: loopback and the namespace's own addresses are inbound, the rest outbound") {
  auto dir = [](const char* target, std::vector<Cidr> local = {}) {
    return probe_direction(*parse_endpoint("t", target), local);
  };
  CHECK(dir("127.0.0.6:15002") == ProbeDirection::Inbound);
  CHECK(dir("[::1]:15002") == ProbeDirection::Inbound);
  CHECK(dir(kDefaultValidationTarget) == ProbeDirection::Outbound);
  CHECK(dir("[fd00:198:18::ffff]:15999") == ProbeDirection::Outbound);
  CHECK(dir("198.18.0.10:8080", {*parse_cidr("198.18.0.10")}) == ProbeDirection::Inbound);
  CHECK(dir("[fd00:198:18::10]:8080", {*parse_cidr("198.18.0.10"), *parse_cidr("fd00:198:18::10")}) ==
        ProbeDirection::Inbound);
  CHECK(dir("198.18.0.11:8080", {*parse_cidr("198.18.0.10")}) == ProbeDirection::Outbound);
}

TEST_CASE("default target: IPv4 where it is routed, else IPv6, else an error naming both") {
  const Endpoint v4 = *parse_endpoint("t", kDefaultValidationTarget);
  const Endpoint v6 = *parse_endpoint("t", kDefaultValidationTarget6);
  CHECK(v6.addr.family == Family::V6);
  CHECK(v6.addr.addr[0] == 0xfd);  // fd00::/8
  std::vector<Endpoint> asked;
  auto routes = [&](bool four, bool six) {
    asked.clear();
    return [&asked, four, six](const Endpoint& to, const std::optional<Cidr>&) {
      asked.push_back(to);
      return to.addr.family == Family::V4 ? four : six;
    };
  };

  auto dual = default_target(std::nullopt, routes(true, true));
  REQUIRE(dual.ok());
  CHECK(*dual == v4);  // a dual-stack pod is checked on IPv4: its rules may be IPv4-only
  CHECK(asked.size() == 1);
  auto v4_only = default_target(std::nullopt, routes(true, false));
  REQUIRE(v4_only.ok());
  CHECK(*v4_only == v4);
  auto v6_only = default_target(std::nullopt, routes(false, true));
  REQUIRE(v6_only.ok());
  CHECK(*v6_only == v6);
  CHECK(asked == std::vector<Endpoint>{v4, v6});

  auto neither = default_target(std::nullopt, routes(false, false));
  REQUIRE(!neither.ok());
  CHECK(neither.error().kind == ErrorKind::Unsupported);
  CHECK(neither.error().message.find("198.19.255.254:15999") != std::string::npos);
  CHECK(neither.error().message.find("[fdff:ffff:ffff:ffff::fe]:15999") != std::string::npos);
  CHECK(neither.error().message.find("--target") != std::string::npos);
}

TEST_CASE("default target: a --source limits it to the source's family") {
  auto everywhere = [](const Endpoint&, const std::optional<Cidr>&) { return true; };
  auto v4_source = default_target(*parse_cidr("127.0.0.1"), everywhere);
  REQUIRE(v4_source.ok());
  CHECK(v4_source->addr.family == Family::V4);
  auto v6_source = default_target(*parse_cidr("fd00:198:18::10"), everywhere);
  REQUIRE(v6_source.ok());
  CHECK(*v6_source == *parse_endpoint("t", kDefaultValidationTarget6));

  std::optional<Cidr> seen;
  auto no_v4 = [&](const Endpoint& to, const std::optional<Cidr>& source) {
    seen = source;
    return to.addr.family == Family::V6;
  };
  auto r = default_target(*parse_cidr("127.0.0.1"), no_v4);  // never falls back to the other family
  REQUIRE(!r.ok());
  CHECK(seen == parse_cidr("127.0.0.1").value());
  CHECK(r.error().message.find("from 127.0.0.1") != std::string::npos);
  CHECK(r.error().message.find("fdff") == std::string::npos);
}

TEST_CASE("has_route: loopback is routed, from no source or from 127.0.0.1") {
  // A UDP connect() to loopback: a route lookup in the test's namespace, nothing sent.
  CHECK(has_route(*parse_endpoint("t", "127.0.0.1:9"), std::nullopt));
  CHECK(has_route(*parse_endpoint("t", "127.0.0.1:9"), *parse_cidr("127.0.0.1")));
}

TEST_CASE("durations: Go's syntax") {
  using std::chrono::milliseconds;
  CHECK(*parse_duration("t", "5s") == milliseconds{5000});
  CHECK(*parse_duration("t", "500ms") == milliseconds{500});
  CHECK(*parse_duration("t", "1m30s") == milliseconds{90000});
  CHECK(*parse_duration("t", "1.5s") == milliseconds{1500});
  CHECK(*parse_duration("t", "0") == milliseconds{0});
  CHECK(*parse_duration("t", "250us") == milliseconds{1});  // rounded up, never to zero
  for (const char* bad : {"", "5", "5x", "s", "-1s", "48h"}) {
    auto r = parse_duration("--timeout", bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.error().message.find("--timeout") != std::string::npos);
  }
}

}  // namespace weir
