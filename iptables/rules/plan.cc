// The planner. Rule order mirrors the reference sidecar capture (CAPTURE.md)
// with these deliberate changes:
//  - with several proxy UIDs/GIDs, every "proxy on lo to the pod's own IP
//    -> inbound" rule comes before any "proxy -> RETURN" rule, and the "app
//    on lo -> RETURN" rule comes once, after them, so a second proxy UID is
//    not returned by the first UID's negated rule (the reference repeats the
//    block per UID and does);
//  - TCP arriving on a kube-virt interface passes the outbound excludes
//    (CIDRs and ports) before it is redirected, unless kubeVirtExcludes is
//    ignore: the reference redirects it whatever the excludes say (the
//    Istio dialect asks for that);
//  - weir hooks each stage with base chains that hold one unconditional jump
//    each; the reference's extra rules in PREROUTING/OUTPUT live inside
//    weir's chains.
// Ports and CIDRs are sets of any size: a backend spells them as it can
// (rules/xtables/lower.h splits them into rules; nftables keeps one set).
#include "rules/plan.h"

#include <string>
#include <utility>

#include "rules/xtables/lower.h"

namespace weir {
namespace {

using namespace chains;

Cidr host(Family f, std::initializer_list<uint8_t> bytes) {
  Cidr c;
  c.family = f;
  size_t i = 0;
  for (uint8_t b : bytes) c.addr[i++] = b;
  c.prefix = f == Family::V4 ? 32 : 128;
  return c;
}

Step step(Action action, std::string reason) {
  Step s;
  s.action = std::move(action);
  s.reason = std::move(reason);
  return s;
}
Step jump(const char* chain, std::string reason) { return step(Jump{chain}, std::move(reason)); }
Step ret(std::string reason) { return step(Verdict{Verdict::Return}, std::move(reason)); }

PolicyChain base(Hook hook, Step s) {
  return PolicyChain{hook == Hook::Prerouting ? "PREROUTING" : "OUTPUT", hook, {std::move(s)}, 0};
}
PolicyChain regular(const char* name, std::vector<Step> steps) { return PolicyChain{name, std::nullopt, std::move(steps), 0}; }

PortSet ports_of(std::vector<PortRange> ports, bool negated = false) { return PortSet{std::move(ports), negated}; }
PortSet one_port(uint16_t p) { return PortSet{{{p, p}}, false}; }
CidrSet one_cidr(const Cidr& c, bool negated = false) { return CidrSet{{c}, negated}; }
IfaceMatch iface(const std::string& name, bool negated = false) { return IfaceMatch{name, negated}; }

std::vector<Cidr> of_family(const std::vector<Cidr>& cidrs, Family f) {
  std::vector<Cidr> out;
  for (const auto& c : cidrs)
    if (c.family == f) out.push_back(c);
  return out;
}

// Every proxy UID, then every proxy GID.
std::vector<Owner> proxy_owners(const CaptureSpec& s) {
  std::vector<Owner> all;
  for (uint32_t uid : s.proxy_uids) all.push_back(Owner{Owner::Kind::Uid, uid, false});
  for (uint32_t gid : s.proxy_gids) all.push_back(Owner{Owner::Kind::Gid, gid, false});
  return all;
}

std::string owner_text(const Owner& o) {
  return (o.kind == Owner::Kind::Uid ? "uid " : "gid ") + std::to_string(o.id);
}

// Inbound ports that are never captured: the tunnel port and the excludes.
std::vector<PortRange> inbound_excludes(const CaptureSpec& s) {
  std::vector<PortRange> ports;
  if (s.inbound_tunnel_port != 0) ports.push_back({s.inbound_tunnel_port, s.inbound_tunnel_port});
  for (const auto& p : s.exclude_inbound_ports)
    if (!(s.inbound_tunnel_port != 0 && p.first == s.inbound_tunnel_port && p.last == p.first)) ports.push_back(p);
  return ports;
}

bool captures_inbound(const CaptureSpec& s) {
  return !s.inbound_ports.has_value() || !s.inbound_ports->empty();
}

// RETURN for `proto` to any of `ports`; `what` begins the reason
// ("inbound port 15008,15020 is not captured"). Nothing for no ports.
void return_for_ports(const std::vector<PortRange>& ports, const std::string& what, std::vector<Step>& out,
                      Proto proto = Proto::Tcp) {
  if (ports.empty()) return;
  Step s = ret(what + " {dport} is not captured");
  s.match.proto = proto;
  s.match.dport = ports_of(ports);
  out.push_back(std::move(s));
}

// Excluded interfaces: RETURN for packets arriving on (In) or leaving by
// (Out) each of them.
enum class Direction { In, Out };
void return_for_interfaces(const std::vector<std::string>& ifaces, Direction d, std::vector<Step>& out) {
  for (const auto& name : ifaces) {
    Step s = ret("excluded interface " + name);
    (d == Direction::In ? s.match.in : s.match.out) = iface(name);
    out.push_back(std::move(s));
  }
}

// Steps shared by nat (REDIRECT) and mangle (TPROXY) inbound chains: excluded
// ports and source CIDRs, then the capture step jumping to `capture_chain`.
void inbound_capture_steps(const CaptureSpec& s, Family f, const char* capture_chain, const std::string& what,
                           std::vector<Step>& out) {
  return_for_ports(inbound_excludes(s), "inbound port", out);
  if (auto excluded = of_family(s.exclude_inbound_cidrs, f); !excluded.empty()) {
    Step r = ret("inbound from {src} is not captured");
    r.match.src = CidrSet{std::move(excluded), false};
    r.match.proto = Proto::Tcp;
    out.push_back(std::move(r));
  }
  if (!s.inbound_ports.has_value()) {
    Step r = jump(capture_chain, "inbound TCP " + what);
    r.match.proto = Proto::Tcp;
    out.push_back(std::move(r));
    return;
  }
  Step r = jump(capture_chain, "inbound TCP to port {dport} " + what);
  r.match.proto = Proto::Tcp;
  r.match.dport = ports_of(*s.inbound_ports);
  out.push_back(std::move(r));
}

// The jump to the outbound redirect for TCP to the included destinations
// and ports; nothing when an include list is empty (nothing captured).
// `what` begins the reason, `why` ends it.
std::optional<Step> outbound_include(const CaptureSpec& s, Family f, std::string what, const std::string& why = "") {
  std::optional<std::vector<Cidr>> dsts;
  if (s.outbound_cidrs) dsts = of_family(*s.outbound_cidrs, f);
  const bool no_dsts = dsts && dsts->empty();
  const bool no_ports = s.outbound_ports && s.outbound_ports->empty();
  if (no_dsts || no_ports) return std::nullopt;
  if (dsts) what += " to {dst}";
  if (s.outbound_ports) what += " port {dport}";
  Step r = jump(kRedirect, what + " goes to the proxy outbound port" + why);
  if (dsts) r.match.dst = CidrSet{*dsts, false};
  r.match.proto = Proto::Tcp;
  if (s.outbound_ports) r.match.dport = ports_of(*s.outbound_ports);
  return r;
}

StagePolicy nat_stage(const CaptureSpec& s, Family f) {
  const Cidr lo = loopback_addr(f);
  const Cidr passthrough = passthrough_addr(f);
  const std::vector<Owner> owners = proxy_owners(s);
  StagePolicy t{Stage::Nat, {}};

  // PREROUTING: inbound capture (REDIRECT mode) and kube-virt interfaces.
  std::vector<Step> inbound;
  return_for_interfaces(s.exclude_interfaces, Direction::In, inbound);
  for (const auto& name : s.kube_virt_interfaces) {
    const std::string kv = "kube-virt interface " + name + ": ";
    if (s.kube_virt_excludes == KubeVirtExcludes::Apply) {
      // Excluded outbound ports sit in WEIR_OUTPUT, which this path skips;
      // excluded CIDRs are in WEIR_OUTBOUND, which it takes.
      std::vector<Step> port_excludes;
      return_for_ports(s.exclude_outbound_ports, kv + "outbound port", port_excludes);
      for (Step& r : port_excludes) {
        r.match.in = iface(name);
        inbound.push_back(std::move(r));
      }
      Step r = jump(kOutbound, kv + "inbound is treated as outbound");
      r.match.in = iface(name);
      r.match.proto = Proto::Tcp;
      inbound.push_back(std::move(r));
    } else if (auto r = outbound_include(s, f, "kube-virt interface " + name + " (kubeVirtExcludes ignore): TCP",
                                         ", outbound excludes do not apply")) {
      // Straight to the redirect, past WEIR_OUTBOUND's excludes.
      r->match.in = iface(name);
      inbound.push_back(std::move(*r));
    }
    Step done = ret(kv + "not captured as inbound");
    done.match.in = iface(name);
    inbound.push_back(std::move(done));
  }
  bool inbound_here = !s.kube_virt_interfaces.empty();
  if (s.mode == InboundMode::Redirect && captures_inbound(s)) {
    inbound_capture_steps(s, f, kInRedirect, "goes to the proxy inbound port", inbound);
    inbound_here = true;
  }

  if (inbound_here) {
    t.chains.push_back(base(Hook::Prerouting, jump(kInbound, "weir: inbound capture")));
    t.chains.push_back(regular(kInbound, std::move(inbound)));
  }
  t.chains.push_back(base(Hook::Output, jump(kOutput, "weir: outbound capture")));

  Step in_redirect = step(Redirect{s.inbound_port}, "to the proxy inbound port");
  in_redirect.match.proto = Proto::Tcp;
  t.chains.push_back(regular(kInRedirect, {in_redirect}));

  // OUTPUT: excluded interfaces and ports, the proxy's own traffic, lo, DNS,
  // then outbound capture. Excluded destination ports come first, as
  // istio-iptables puts them: never captured means not as DNS (UDP too when
  // DNS is captured) and not as the proxy's lo traffic treated as inbound.
  std::vector<Step> output;
  return_for_interfaces(s.exclude_interfaces, Direction::Out, output);
  return_for_ports(s.exclude_outbound_ports, "outbound port", output);
  if (s.dns.capture) return_for_ports(s.exclude_outbound_ports, "outbound UDP port", output, Proto::Udp);
  {
    Step r = ret("proxy passthrough source " + format_addr(passthrough) + ": the proxy talking to its app");
    r.match.src = one_cidr(passthrough);
    r.match.out = iface("lo");
    output.push_back(std::move(r));
  }
  std::vector<PortRange> lo_not_inbound;
  if (s.dns.capture) lo_not_inbound.push_back({53, 53});
  if (s.inbound_tunnel_port != 0) lo_not_inbound.push_back({s.inbound_tunnel_port, s.inbound_tunnel_port});
  for (const auto& o : owners) {
    Step r = jump(kInRedirect, "proxy (" + owner_text(o) + ") to the pod address over lo: treated as inbound");
    r.match.dst = one_cidr(lo, true);
    r.match.out = iface("lo");
    r.match.proto = Proto::Tcp;
    if (!lo_not_inbound.empty()) r.match.dport = ports_of(lo_not_inbound, true);
    r.match.owner = o;
    output.push_back(std::move(r));
  }
  for (const auto& o : owners) {
    Step r = ret("traffic of the proxy (" + owner_text(o) + ") is not captured");
    r.match.owner = o;
    output.push_back(std::move(r));
  }
  if (s.dns.capture) output.push_back(jump(kDns, "DNS from applications"));
  {
    Step r = ret("application talking to itself over lo");
    r.match.out = iface("lo");
    output.push_back(std::move(r));
  }
  {
    Step r = ret("loopback " + format_addr(lo) + " is not captured");
    r.match.dst = one_cidr(lo);
    output.push_back(std::move(r));
  }
  output.push_back(jump(kOutbound, "outbound capture by destination"));
  t.chains.push_back(regular(kOutput, std::move(output)));

  if (s.dns.capture) {
    std::vector<Step> dns;
    std::vector<std::optional<Cidr>> servers;
    if (s.dns.capture_all) {
      servers.push_back(std::nullopt);
    } else {
      for (const auto& c : of_family(s.dns.servers, f)) servers.push_back(c);
    }
    for (const auto& server : servers) {
      for (Proto p : {Proto::Udp, Proto::Tcp}) {
        Step r = step(Redirect{s.dns.port}, std::string("DNS over ") + to_string(p) +
                                                (server ? " to " + format_addr(*server) : std::string()) +
                                                " goes to the proxy DNS port");
        if (server) r.match.dst = one_cidr(*server);
        r.match.proto = p;
        r.match.dport = one_port(53);
        dns.push_back(std::move(r));
      }
    }
    t.chains.push_back(regular(kDns, std::move(dns)));
  }

  // Outbound by destination: excludes, then includes.
  std::vector<Step> outbound;
  if (auto excluded = of_family(s.exclude_outbound_cidrs, f); !excluded.empty()) {
    Step r = ret("outbound to {dst} is not captured");
    r.match.dst = CidrSet{std::move(excluded), false};
    outbound.push_back(std::move(r));
  }
  if (auto r = outbound_include(s, f, "outbound TCP")) outbound.push_back(std::move(*r));
  t.chains.push_back(regular(kOutbound, std::move(outbound)));

  Step redirect = step(Redirect{s.outbound_port}, "to the proxy outbound port");
  redirect.match.proto = Proto::Tcp;
  t.chains.push_back(regular(kRedirect, {redirect}));
  return t;
}

std::optional<StagePolicy> mangle_stage(const CaptureSpec& s, Family f) {
  const bool tproxy = s.mode == InboundMode::Tproxy && captures_inbound(s);
  if (!tproxy && !s.drop_invalid) return std::nullopt;
  const Cidr lo = loopback_addr(f);
  const uint32_t mark = s.tproxy_mark;
  const uint32_t lo_mark = s.tproxy_mark + 1;
  const MarkMatch proxy_mark{mark, 0xffffffff, false};
  StagePolicy t{Stage::Mangle, {}};

  std::vector<Step> inbound;
  return_for_interfaces(s.exclude_interfaces, Direction::In, inbound);
  if (s.drop_invalid) {
    Step r = step(Verdict{Verdict::Drop}, "conntrack INVALID is dropped (stray RSTs on long connections)");
    r.match.conntrack = Conntrack{Conntrack::kInvalid, false};
    inbound.push_back(std::move(r));
  }
  if (tproxy) {
    Step save = step(Connmark{Connmark::Save}, "save the proxy mark on the connection");
    save.match.proto = Proto::Tcp;
    save.match.mark = proxy_mark;
    inbound.push_back(save);
    Step done = ret("already handled by the proxy");
    done.match.proto = Proto::Tcp;
    done.match.mark = proxy_mark;
    inbound.push_back(std::move(done));
    Step pt = ret("proxy passthrough source " + format_addr(passthrough_addr(f)));
    pt.match.src = one_cidr(passthrough_addr(f));
    pt.match.in = iface("lo");
    pt.match.proto = Proto::Tcp;
    inbound.push_back(std::move(pt));
    Step lo_step = ret("traffic on lo not marked by the proxy is not captured");
    lo_step.match.in = iface("lo");
    lo_step.match.proto = Proto::Tcp;
    lo_step.match.mark = MarkMatch{lo_mark, 0xffffffff, true};
    inbound.push_back(std::move(lo_step));
    for (const auto& name : s.kube_virt_interfaces) {
      Step r = ret("kube-virt interface " + name + ": handled as outbound in nat");
      r.match.in = iface(name);
      inbound.push_back(std::move(r));
    }
    std::vector<Step> capture;
    inbound_capture_steps(s, f, kTproxy, "goes to the proxy inbound port (TPROXY)", capture);
    // Established connections are diverted before new ones reach TPROXY;
    // insert that step after the excludes, before the capture jump.
    auto first_capture = capture.begin();
    while (first_capture != capture.end() && std::holds_alternative<Verdict>(first_capture->action)) ++first_capture;
    Step est = jump(kDivert, "established inbound connection of the proxy");
    est.match.proto = Proto::Tcp;
    est.match.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
    capture.insert(first_capture, std::move(est));
    for (auto& r : capture) inbound.push_back(std::move(r));
  }
  t.chains.push_back(base(Hook::Prerouting, jump(kInbound, "weir: inbound capture")));
  if (tproxy) t.chains.push_back(base(Hook::Output, jump(kOutput, "weir: proxy loopback marks")));
  t.chains.push_back(regular(kInbound, std::move(inbound)));
  if (!tproxy) return t;

  t.chains.push_back(regular(kDivert, {step(SetMark{mark, 0xffffffff}, "mark for the TPROXY route table"),
                                       step(Verdict{Verdict::Accept}, "deliver locally")}));

  Step tp = step(Tproxy{s.inbound_port, mark, 0xffffffff}, "to the proxy inbound port, keeping the client address");
  tp.match.dst = one_cidr(lo, true);
  tp.match.proto = Proto::Tcp;
  t.chains.push_back(regular(kTproxy, {tp}));

  std::vector<Step> output;
  {
    Step r = ret("already marked by the proxy");
    r.match.out = iface("lo");
    r.match.proto = Proto::Tcp;
    r.match.mark = proxy_mark;
    output.push_back(std::move(r));
  }
  for (const auto& o : proxy_owners(s)) {
    Step r = step(SetMark{lo_mark, 0xffffffff},
                  "proxy (" + owner_text(o) + ") on lo: captured as inbound when it comes back");
    r.match.dst = one_cidr(lo, true);
    r.match.out = iface("lo");
    r.match.proto = Proto::Tcp;
    r.match.owner = o;
    output.push_back(std::move(r));
  }
  {
    Step r = step(Connmark{Connmark::Restore}, "restore the proxy mark for replies");
    r.match.proto = Proto::Tcp;
    r.match.connmark = proxy_mark;
    output.push_back(std::move(r));
  }
  t.chains.push_back(regular(kOutput, std::move(output)));
  return t;
}

std::optional<StagePolicy> raw_stage(const CaptureSpec& s, Family f) {
  if (!s.dns.capture) return std::nullopt;
  StagePolicy t{Stage::Raw, {}};
  std::vector<std::optional<Cidr>> servers;
  if (s.dns.capture_all) {
    servers.push_back(std::nullopt);
  } else {
    for (const auto& c : of_family(s.dns.servers, f)) servers.push_back(c);
  }

  std::vector<Step> output;
  for (const auto& o : proxy_owners(s)) {
    Step up = step(CtZone{1}, "upstream DNS of the proxy (" + owner_text(o) + ") in conntrack zone 1");
    up.match.proto = Proto::Udp;
    up.match.dport = one_port(53);
    up.match.owner = o;
    output.push_back(std::move(up));
    Step answer = step(CtZone{2}, "DNS answers of the proxy to applications in conntrack zone 2");
    answer.match.proto = Proto::Udp;
    answer.match.sport = one_port(s.dns.port);
    answer.match.owner = o;
    output.push_back(std::move(answer));
  }
  std::vector<Step> inbound;
  for (const auto& server : servers) {
    Step q = step(CtZone{2}, "DNS queries of applications in conntrack zone 2");
    if (server) q.match.dst = one_cidr(*server);
    q.match.proto = Proto::Udp;
    q.match.dport = one_port(53);
    output.push_back(std::move(q));
    Step a = step(CtZone{1}, "upstream DNS answers in conntrack zone 1");
    if (server) a.match.src = one_cidr(*server);
    a.match.proto = Proto::Udp;
    a.match.sport = one_port(53);
    inbound.push_back(std::move(a));
  }
  t.chains.push_back(base(Hook::Prerouting, jump(kInbound, "weir: DNS conntrack zones")));
  t.chains.push_back(base(Hook::Output, jump(kOutput, "weir: DNS conntrack zones")));
  t.chains.push_back(regular(kInbound, std::move(inbound)));
  t.chains.push_back(regular(kOutput, std::move(output)));
  return t;
}

}  // namespace

Cidr loopback_addr(Family f) {
  return f == Family::V4 ? host(f, {127, 0, 0, 1}) : host(f, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
}

Cidr passthrough_addr(Family f) {
  return f == Family::V4 ? host(f, {127, 0, 0, 6}) : host(f, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6});
}

CapturePolicy capture_policy(const CaptureSpec& spec) {
  CapturePolicy p;
  for (Family f : families(spec)) {
    FamilyPolicy fp;
    fp.family = f;
    // Stage order = commit order. raw and mangle first: if nat then fails,
    // they are rolled back; nat last because it is what captures.
    if (auto raw = raw_stage(spec, f)) fp.stages.push_back(std::move(*raw));
    if (auto mangle = mangle_stage(spec, f)) fp.stages.push_back(std::move(*mangle));
    fp.stages.push_back(nat_stage(spec, f));
    p.families.push_back(std::move(fp));
    if (spec.mode == InboundMode::Tproxy && captures_inbound(spec))
      p.routes.push_back(PolicyRoute{f, spec.tproxy_mark, spec.tproxy_route_table});
  }
  return p;
}

RulePlan plan(const CaptureSpec& spec) {
  // The planner's steps always have an xtables spelling (its negated sets
  // hold at most two ports); an error here is a bug in the planner.
  auto lowered = xtables::lower(capture_policy(spec));
  assert(lowered.ok());
  return lowered ? std::move(*lowered) : RulePlan{};
}

}  // namespace weir
