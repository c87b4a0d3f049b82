#include "init/istio_flags.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

#include "frontend/capture_flags.h"
#include "rules/explain.h"
#include "rules/plan.h"

namespace weir {
namespace {


// Parses an istio-iptables command line the way weir-init does, in a pod
// that is IPv6-only when `ipv6_only` says so.
Result<IstioCommand> istio(std::vector<std::string> args, uint32_t uid = 1000, uint32_t gid = 1000,
                           std::vector<Cidr> nameservers = {}, int* ns_calls = nullptr, bool ipv6_only = false,
                           int* v6_calls = nullptr) {
  CLI::App app;
  IstioFlags f;
  bind_istio_flags(app, f);
  std::vector<const char*> argv{"istio-iptables"};
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  if (auto s = apply_istio_env_fallbacks(app, f); !s) return s.error();
  return istio_command(
      f,
      [&] {
        if (ns_calls) ++*ns_calls;
        return Result<std::vector<Cidr>>(nameservers);
      },
      [&](const std::string&) {
        if (v6_calls) ++*v6_calls;
        return Result<bool>(ipv6_only);
      },
      uid, gid);
}

std::vector<PortRange> ports(std::initializer_list<uint16_t> ps) {
  std::vector<PortRange> out;
  for (auto p : ps) out.push_back({p, p});
  return out;
}

Cidr cidr(const char* text) { return *parse_cidr(text); }

}  // namespace

TEST_CASE("istio: the injector's default command line captures everything but Istio's ports") {
  auto c = istio({"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d",
                  "15090,15021,15020", "--log_output_level=default:info"});
  REQUIRE(c.ok());
  const CaptureSpec& s = c->spec;
  CHECK(s.outbound_port == 15001);
  CHECK(s.inbound_port == 15006);
  CHECK(s.inbound_tunnel_port == 15008);
  CHECK(s.proxy_uids == std::vector<uint32_t>{1337});
  CHECK(s.proxy_gids == std::vector<uint32_t>{1337});
  CHECK(s.mode == InboundMode::Redirect);
  CHECK_FALSE(s.inbound_ports.has_value());
  CHECK(s.exclude_inbound_ports == ports({15090, 15021, 15020}));
  CHECK_FALSE(s.outbound_cidrs.has_value());
  CHECK_FALSE(s.outbound_ports.has_value());
  CHECK(s.exclude_outbound_cidrs.empty());
  CHECK(s.ip_families == IpFamilies::V4);
  CHECK_FALSE(s.dns.capture);
  CHECK(c->apply);
  CHECK_FALSE(c->validate);
  CHECK_FALSE(c->dry_run);
}

TEST_CASE("istio: without -b and -i nothing is captured (Istio's defaults)") {
  auto c = istio({});
  REQUIRE(c.ok());
  REQUIRE(c->spec.inbound_ports.has_value());
  CHECK(c->spec.inbound_ports->empty());
  REQUIRE(c->spec.outbound_cidrs.has_value());
  CHECK(c->spec.outbound_cidrs->empty());
  CHECK(c->spec.exclude_inbound_ports.empty());
}

TEST_CASE("istio: -b list captures exactly those ports and ignores -d") {
  auto c = istio({"-b", "8080,9090", "-d", "8080"});
  REQUIRE(c.ok());
  CHECK(c->spec.inbound_ports == std::optional(ports({8080, 9090})));
  CHECK(c->spec.exclude_inbound_ports.empty());
}

TEST_CASE("istio: -e changes the tunnel port, never captured inbound") {
  auto c = istio({"-b", "*", "-e", "15009"});
  REQUIRE(c.ok());
  CHECK(c->spec.inbound_tunnel_port == 15009);
}

TEST_CASE("istio: UID and GID lists, GID defaulting to the UIDs") {
  auto c = istio({"-u", "3,4", "-g", "1,2"});
  REQUIRE(c.ok());
  CHECK(c->spec.proxy_uids == std::vector<uint32_t>{3, 4});
  CHECK(c->spec.proxy_gids == std::vector<uint32_t>{1, 2});
  auto d = istio({"-u", "3,4"});
  REQUIRE(d.ok());
  CHECK(d->spec.proxy_gids == std::vector<uint32_t>{3, 4});
}

TEST_CASE("istio: TPROXY mode, mark and table") {
  auto c = istio({"-b", "*", "-m", "TPROXY", "-t", "5", "-r", "99"});
  REQUIRE(c.ok());
  CHECK(c->spec.mode == InboundMode::Tproxy);
  CHECK(c->spec.tproxy_mark == 5);
  CHECK(c->spec.tproxy_route_table == 99);
  auto bad = istio({"-m", "BOGUS"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("istio-inbound-interception-mode") != std::string::npos);
}

TEST_CASE("istio: outbound includes and excludes") {
  auto c = istio({"-i", "10.96.0.0/12,fd00::/8", "-x", "10.96.0.1/32", "-o", "3306"});
  REQUIRE(c.ok());
  REQUIRE(c->spec.outbound_cidrs.has_value());
  // IPv6 entries only count with --dual-stack, as in Istio.
  CHECK(*c->spec.outbound_cidrs == std::vector<Cidr>{cidr("10.96.0.0/12")});
  CHECK(c->spec.exclude_outbound_cidrs == std::vector<Cidr>{cidr("10.96.0.1/32")});
  CHECK(c->spec.exclude_outbound_ports == ports({3306}));
  CHECK_FALSE(c->spec.outbound_ports.has_value());
  auto dual = istio({"-i", "10.96.0.0/12,fd00::/8", "--dual-stack"});
  REQUIRE(dual.ok());
  CHECK(*dual->spec.outbound_cidrs == std::vector<Cidr>{cidr("10.96.0.0/12"), cidr("fd00::/8")});
}

TEST_CASE("istio: an IPv6-only pod gets IPv6 rules without --dual-stack, as in Istio") {
  int calls = 0;
  auto c = istio({"-i", "10.96.0.0/12,fd00::/8", "-x", "fd00::1/128", "--redirect-dns", "-b", "*"}, 1000, 1000,
                 {cidr("fd00::53")}, nullptr, true, &calls);
  REQUIRE(c.ok());
  CHECK(calls == 1);
  CHECK(c->ipv6_only_pod);
  CHECK(c->spec.ip_families == IpFamilies::Dual);
  CHECK(*c->spec.outbound_cidrs == std::vector<Cidr>{cidr("10.96.0.0/12"), cidr("fd00::/8")});
  CHECK(c->spec.exclude_outbound_cidrs == std::vector<Cidr>{cidr("fd00::1/128")});
  CHECK(c->spec.dns.servers == std::vector<Cidr>{cidr("fd00::53")});

  // An IPv4 or dual-stack pod: IPv4 only, the IPv6 entries dropped.
  auto v4 = istio({"-i", "10.96.0.0/12,fd00::/8"}, 1000, 1000, {}, nullptr, false);
  REQUIRE(v4.ok());
  CHECK_FALSE(v4->ipv6_only_pod);
  CHECK(v4->spec.ip_families == IpFamilies::V4);
  CHECK(*v4->spec.outbound_cidrs == std::vector<Cidr>{cidr("10.96.0.0/12")});

  // Not asked with --dual-stack, nor when no rules are planned.
  for (auto args :
       {std::vector<std::string>{"--dual-stack"}, {"--cleanup-only"}, {"--run-validation", "--skip-rule-apply"}}) {
    int n = 0;
    auto r = istio(args, 1000, 1000, {}, nullptr, true, &n);
    REQUIRE(r.ok());
    CHECK(n == 0);
    CHECK_FALSE(r->ipv6_only_pod);
  }
}

TEST_CASE("istio: the pod's addresses: read in the target namespace; an error says what was read") {
  CLI::App app;
  IstioFlags f;
  bind_istio_flags(app, f);
  auto c = istio_command(
      f, [] { return Result<std::vector<Cidr>>(std::vector<Cidr>{}); },
      [](const std::string&) { return Result<bool>(Error{ErrorKind::Kernel, "list addresses: Permission denied", 0}); },
      1000, 1000);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("IPv6-only") != std::string::npos);
  CHECK(c.error().message.find("Permission denied") != std::string::npos);

  // The addresses are read in the namespace the rules go to.
  f.network_namespace = " /var/run/netns/pod ";
  std::string asked = "unset";
  auto named = istio_command(
      f, [] { return Result<std::vector<Cidr>>(std::vector<Cidr>{}); },
      [&](const std::string& netns) {
        asked = netns;
        return Result<bool>(false);
      },
      1000, 1000);
  REQUIRE(named.ok());
  CHECK(asked == "/var/run/netns/pod");
}

TEST_CASE("istio: --log_as_json, --force-apply and --native-nftables are accepted") {
  CLI::App app;
  IstioFlags f;
  bind_istio_flags(app, f);
  std::vector<const char*> argv{"istio-iptables", "--log_as_json", "--force-apply", "--native-nftables", "-i", "*"};
  app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  CHECK(f.log_as_json);
  CHECK(f.force_apply);
  CHECK(f.native_nftables);
  CHECK(istio({"--log_as_json", "--force-apply", "--native-nftables", "-n"}).ok());
}

TEST_CASE("istio: -q alone captures those ports to any destination") {
  auto c = istio({"-q", "32000,31000"});
  REQUIRE(c.ok());
  CHECK_FALSE(c->spec.outbound_cidrs.has_value());
  CHECK(c->spec.outbound_ports == std::optional(ports({32000, 31000})));
  auto all = istio({"-q", "443", "-i", "*"});
  REQUIRE(all.ok());
  CHECK_FALSE(all->spec.outbound_ports.has_value());
}

TEST_CASE("istio: -q with a CIDR list in -i is refused, naming both flags") {
  auto c = istio({"-q", "443", "-i", "10.0.0.0/8"});
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("-q/--istio-outbound-ports") != std::string::npos);
  CHECK(c.error().message.find("-i/--istio-service-cidr") != std::string::npos);
}

