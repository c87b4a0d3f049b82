// weir's default capture against the reference sidecar capture that Istio
// installs today: both rulesets are walked with explain() over a grid of
// flows and must reach the same verdict. The reference rules are read from
// ../shared/reference/istio-testdata (beside the repository, as in CI); the
// test says it is skipped when they are not there.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "rules/explain.h"
#include "rules/xtables/lower.h"
#include "rules/xtables/parse.h"
#include "rules/plan.h"

#ifndef WEIR_SOURCE_DIR
#define WEIR_SOURCE_DIR "."
#endif

namespace weir {
namespace {

std::optional<std::string> read_reference(const std::string& name) {
  std::ifstream in(std::string(WEIR_SOURCE_DIR) + "/../shared/reference/istio-testdata/" + name);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text;
  // The reference files write "* nat"; iptables-save writes "*nat".
  std::istringstream lines(ss.str());
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("* ", 0) == 0) line = "*" + line.substr(2);
    if (line.find("-save") != std::string::npos) continue;  // recorded commands, not rules
    if (line.rfind("-N ", 0) == 0) line = ":" + line.substr(3) + " - [0:0]";
    text += line + "\n";
  }
  return text;
}

Cidr addr(const std::string& s) { return *parse_cidr(s); }

std::string describe(const Packet& p) {
  std::ostringstream o;
  o << (p.hook == Packet::Hook::Output ? "output " : "prerouting ") << to_string(p.proto) << " "
    << format_addr(p.src) << ":" << p.sport << " -> " << format_addr(p.dst) << ":" << p.dport;
  if (p.uid) o << " uid " << *p.uid;
  if (p.gid) o << " gid " << *p.gid;
  o << " in=" << p.in_iface << " out=" << p.out_iface;
  return o.str();
}

// Flows a pod sees: inbound to many ports, outbound from the app, the proxy
// (by UID or by GID alone), over eth0 and lo, to peers, itself and loopback.
std::vector<Packet> flow_grid() {
  std::vector<Packet> flows;
  const std::vector<uint16_t> ports{80, 53, 443, 8080, 15001, 15006, 15008, 15020, 15021, 15053, 15090};
  for (Proto proto : {Proto::Tcp, Proto::Udp}) {
    for (uint16_t port : ports) {
      Packet p;
      p.hook = Packet::Hook::Prerouting;
      p.proto = proto;
      p.src = addr("198.18.0.9");
      p.dst = addr("198.18.0.2");
      p.sport = 40000;
      p.dport = port;
      p.in_iface = "eth0";
      flows.push_back(p);
    }
    struct Sender { std::optional<uint32_t> uid, gid; };
    for (Sender who : {Sender{1000, 1000}, Sender{1337, 1337}, Sender{1000, 1337}, Sender{0, 0}}) {
      for (const char* src : {"198.18.0.2", "127.0.0.6", "127.0.0.1"}) {
        for (const char* dst : {"198.18.0.9", "198.18.0.2", "127.0.0.1", "127.0.0.53", "198.19.1.1"}) {
          for (uint16_t port : ports) {
            Packet p;
            p.hook = Packet::Hook::Output;
            p.proto = proto;
            p.src = addr(src);
            p.dst = addr(dst);
            p.sport = 40000;
            p.dport = port;
            p.uid = who.uid;
            p.gid = who.gid;
            const bool local = std::string(dst) == "198.18.0.2" || std::string(dst).rfind("127.", 0) == 0;
            p.out_iface = local ? "lo" : "eth0";
            // A loopback source only leaves over lo.
            if (std::string(src).rfind("127.", 0) == 0 && !local) continue;
            flows.push_back(p);
          }
        }
      }
    }
  }
  return flows;
}

// Istio's CNI variant also returns outbound TCP/UDP to port 15020 (its agent);
// weir's capture leaves that to the user's excludeOutboundPorts.
bool istio_cni_only(const Packet& p) { return p.hook == Packet::Hook::Output && p.dport == 15020; }

// A deliberate difference (README, "Deliberate differences"): a process that
// is the proxy by GID only, calling the pod's own address over lo. Istio's
// per-UID block returns it untouched before its GID rules are reached; weir
// treats it as inbound, exactly as it does for the proxy's UID.
bool proxy_by_gid_only_on_lo(const Packet& p) {
  return p.hook == Packet::Hook::Output && p.out_iface == "lo" && p.uid != 1337u && p.gid == 1337u &&
         format_addr(p.dst) != "127.0.0.1";
}

void compare(const std::string& golden, const CaptureSpec& spec) {
  auto text = read_reference(golden);
  if (!text) {
    MESSAGE("SKIPPED: ../shared/reference/istio-testdata/" << golden << " not found beside the repository");
    return;
  }
  ParseOptions all;
  all.only_weir = false;
  auto istio = parse_ruleset(*text, Family::V4, all);
  REQUIRE_MESSAGE(istio.ok(), (istio.ok() ? "" : istio.error().message));
  RulePlan reference;
  reference.rulesets.push_back(*istio);

  CaptureSpec v4 = spec;
  v4.ip_families = IpFamilies::V4;
  RulePlan ours = plan(v4);

  // explain walks policies: both rulesets raised from their xtables form.
  const CapturePolicy ours_policy = xtables::raise(ours), reference_policy = xtables::raise(reference);
  int compared = 0;
  for (const Packet& p : flow_grid()) {
    if (istio_cni_only(p)) continue;
    if (proxy_by_gid_only_on_lo(p)) continue;
    Explanation a = explain(ours_policy, p), b = explain(reference_policy, p);
    INFO(describe(p), "\nweir:  ", a.summary, "\nistio: ", b.summary);
    CHECK(a.verdict.kind == b.verdict.kind);
    CHECK(a.verdict.port == b.verdict.port);
    ++compared;
  }
  MESSAGE(golden << ": " << compared << " flows, same verdicts");
}

}  // namespace

TEST_CASE("default spec = Istio's sidecar capture (sidecar-basic)") {
  compare("sidecar-basic.golden", CaptureSpec{});
}

TEST_CASE("DNS capture = Istio's sidecar DNS capture (sidecar-dns)") {
  CaptureSpec s;
  s.dns.capture = true;
  compare("sidecar-dns.golden", s);
}

}  // namespace weir
