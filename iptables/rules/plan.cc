// The planner. Rule order mirrors the reference sidecar capture (CAPTURE.md)
// with two deliberate changes, both about several proxy UIDs/GIDs:
//  - every "proxy on lo to the pod's own IP -> inbound" rule comes before any
//    "proxy -> RETURN" rule, and the "app on lo -> RETURN" rule comes once,
//    after them, so a second proxy UID is not returned by the first UID's
//    negated rule (the reference repeats the block per UID and does);
//  - weir hooks each built-in chain with exactly one unconditional jump; the
//    reference's extra rules in PREROUTING/OUTPUT live inside weir's chains.
#include "rules/plan.h"

#include <string>
#include <utility>

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

Rule jump(const char* chain, std::string comment) {
  Rule r;
  r.target = Jump{chain};
  r.comment = std::move(comment);
  return r;
}

Rule ret(std::string comment) {
  Rule r;
  r.target = Verdict{Verdict::Return};
  r.comment = std::move(comment);
  return r;
}

Rule with_target(Rule r, Target t) {
  r.target = std::move(t);
  return r;
}

// Destination-port match for one packed group: a single port or range uses
// -m tcp/udp --dport, larger groups -m multiport --dports.
void set_dports(Rule& r, const std::vector<PortRange>& group, bool negated) {
  if (group.size() == 1) {
    r.dport = PortMatch{group[0], negated};
  } else {
    r.multiport = Multiport{group, negated};
  }
}

std::string ports_text(const std::vector<PortRange>& group) {
  std::string s;
  for (const auto& p : group) {
    if (!s.empty()) s += ",";
    s += format_port_range(p);
  }
  return s;
}

std::vector<Cidr> of_family(const std::vector<Cidr>& cidrs, Family f) {
  std::vector<Cidr> out;
  for (const auto& c : cidrs)
    if (c.family == f) out.push_back(c);
  return out;
}

struct Owners {
  std::vector<Owner> all;  // every proxy UID, then every proxy GID
};