TEST_CASE("istio: -k redirects the VM's TCP whatever -x and -o say, as istio-iptables") {
  auto c = istio({"-k", "vif0", "-i", "*", "-x", "2001:db8::/32,198.18.9.0/24", "-o", "5432", "--dual-stack"});
  REQUIRE(c.ok());
  CHECK(c->spec.kube_virt_excludes == KubeVirtExcludes::Ignore);
  // What istio-iptables installs: -I PREROUTING 1 -i vif0 -j ISTIO_REDIRECT.
  const CapturePolicy policy = capture_policy(c->spec);
  for (const char* dst : {"2001:db8::1", "198.18.9.1", "198.19.0.1"}) {
    for (uint16_t port : {80, 5432}) {
      CAPTURE(dst);
      CAPTURE(port);
      PacketQuery q;
      q.hook = Packet::Hook::Prerouting;
      q.dst = *parse_cidr(dst);
      q.dport = port;
      q.in_iface = "vif0";
      auto k = make_packet(q);
      REQUIRE(k.ok());
      const Explanation e = explain(policy, *k);
      CHECK(e.verdict.kind == ExplainVerdict::Redirected);
      CHECK(e.verdict.port == 15001);
    }
  }
  // weir's own command line keeps the default.
  CHECK(CaptureSpec{}.kube_virt_excludes == KubeVirtExcludes::Apply);
}

TEST_CASE("istio: interfaces, DNS, drop-invalid, dual stack") {
  int calls = 0;
  auto c = istio({"-c", "eth7", "-k", "net1", "--redirect-dns", "--drop-invalid", "--dual-stack"}, 1000, 1000,
                 {cidr("198.18.0.53"), cidr("fd00::53")}, &calls);
  REQUIRE(c.ok());
  CHECK(calls == 1);
  CHECK(c->spec.exclude_interfaces == std::vector<std::string>{"eth7"});
  CHECK(c->spec.kube_virt_interfaces == std::vector<std::string>{"net1"});
  CHECK(c->spec.dns.capture);
  CHECK_FALSE(c->spec.dns.capture_all);
  CHECK(c->spec.dns.servers.size() == 2);
  CHECK(c->spec.drop_invalid);
  CHECK(c->spec.ip_families == IpFamilies::Dual);

  int calls_all = 0;
  auto all = istio({"--redirect-dns", "--capture-all-dns"}, 1000, 1000, {}, &calls_all);
  REQUIRE(all.ok());
  CHECK(calls_all == 0);  // resolv.conf is not read when all DNS is captured
  CHECK(all->spec.dns.capture_all);
}

TEST_CASE("istio: bad values name the flag") {
  auto p = istio({"-p", "0"});
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().message.find("envoy-port") != std::string::npos);
  auto b = istio({"-b", "80,70000"});
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().message.find("istio-inbound-ports") != std::string::npos);
  auto x = istio({"-x", "*"});
  REQUIRE_FALSE(x.ok());
  CHECK(x.error().message.find("istio-service-exclude-cidr") != std::string::npos);
  auto t = istio({"--probe-timeout", "5"});
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("--probe-timeout") != std::string::npos);
}