Owners proxy_owners(const CaptureSpec& s) {
  Owners o;
  for (uint32_t uid : s.proxy_uids) o.all.push_back(Owner{Owner::Kind::Uid, uid, false});
  for (uint32_t gid : s.proxy_gids) o.all.push_back(Owner{Owner::Kind::Gid, gid, false});
  return o;
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

// RETURN for TCP to any of `ports`, packed into multiport groups; `what`
// begins the comment ("inbound port 15008,15020 is not captured").
void return_for_ports(const std::vector<PortRange>& ports, const std::string& what, std::vector<Rule>& out,
                      Proto proto = Proto::Tcp) {
  for (const auto& group : pack_multiport(ports)) {
    Rule r = ret(what + " " + ports_text(group) + " is not captured");
    r.proto = proto;
    set_dports(r, group, false);
    out.push_back(std::move(r));
  }
}

// Excluded interfaces: RETURN for packets arriving on (In) or leaving by
// (Out) each of them.
enum class Direction { In, Out };
void return_for_interfaces(const std::vector<std::string>& ifaces, Direction d, std::vector<Rule>& out) {
  for (const auto& iface : ifaces) {
    Rule r = ret("excluded interface " + iface);
    (d == Direction::In ? r.in_iface : r.out_iface) = iface;
    out.push_back(std::move(r));
  }
}

// Rules shared by nat (REDIRECT) and mangle (TPROXY) inbound chains: excluded
// ports and source CIDRs, then the capture rules jumping to `capture_chain`.
void inbound_capture_rules(const CaptureSpec& s, Family f, const char* capture_chain,
                           const std::string& what, std::vector<Rule>& out) {
  return_for_ports(inbound_excludes(s), "inbound port", out);
  for (const auto& c : of_family(s.exclude_inbound_cidrs, f)) {
    Rule r = ret("inbound from " + format_cidr(c) + " is not captured");
    r.src = c;
    r.proto = Proto::Tcp;
    out.push_back(std::move(r));
  }
  if (!s.inbound_ports.has_value()) {
    Rule r = jump(capture_chain, "inbound TCP " + what);
    r.proto = Proto::Tcp;
    out.push_back(std::move(r));
    return;
  }
  for (const auto& group : pack_multiport(*s.inbound_ports)) {
    Rule r = jump(capture_chain, "inbound TCP to port " + ports_text(group) + " " + what);
    r.proto = Proto::Tcp;
    set_dports(r, group, false);
    out.push_back(std::move(r));
  }
}

Table nat_table(const CaptureSpec& s, Family f) {
  const Cidr lo = loopback_addr(f);
  const Cidr passthrough = passthrough_addr(f);
  const Owners owners = proxy_owners(s);
  Table t{"nat", {}};

  // PREROUTING: inbound capture (REDIRECT mode) and kube-virt interfaces.
  std::vector<Rule> inbound;
  return_for_interfaces(s.exclude_interfaces, Direction::In, inbound);
  for (const auto& iface : s.kube_virt_interfaces) {
    // Excluded outbound ports sit in WEIR_OUTPUT, which this path skips.
    std::vector<Rule> port_excludes;
    return_for_ports(s.exclude_outbound_ports, "kube-virt interface " + iface + ": outbound port", port_excludes);
    for (Rule& r : port_excludes) {
      r.in_iface = iface;
      inbound.push_back(std::move(r));
    }
    Rule r = jump(kOutbound, "kube-virt interface " + iface + ": inbound is treated as outbound");
    r.in_iface = iface;
    r.proto = Proto::Tcp;
    inbound.push_back(std::move(r));
    Rule done = ret("kube-virt interface " + iface + ": not captured as inbound");
    done.in_iface = iface;
    inbound.push_back(std::move(done));
  }
  bool inbound_here = !s.kube_virt_interfaces.empty();
  if (s.mode == InboundMode::Redirect && captures_inbound(s)) {
    inbound_capture_rules(s, f, kInRedirect, "goes to the proxy inbound port", inbound);
    inbound_here = true;
  }

  if (inbound_here) {
    t.chains.push_back(Chain{"PREROUTING", {jump(kInbound, "weir: inbound capture")}});
    t.chains.push_back(Chain{kInbound, std::move(inbound)});
  }
  t.chains.push_back(Chain{"OUTPUT", {jump(kOutput, "weir: outbound capture")}});

  Rule in_redirect = with_target(Rule{}, Redirect{s.inbound_port});
  in_redirect.proto = Proto::Tcp;
  in_redirect.comment = "to the proxy inbound port";
  t.chains.push_back(Chain{kInRedirect, {in_redirect}});

  // OUTPUT: excluded interfaces and ports, the proxy's own traffic, lo, DNS,
  // then outbound capture. Excluded destination ports come first, as
  // istio-iptables puts them: never captured means not as DNS (UDP too when
  // DNS is captured) and not as the proxy's lo traffic treated as inbound.
  std::vector<Rule> output;
  return_for_interfaces(s.exclude_interfaces, Direction::Out, output);
  return_for_ports(s.exclude_outbound_ports, "outbound port", output);
  if (s.dns.capture) return_for_ports(s.exclude_outbound_ports, "outbound UDP port", output, Proto::Udp);
  {
    Rule r = ret("proxy passthrough source " + format_addr(passthrough) + ": the proxy talking to its app");
    r.src = passthrough;
    r.out_iface = "lo";
    output.push_back(std::move(r));
  }
  std::vector<PortRange> lo_not_inbound;
  if (s.dns.capture) lo_not_inbound.push_back({53, 53});
  if (s.inbound_tunnel_port != 0) lo_not_inbound.push_back({s.inbound_tunnel_port, s.inbound_tunnel_port});
  for (const auto& o : owners.all) {
    Rule r = jump(kInRedirect, "proxy (" + owner_text(o) + ") to the pod address over lo: treated as inbound");
    r.dst = lo;
    r.dst_negated = true;
    r.out_iface = "lo";
    r.proto = Proto::Tcp;
    if (!lo_not_inbound.empty()) set_dports(r, lo_not_inbound, true);
    r.owner = o;
    output.push_back(std::move(r));
  }
  for (const auto& o : owners.all) {
    Rule r = ret("traffic of the proxy (" + owner_text(o) + ") is not captured");
    r.owner = o;
    output.push_back(std::move(r));
  }
  if (s.dns.capture) output.push_back(jump(kDns, "DNS from applications"));
  {
    Rule r = ret("application talking to itself over lo");
    r.out_iface = "lo";
    output.push_back(std::move(r));
  }
  {
    Rule r = ret("loopback " + format_addr(lo) + " is not captured");
    r.dst = lo;
    output.push_back(std::move(r));
  }
  output.push_back(jump(kOutbound, "outbound capture by destination"));
  t.chains.push_back(Chain{kOutput, std::move(output)});

  if (s.dns.capture) {
    std::vector<Rule> dns;
    std::vector<std::optional<Cidr>> servers;
    if (s.dns.capture_all) {
      servers.push_back(std::nullopt);
    } else {
      for (const auto& c : of_family(s.dns.servers, f)) servers.push_back(c);
    }
    for (const auto& server : servers) {
      for (Proto p : {Proto::Udp, Proto::Tcp}) {
        Rule r = with_target(Rule{}, Redirect{s.dns.port});
        r.dst = server;
        r.proto = p;
        r.dport = PortMatch{{53, 53}, false};
        r.comment = std::string("DNS over ") + to_string(p) +
                    (server ? " to " + format_addr(*server) : std::string()) + " goes to the proxy DNS port";
        dns.push_back(std::move(r));
      }
    }
    t.chains.push_back(Chain{kDns, std::move(dns)});
  }

  // Outbound by destination: excludes, then includes.
  std::vector<Rule> outbound;
  for (const auto& c : of_family(s.exclude_outbound_cidrs, f)) {
    Rule r = ret("outbound to " + format_cidr(c) + " is not captured");
    r.dst = c;
    outbound.push_back(std::move(r));
  }
  std::vector<std::optional<Cidr>> dsts;
  if (!s.outbound_cidrs) {
    dsts.push_back(std::nullopt);
  } else {
    for (const auto& c : of_family(*s.outbound_cidrs, f)) dsts.push_back(c);
  }
  std::vector<std::optional<std::vector<PortRange>>> port_groups;
  if (!s.outbound_ports) {
    port_groups.push_back(std::nullopt);
  } else {
    for (auto& g : pack_multiport(*s.outbound_ports)) port_groups.push_back(std::move(g));
  }
  for (const auto& d : dsts) {
    for (const auto& g : port_groups) {
      std::string what = "outbound TCP";
      if (d) what += " to " + format_cidr(*d);
      if (g) what += " port " + ports_text(*g);
      Rule r = jump(kRedirect, what + " goes to the proxy outbound port");
      r.dst = d;
      r.proto = Proto::Tcp;
      if (g) set_dports(r, *g, false);
      outbound.push_back(std::move(r));
    }
  }
  t.chains.push_back(Chain{kOutbound, std::move(outbound)});

  Rule redirect = with_target(Rule{}, Redirect{s.outbound_port});
  redirect.proto = Proto::Tcp;
  redirect.comment = "to the proxy outbound port";
  t.chains.push_back(Chain{kRedirect, {redirect}});
  return t;
}

std::optional<Table> mangle_table(const CaptureSpec& s, Family f) {
  const bool tproxy = s.mode == InboundMode::Tproxy && captures_inbound(s);
  if (!tproxy && !s.drop_invalid) return std::nullopt;
  const Cidr lo = loopback_addr(f);
  const uint32_t mark = s.tproxy_mark;
  const uint32_t lo_mark = s.tproxy_mark + 1;
  Table t{"mangle", {}};

  std::vector<Rule> inbound;
  return_for_interfaces(s.exclude_interfaces, Direction::In, inbound);
  if (s.drop_invalid) {
    Rule r = with_target(Rule{}, Verdict{Verdict::Drop});
    r.conntrack = Conntrack{Conntrack::kInvalid, false};
    r.comment = "conntrack INVALID is dropped (stray RSTs on long connections)";
    inbound.push_back(std::move(r));
  }
  if (tproxy) {
    Rule save = with_target(Rule{}, Connmark{Connmark::Save});
    save.proto = Proto::Tcp;
    save.mark = MarkMatch{mark, 0xffffffff, false};
    save.comment = "save the proxy mark on the connection";
    inbound.push_back(save);
    Rule done = ret("already handled by the proxy");
    done.proto = Proto::Tcp;
    done.mark = MarkMatch{mark, 0xffffffff, false};
    inbound.push_back(std::move(done));
    Rule pt = ret("proxy passthrough source " + format_addr(passthrough_addr(f)));
    pt.src = passthrough_addr(f);
    pt.in_iface = "lo";
    pt.proto = Proto::Tcp;
    inbound.push_back(std::move(pt));
    Rule lo_rule = ret("traffic on lo not marked by the proxy is not captured");
    lo_rule.in_iface = "lo";
    lo_rule.proto = Proto::Tcp;
    lo_rule.mark = MarkMatch{lo_mark, 0xffffffff, true};
    inbound.push_back(std::move(lo_rule));
    for (const auto& iface : s.kube_virt_interfaces) {
      Rule r = ret("kube-virt interface " + iface + ": handled as outbound in nat");
      r.in_iface = iface;
      inbound.push_back(std::move(r));
    }
    std::vector<Rule> capture;
    inbound_capture_rules(s, f, kTproxy, "goes to the proxy inbound port (TPROXY)", capture);
    // Established connections are diverted before new ones reach TPROXY;
    // insert that rule after the excludes, before the capture jumps.
    auto first_capture = capture.begin();
    while (first_capture != capture.end() && std::holds_alternative<Verdict>(first_capture->target)) ++first_capture;
    Rule est = jump(kDivert, "established inbound connection of the proxy");
    est.proto = Proto::Tcp;
    est.conntrack = Conntrack{Conntrack::kRelated | Conntrack::kEstablished, false};
    capture.insert(first_capture, std::move(est));
    for (auto& r : capture) inbound.push_back(std::move(r));
  }
  t.chains.push_back(Chain{"PREROUTING", {jump(kInbound, "weir: inbound capture")}});
  if (tproxy) t.chains.push_back(Chain{"OUTPUT", {jump(kOutput, "weir: proxy loopback marks")}});
  t.chains.push_back(Chain{kInbound, std::move(inbound)});
  if (!tproxy) return t;

  Rule setmark = with_target(Rule{}, SetMark{mark, 0xffffffff});
  setmark.comment = "mark for the TPROXY route table";
  Rule accept = with_target(Rule{}, Verdict{Verdict::Accept});
  accept.comment = "deliver locally";
  t.chains.push_back(Chain{kDivert, {setmark, accept}});

  Rule tp = with_target(Rule{}, Tproxy{s.inbound_port, mark, 0xffffffff});
  tp.dst = lo;
  tp.dst_negated = true;
  tp.proto = Proto::Tcp;
  tp.comment = "to the proxy inbound port, keeping the client address";
  t.chains.push_back(Chain{kTproxy, {tp}});

  std::vector<Rule> output;
  {
    Rule r = ret("already marked by the proxy");
    r.out_iface = "lo";
    r.proto = Proto::Tcp;
    r.mark = MarkMatch{mark, 0xffffffff, false};
    output.push_back(std::move(r));
  }
  for (const auto& o : proxy_owners(s).all) {
    Rule r = with_target(Rule{}, SetMark{lo_mark, 0xffffffff});
    r.dst = lo;
    r.dst_negated = true;
    r.out_iface = "lo";
    r.proto = Proto::Tcp;
    r.owner = o;
    r.comment = "proxy (" + owner_text(o) + ") on lo: captured as inbound when it comes back";
    output.push_back(std::move(r));
  }
  {
    Rule r = with_target(Rule{}, Connmark{Connmark::Restore});
    r.proto = Proto::Tcp;
    r.connmark = MarkMatch{mark, 0xffffffff, false};
    r.comment = "restore the proxy mark for replies";
    output.push_back(std::move(r));
  }
  t.chains.push_back(Chain{kOutput, std::move(output)});
  return t;
}

std::optional<Table> raw_table(const CaptureSpec& s, Family f) {
  if (!s.dns.capture) return std::nullopt;
  Table t{"raw", {}};
  std::vector<std::optional<Cidr>> servers;
  if (s.dns.capture_all) {
    servers.push_back(std::nullopt);
  } else {
    for (const auto& c : of_family(s.dns.servers, f)) servers.push_back(c);
  }

  std::vector<Rule> output;
  for (const auto& o : proxy_owners(s).all) {
    Rule up = with_target(Rule{}, CtZone{1});
    up.proto = Proto::Udp;
    up.dport = PortMatch{{53, 53}, false};
    up.owner = o;
    up.comment = "upstream DNS of the proxy (" + owner_text(o) + ") in conntrack zone 1";
    output.push_back(std::move(up));
    Rule answer = with_target(Rule{}, CtZone{2});
    answer.proto = Proto::Udp;
    answer.sport = PortMatch{{s.dns.port, s.dns.port}, false};
    answer.owner = o;
    answer.comment = "DNS answers of the proxy to applications in conntrack zone 2";
    output.push_back(std::move(answer));
  }
  std::vector<Rule> inbound;
  for (const auto& server : servers) {
    Rule q = with_target(Rule{}, CtZone{2});
    q.dst = server;
    q.proto = Proto::Udp;
    q.dport = PortMatch{{53, 53}, false};
    q.comment = "DNS queries of applications in conntrack zone 2";
    output.push_back(std::move(q));
    Rule a = with_target(Rule{}, CtZone{1});
    a.src = server;
    a.proto = Proto::Udp;
    a.sport = PortMatch{{53, 53}, false};
    a.comment = "upstream DNS answers in conntrack zone 1";
    inbound.push_back(std::move(a));
  }
  t.chains.push_back(Chain{"PREROUTING", {jump(kInbound, "weir: DNS conntrack zones")}});
  t.chains.push_back(Chain{"OUTPUT", {jump(kOutput, "weir: DNS conntrack zones")}});
  t.chains.push_back(Chain{kInbound, std::move(inbound)});
  t.chains.push_back(Chain{kOutput, std::move(output)});
  return t;
}

}  // namespace

Cidr loopback_addr(Family f) {
  return f == Family::V4 ? host(f, {127, 0, 0, 1}) : host(f, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
}

Cidr passthrough_addr(Family f) {
  return f == Family::V4 ? host(f, {127, 0, 0, 6}) : host(f, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6});
}

RulePlan plan(const CaptureSpec& spec) {
  RulePlan p;
  for (Family f : families(spec)) {
    Ruleset rs;
    rs.family = f;
    // Table order = commit order. raw and mangle first: if nat then fails,
    // they are rolled back; nat last because it is what captures.
    if (auto raw = raw_table(spec, f)) rs.tables.push_back(std::move(*raw));
    if (auto mangle = mangle_table(spec, f)) rs.tables.push_back(std::move(*mangle));
    rs.tables.push_back(nat_table(spec, f));
    p.rulesets.push_back(std::move(rs));
    if (spec.mode == InboundMode::Tproxy && captures_inbound(spec))
      p.routes.push_back(PolicyRoute{f, spec.tproxy_mark, spec.tproxy_route_table});
  }
  return p;
}

}  // namespace weir