TEST_CASE("istio: an unknown flag is an error naming it") {
  CHECK_THROWS_WITH_AS(istio({"--no-such-flag"}), doctest::Contains("--no-such-flag"), CLI::ParseError);
  CHECK_THROWS_AS(istio({"--cni-mode"}), CLI::ParseError);
}

TEST_CASE("istio: environment variables, the command line wins") {
  ::setenv("ISTIO_INBOUND_PORTS", "8080", 1);
  ::setenv("ISTIO_META_DNS_CAPTURE", "true", 1);
  auto env = istio({"--capture-all-dns"});
  auto flag = istio({"-b", "9090", "--redirect-dns=false", "--capture-all-dns"});
  ::unsetenv("ISTIO_INBOUND_PORTS");
  ::unsetenv("ISTIO_META_DNS_CAPTURE");
  REQUIRE(env.ok());
  CHECK(env->spec.inbound_ports == std::optional(ports({8080})));
  CHECK(env->spec.dns.capture);
  REQUIRE(flag.ok());
  CHECK(flag->spec.inbound_ports == std::optional(ports({9090})));
  CHECK_FALSE(flag->spec.dns.capture);
}

TEST_CASE("istio: modes: dry run, cleanup only, validation only") {
  auto dry = istio({"-n"});
  REQUIRE(dry.ok());
  CHECK(dry->dry_run);
  auto clean = istio({"--cleanup-only", "--run-validation"});
  REQUIRE(clean.ok());
  CHECK(clean->cleanup_only);
  CHECK_FALSE(clean->apply);
  CHECK_FALSE(clean->validate);
  auto v = istio({"--run-validation", "--skip-rule-apply", "--probe-timeout", "2s", "--iptables-probe-port", "15999",
                  "--network-namespace", "/var/run/netns/pod"});
  REQUIRE(v.ok());
  CHECK_FALSE(v->apply);
  CHECK(v->validate);
  CHECK(v->netns == "/var/run/netns/pod");
  CHECK(v->validation.timeout == std::chrono::milliseconds{2000});
}

TEST_CASE("istio: the validation dials what capture must take, as the caller") {
  auto as_app = istio({"--run-validation", "-i", "*", "-b", "*"}, 1000, 1000);
  REQUIRE(as_app.ok());
  REQUIRE(as_app->validation.targets.size() == 1);
  CHECK(format_endpoint(as_app->validation.targets[0]) == "198.19.255.254:15002");
  CHECK_FALSE(as_app->validation.source.has_value());

  // Istio's validation container runs as the proxy: 127.0.0.6 over lo is
  // captured as inbound by the proxy-on-lo rule.
  auto as_proxy = istio({"--run-validation", "-z", "15106", "-p", "15101"}, 1337, 1337);
  REQUIRE(as_proxy.ok());
  CHECK(format_endpoint(as_proxy->validation.targets[0]) == "127.0.0.6:15002");
  REQUIRE(as_proxy->validation.source.has_value());
  CHECK(format_addr(*as_proxy->validation.source) == "127.0.0.1");
  CHECK(as_proxy->validation.inbound_port == 15106);
  CHECK(as_proxy->validation.outbound_port == 15101);

  auto in_cidr = istio({"--run-validation", "-i", "10.96.0.0/12"}, 1000, 1000);
  REQUIRE(in_cidr.ok());
  CHECK(format_endpoint(in_cidr->validation.targets[0]) == "10.96.0.1:15002");
  auto on_port = istio({"--run-validation", "-q", "443"}, 1000, 1000);
  REQUIRE(on_port.ok());
  CHECK(format_endpoint(on_port->validation.targets[0]) == "198.19.255.254:443");
}


TEST_CASE("istio: --native-nftables selects the nftables backend; hex marks as everywhere") {
  auto n = istio({"--native-nftables", "-n"});
  REQUIRE(n.ok());
  CHECK(n->spec.backend == FilterBackend::Nftables);
  auto plain = istio({"-n"});
  REQUIRE(plain.ok());
  CHECK(plain->spec.backend == FilterBackend::Auto);
  auto hex = istio({"-m", "TPROXY", "-t", "0x539", "-n"});
  REQUIRE(hex.ok());
  CHECK(hex->spec.tproxy_mark == 0x539);
  auto frac = istio({"-p", "15001.5", "-n"});
  REQUIRE_FALSE(frac.ok());
  CHECK(frac.error().message.find("not a whole number") != std::string::npos);
}

TEST_CASE("istio: --redirect-dns with no nameserver in resolv.conf: DNS off, a warning, the rest installed") {
  int calls = 0;
  auto c = istio({"--redirect-dns", "-i", "*", "-b", "*"}, 1000, 1000, {}, &calls);
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  CHECK(calls == 1);
  CHECK_FALSE(c->spec.dns.capture);
  REQUIRE(c->warnings.size() == 1);
  CHECK(c->warnings[0].find("no nameserver") != std::string::npos);
  CHECK(c->apply);
  CHECK_FALSE(c->spec.outbound_cidrs.has_value());  // outbound capture is still there
  CHECK_FALSE(c->spec.inbound_ports.has_value());
  // With nameservers, DNS capture stays on and nothing is said.
  auto with_ns = istio({"--redirect-dns"}, 1000, 1000, {cidr("198.18.0.53")});
  REQUIRE(with_ns.ok());
  CHECK(with_ns->spec.dns.capture);
  CHECK(with_ns->warnings.empty());
}

TEST_CASE("read_nameservers: no nameserver line is an empty list, not an error") {
  const std::string path = "/tmp/weir-init-test-" + std::to_string(::getpid()) + "-resolv.conf";
  std::ofstream(path) << "search svc.cluster.local\noptions ndots:5\n";
  auto none = read_nameservers(path);
  auto strict = read_resolv_conf(path);
  std::remove(path.c_str());
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK_FALSE(strict.ok());  // --resolv-conf still refuses it
  CHECK_FALSE(read_nameservers("/nonexistent/resolv.conf").ok());
}

TEST_CASE("istio: environment-only settings weir cannot honour fail by name, never silently") {
  struct Case {
    const char* env;
    const char* value;
    bool ok;
  };
  const Case cases[] = {
      {"ISTIO_OUTBOUND_OWNER_GROUPS", "1337,2000", false},
      {"ISTIO_OUTBOUND_OWNER_GROUPS", "*", true},  // Istio's default: all groups
      {"ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "1500", false},
      {"ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "", true},
      {"ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.0/8", false},
      {"ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/32", true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.env);
    CAPTURE(c.value);
    ::setenv(c.env, c.value, 1);
    auto r = istio({"-n"});
    ::unsetenv(c.env);
    CHECK(r.ok() == c.ok);
    if (!c.ok && !r.ok()) {
      CHECK(r.error().kind == ErrorKind::Unsupported);
      CHECK(r.error().message.rfind(std::string(c.env) + "=", 0) == 0);
      CHECK(r.error().message.find(c.value) != std::string::npos);
    }
  }
}

}  // namespace weir
