#include "rules/nft/ruleset.h"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace weir::nft {
namespace {

// Keys as numbers: 16-bit ports, 32-bit IPv4, 128-bit IPv6 addresses.
__extension__ typedef unsigned __int128 u128;

struct Span {  // inclusive [first, last]
  u128 first = 0, last = 0;
};

unsigned key_bits(size_t bytes) { return static_cast<unsigned>(bytes * 8); }
u128 key_max(unsigned bits) { return bits == 128 ? ~u128{0} : (u128{1} << bits) - 1; }

u128 to_num(const uint8_t* p, size_t n) {
  u128 v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}
std::vector<uint8_t> to_bytes(u128 v, size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = n; i-- > 0;) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return out;
}

// Sorts and merges overlapping or adjacent spans.
std::vector<Span> merged(std::vector<Span> spans, unsigned bits) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.first < b.first; });
  std::vector<Span> out;
  for (const Span& s : spans) {
    if (!out.empty() && (out.back().last == key_max(bits) || s.first <= out.back().last + 1)) {
      out.back().last = std::max(out.back().last, s.last);
    } else {
      out.push_back(s);
    }
  }
  return out;
}

std::vector<KeyRange> to_key_ranges(const std::vector<Span>& spans, size_t n) {
  std::vector<KeyRange> out;
  for (const Span& s : spans)
    out.push_back(KeyRange{to_bytes(s.first, n), s.last == key_max(key_bits(n)) ? std::vector<uint8_t>{}
                                                                                 : to_bytes(s.last + 1, n)});
  return out;
}

std::vector<Span> to_spans(const std::vector<KeyRange>& ranges, size_t n) {
  std::vector<Span> out;
  for (const KeyRange& r : ranges) {
    if (r.from.size() != n || (!r.to.empty() && r.to.size() != n)) continue;
    Span s{to_num(r.from.data(), n), r.to.empty() ? key_max(key_bits(n)) : to_num(r.to.data(), n) - 1};
    if (s.last >= s.first) out.push_back(s);
  }
  return out;
}

size_t addr_bytes(Family f) { return f == Family::V4 ? 4 : 16; }

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (const auto& p : parts) {
    if (!s.empty()) s += sep;
    s += p;
  }
  return s;
}

std::string cidr_text(const Cidr& c) {
  return c.prefix == (c.family == Family::V4 ? 32 : 128) ? format_addr(c) : format_cidr(c);
}

std::string port_text(const PortRange& p) { return format_port_range(p, '-'); }

template <typename T, typename F>
std::string value_text(const std::vector<T>& items, F fmt) {
  if (items.size() == 1) return fmt(items[0]);
  std::vector<std::string> parts;
  for (const auto& i : items) parts.push_back(fmt(i));
  return "{ " + join(parts, ", ") + " }";
}

std::string iface_text(const IfaceMatch& m) {
  std::string name = m.name;
  if (!name.empty() && name.back() == '+') name.back() = '*';
  return std::string(m.negated ? "!= " : "") + "\"" + name + "\"";
}

std::string ct_states_text(uint32_t states) {
  static const std::pair<uint32_t, const char*> names[] = {{Conntrack::kInvalid, "invalid"},
                                                           {Conntrack::kEstablished, "established"},
                                                           {Conntrack::kRelated, "related"},
                                                           {Conntrack::kNew, "new"},
                                                           {Conntrack::kUntracked, "untracked"}};
  std::vector<std::string> parts;
  for (const auto& [bit, name] : names)
    if (states & bit) parts.push_back(name);
  return join(parts, ",");
}

std::string mark_text(const char* what, const MarkMatch& m) {
  std::string s = what;
  if (m.mask != 0xffffffff) s += " and " + hex(m.mask);
  s += m.negated ? " != " : (m.mask != 0xffffffff ? " == " : " ");
  return s + hex(m.value & m.mask);
}

// meta mark set V, or (mark & ~M) ^ V for a partial mask (xtables' --set-xmark).
std::string set_mark_text(uint32_t value, uint32_t mask) {
  if (mask == 0xffffffff) return "meta mark set " + hex(value);
  return "meta mark set meta mark and " + hex(~mask) + " xor " + hex(value);
}

bool needs_family_guard(const Step& s, bool base) {
  return base || std::holds_alternative<Tproxy>(s.action);
}

const char* nfproto_name(Family f) { return f == Family::V4 ? "ipv4" : "ipv6"; }

bool has_ports(const Match& m) { return m.sport || m.dport; }

// --- JSON pieces (nft's JSON syntax, libnftables-json(5)) ---
using nlohmann::json;

json meta(const char* key) { return json{{"meta", {{"key", key}}}}; }
json ct(const char* key) { return json{{"ct", {{"key", key}}}}; }
json payload(const char* proto, const char* field) {
  return json{{"payload", {{"protocol", proto}, {"field", field}}}};
}
json match(const char* op, json left, json right) {
  return json{{"match", {{"op", op}, {"left", std::move(left)}, {"right", std::move(right)}}}};
}
json cidr_json(const Cidr& c) {
  if (c.prefix == (c.family == Family::V4 ? 32 : 128)) return format_addr(c);
  return json{{"prefix", {{"addr", format_addr(c)}, {"len", c.prefix}}}};
}
json port_json(const PortRange& p) {
  if (p.first == p.last) return p.first;
  return json{{"range", {p.first, p.last}}};
}
template <typename T, typename F>
json values_json(const std::vector<T>& items, F fmt) {
  if (items.size() == 1) return fmt(items[0]);
  json set = json::array();
  for (const auto& i : items) set.push_back(fmt(i));
  return json{{"set", set}};
}
json iface_json(const IfaceMatch& m) {
  std::string name = m.name;
  if (!name.empty() && name.back() == '+') name.back() = '*';
  return name;
}

json step_json(const Step& s, Family f, Stage stage, bool base, bool counters) {
  (void)stage;
  const Match& m = s.match;
  json expr = json::array();
  const char* fam = family_name(f);
  if (needs_family_guard(s, base)) expr.push_back(match("==", meta("nfproto"), nfproto_name(f)));
  if (m.in) expr.push_back(match(m.in->negated ? "!=" : "==", meta("iifname"), iface_json(*m.in)));
  if (m.out) expr.push_back(match(m.out->negated ? "!=" : "==", meta("oifname"), iface_json(*m.out)));
  if (m.src) expr.push_back(match(m.src->negated ? "!=" : "==", payload(fam, "saddr"), values_json(m.src->cidrs, cidr_json)));
  if (m.dst) expr.push_back(match(m.dst->negated ? "!=" : "==", payload(fam, "daddr"), values_json(m.dst->cidrs, cidr_json)));
  const char* l4 = to_string(m.proto);
  if (m.proto != Proto::Any && !has_ports(m))
    expr.push_back(match(m.proto_negated ? "!=" : "==", meta("l4proto"), l4));
  if (m.sport) expr.push_back(match(m.sport->negated ? "!=" : "==", payload(l4, "sport"), values_json(m.sport->ports, port_json)));
  if (m.dport) expr.push_back(match(m.dport->negated ? "!=" : "==", payload(l4, "dport"), values_json(m.dport->ports, port_json)));
  if (m.owner)
    expr.push_back(match(m.owner->negated ? "!=" : "==", meta(m.owner->kind == Owner::Kind::Uid ? "skuid" : "skgid"), m.owner->id));
  if (m.conntrack) {
    json states = json::array();
    for (const auto& name : [&] {
           std::vector<std::string> v;
           std::string t = ct_states_text(m.conntrack->states);
           for (size_t a = 0; a < t.size();) {
             size_t b = t.find(',', a);
             if (b == std::string::npos) b = t.size();
             v.push_back(t.substr(a, b - a));
             a = b + 1;
           }
           return v;
         }())
      states.push_back(name);
    expr.push_back(match(m.conntrack->negated ? "!=" : "in", ct("state"), states));
  }
  auto mark_json = [&](json key, const MarkMatch& mm) {
    json left = mm.mask == 0xffffffff ? key : json{{"&", {key, mm.mask}}};
    expr.push_back(match(mm.negated ? "!=" : "==", left, mm.value & mm.mask));
  };
  if (m.mark) mark_json(meta("mark"), *m.mark);
  if (m.connmark) mark_json(ct("mark"), *m.connmark);
  expr.push_back(counters ? json{{"counter", {{"packets", s.counters.packets}, {"bytes", s.counters.bytes}}}}
                          : json{{"counter", nullptr}});
  auto set_mark = [&](uint32_t value, uint32_t mask) {
    json v = mask == 0xffffffff ? json(value) : json{{"^", {json{{"&", {meta("mark"), ~mask}}}, value}}};
    expr.push_back(json{{"mangle", {{"key", meta("mark")}, {"value", v}}}});
  };
  std::visit(
      [&](const auto& a) {
        using A = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<A, Verdict>) {
          const char* v = a.kind == Verdict::Accept ? "accept" : a.kind == Verdict::Drop ? "drop" : "return";
          expr.push_back(json{{v, nullptr}});
        } else if constexpr (std::is_same_v<A, Jump>) {
          expr.push_back(json{{"jump", {{"target", chain_name(f, stage, a.chain)}}}});
        } else if constexpr (std::is_same_v<A, Redirect>) {
          expr.push_back(json{{"redirect", {{"port", a.port}}}});
        } else if constexpr (std::is_same_v<A, Tproxy>) {
          expr.push_back(json{{"tproxy", {{"family", fam}, {"port", a.port}}}});
          set_mark(a.mark, a.mask);
          expr.push_back(json{{"accept", nullptr}});
        } else if constexpr (std::is_same_v<A, SetMark>) {
          set_mark(a.value, a.mask);
        } else if constexpr (std::is_same_v<A, Connmark>) {
          if (a.mode == Connmark::Save)
            expr.push_back(json{{"mangle", {{"key", ct("mark")}, {"value", meta("mark")}}}});
          else
            expr.push_back(json{{"mangle", {{"key", meta("mark")}, {"value", ct("mark")}}}});
        } else if constexpr (std::is_same_v<A, CtZone>) {
          expr.push_back(json{{"mangle", {{"key", ct("zone")}, {"value", a.zone}}}});
        } else {
          expr.push_back(json{{"unknown", a.name}});
        }
      },
      s.action);
  return expr;
}

template <typename F>
void each_chain(const CapturePolicy& p, F f) {
  for (const FamilyPolicy& fp : p.families)
    for (const StagePolicy& sp : fp.stages)
      for (const PolicyChain& c : sp.chains) f(fp.family, sp.stage, c);
}

// The base chains a canonical policy uses, in the order they are defined.
struct BaseChain {
  Stage stage;
  Hook hook;
};
std::vector<BaseChain> base_chains(const CapturePolicy& p) {
  std::vector<BaseChain> out;
  for (Stage s : {Stage::Raw, Stage::Mangle, Stage::Nat})
    for (Hook h : {Hook::Prerouting, Hook::Output}) {
      bool used = false;
      each_chain(p, [&](Family, Stage st, const PolicyChain& c) { used |= st == s && c.hook == h; });
      if (used) out.push_back({s, h});
    }
  return out;
}

}  // namespace

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::Raw: return "raw";
    case Stage::Mangle: return "mangle";
    case Stage::Nat: return "nat";
  }
  return "nat";
}

const char* hook_name(Hook h) { return h == Hook::Prerouting ? "prerouting" : "output"; }

int stage_priority(Stage s) {
  switch (s) {
    case Stage::Raw: return -300;
    case Stage::Mangle: return -150;
    case Stage::Nat: return -100;
  }
  return -100;
}

const char* family_name(Family f) { return f == Family::V4 ? "ip" : "ip6"; }

const char* chain_type(Stage s, Hook h) {
  if (s == Stage::Nat) return "nat";
  if (s == Stage::Mangle && h == Hook::Output) return "route";
  return "filter";
}

std::string base_chain_name(Stage s, Hook h) { return std::string(stage_name(s)) + "_" + hook_name(h); }

std::string chain_name(Family f, Stage s, const std::string& policy_chain) {
  return std::string(family_name(f)) + "_" + stage_name(s) + "_" + policy_chain;
}

std::optional<ChainRef> parse_chain_name(const std::string& name) {
  for (Stage s : {Stage::Raw, Stage::Mangle, Stage::Nat})
    for (Hook h : {Hook::Prerouting, Hook::Output})
      if (name == base_chain_name(s, h)) return ChainRef{std::nullopt, s, h, h == Hook::Prerouting ? "PREROUTING" : "OUTPUT"};
  for (Family f : {Family::V4, Family::V6})
    for (Stage s : {Stage::Raw, Stage::Mangle, Stage::Nat}) {
      const std::string prefix = std::string(family_name(f)) + "_" + stage_name(s) + "_";
      if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0)
        return ChainRef{f, s, std::nullopt, name.substr(prefix.size())};
    }
  return std::nullopt;
}

std::string comment_text(const Step& s) {
  std::string out;
  for (char c : fill_reason(s)) out += (c == '"' ? '\'' : (c < 0x20 || c > 0x7e) ? ' ' : c);
  if (out.size() > kCommentMax) out = out.substr(0, kCommentMax - 3) + "...";
  return out;
}

Status check(const CapturePolicy& policy) {
  Status st;
  each_chain(policy, [&](Family f, Stage stage, const PolicyChain& c) {
    if (!st.ok()) return;
    for (size_t i = 0; i < c.steps.size() && st.ok(); ++i) {
      const Step& s = c.steps[i];
      const Match& m = s.match;
      const std::string where = std::string(to_string(f)) + " " + stage_name(stage) + " chain " + c.name + " step " +
                                std::to_string(i + 1);
      auto fail = [&](const std::string& why) { st = Error{ErrorKind::InvalidSpec, where + ": " + why}; };
      const bool l4 = m.proto != Proto::Any && !m.proto_negated;
      if (has_ports(m) && !l4) fail("ports need protocol tcp or udp");
      else if ((std::holds_alternative<Redirect>(s.action) || std::holds_alternative<Tproxy>(s.action)) && !l4)
        fail("redirect and tproxy need protocol tcp or udp");
      else if (c.hook == Hook::Prerouting && (m.out || m.owner)) fail("an output interface or owner at prerouting");
      else if (c.hook == Hook::Output && m.in) fail("an input interface at output");
      else if (!m.unknown.empty()) fail("a condition weir does not know: " + m.unknown.front());
      else if (const auto* u = std::get_if<UnknownTarget>(&s.action)) fail("an action weir does not know: " + u->name);
      else if ((m.src && m.src->cidrs.empty()) || (m.dst && m.dst->cidrs.empty()) ||
               (m.sport && m.sport->ports.empty()) || (m.dport && m.dport->ports.empty()))
        fail("an empty set");
      else if (const auto* j = std::get_if<Jump>(&s.action)) {
        const FamilyPolicy* fp = policy.find(f);
        const StagePolicy* sp = fp ? fp->find(stage) : nullptr;
        const PolicyChain* target = sp ? sp->find(j->chain) : nullptr;
        if (!target || target->hook) fail("jumps to " + j->chain + ", which is not a regular chain of the stage");
      }
      auto wrong_family = [&](const std::optional<CidrSet>& set) {
        if (set)
          for (const Cidr& cidr : set->cidrs)
            if (cidr.family != f) return true;
        return false;
      };
      if (st.ok() && (wrong_family(m.src) || wrong_family(m.dst))) fail("an address of the other family");
    }
  });
  return st;
}

std::vector<KeyRange> key_ranges(const std::vector<PortRange>& ports) {
  std::vector<Span> spans;
  for (const auto& p : ports) spans.push_back({p.first, std::max(p.first, p.last)});
  return to_key_ranges(merged(spans, 16), 2);
}

std::vector<KeyRange> key_ranges(const std::vector<Cidr>& cidrs, Family f) {
  const size_t n = addr_bytes(f);
  const unsigned bits = key_bits(n);
  std::vector<Span> spans;
  for (const auto& c : cidrs) {
    if (c.family != f) continue;
    const u128 host = c.prefix >= bits ? 0 : key_max(bits - c.prefix);
    const u128 net = to_num(c.addr.data(), n) & ~host & key_max(bits);
    spans.push_back({net, net | host});
  }
  return to_key_ranges(merged(spans, bits), n);
}

std::vector<PortRange> ports_of(const std::vector<KeyRange>& ranges) {
  std::vector<PortRange> out;
  for (const Span& s : to_spans(ranges, 2))
    out.push_back(PortRange{static_cast<uint16_t>(s.first), static_cast<uint16_t>(s.last)});
  return out;
}

std::vector<Cidr> cidrs_of(const std::vector<KeyRange>& ranges, Family f) {
  const size_t n = addr_bytes(f);
  const unsigned bits = key_bits(n);
  std::vector<Cidr> out;
  for (Span s : to_spans(ranges, n)) {
    for (int guard = 0; guard < 2 * 129; ++guard) {
      // The largest aligned block starting at s.first that fits in the span.
      unsigned k = 0;  // block of 2^k addresses
      while (k < bits) {
        const unsigned next = k + 1;
        const u128 size_mask = next == 128 ? ~u128{0} : (u128{1} << next) - 1;
        if ((s.first & size_mask) != 0) break;
        if (next == bits ? !(s.first == 0 && s.last == key_max(bits)) : (s.last - s.first < size_mask)) break;
        k = next;
      }
      Cidr c;
      c.family = f;
      auto bytes = to_bytes(s.first, n);
      std::copy(bytes.begin(), bytes.end(), c.addr.begin());
      c.prefix = static_cast<uint8_t>(bits - k);
      out.push_back(c);
      const u128 block_last = s.first + (k == 128 ? ~u128{0} : (u128{1} << k) - 1);
      if (block_last >= s.last) break;
      s.first = block_last + 1;
    }
  }
  return out;
}

CapturePolicy canonical(const CapturePolicy& policy) {
  CapturePolicy out;
  out.routes = policy.routes;
  for (Family f : {Family::V4, Family::V6}) {
    const FamilyPolicy* fp = policy.find(f);
    if (!fp) continue;
    FamilyPolicy nf{f, {}};
    for (Stage stage : {Stage::Raw, Stage::Mangle, Stage::Nat}) {
      const StagePolicy* sp = fp->find(stage);
      if (!sp) continue;
      StagePolicy ns{stage, {}};
      auto add = [&](const PolicyChain& c) {
        PolicyChain nc{c.hook ? (*c.hook == Hook::Prerouting ? "PREROUTING" : "OUTPUT") : c.name, c.hook, {}, 0};
        for (const Step& s : c.steps) {
          Step n = s;
          n.reason = comment_text(s);
          Match& m = n.match;
          if (m.src) m.src->cidrs = cidrs_of(key_ranges(m.src->cidrs, f), f);
          if (m.dst) m.dst->cidrs = cidrs_of(key_ranges(m.dst->cidrs, f), f);
          if (m.sport) m.sport->ports = ports_of(key_ranges(m.sport->ports));
          if (m.dport) m.dport->ports = ports_of(key_ranges(m.dport->ports));
          if (m.proto != Proto::Any && has_ports(m)) m.proto_negated = false;
          if (m.mark) m.mark->value &= m.mark->mask;
          if (m.connmark) m.connmark->value &= m.connmark->mask;
          nc.steps.push_back(std::move(n));
        }
        if (c.hook && nc.steps.empty()) return;  // an empty base chain of a family reads back as none
        ns.chains.push_back(std::move(nc));
      };
      for (Hook h : {Hook::Prerouting, Hook::Output})
        for (const PolicyChain& c : sp->chains)
          if (c.hook == h) add(c);
      for (const PolicyChain& c : sp->chains)
        if (!c.hook) add(c);
      if (!ns.chains.empty()) nf.stages.push_back(std::move(ns));
    }
    if (!nf.stages.empty()) out.families.push_back(std::move(nf));
  }
  return out;
}

std::string step_text(const Step& s, Family f, Stage stage, bool base, bool counters) {
  const Match& m = s.match;
  std::vector<std::string> parts;
  const std::string fam = family_name(f);
  if (needs_family_guard(s, base)) parts.push_back(std::string("meta nfproto ") + nfproto_name(f));
  if (m.in) parts.push_back("iifname " + iface_text(*m.in));
  if (m.out) parts.push_back("oifname " + iface_text(*m.out));
  if (m.src) parts.push_back(fam + " saddr " + (m.src->negated ? "!= " : "") + value_text(m.src->cidrs, cidr_text));
  if (m.dst) parts.push_back(fam + " daddr " + (m.dst->negated ? "!= " : "") + value_text(m.dst->cidrs, cidr_text));
  const std::string l4 = to_string(m.proto);
  if (m.proto != Proto::Any && !has_ports(m)) parts.push_back("meta l4proto " + std::string(m.proto_negated ? "!= " : "") + l4);
  if (m.sport) parts.push_back(l4 + " sport " + (m.sport->negated ? "!= " : "") + value_text(m.sport->ports, port_text));
  if (m.dport) parts.push_back(l4 + " dport " + (m.dport->negated ? "!= " : "") + value_text(m.dport->ports, port_text));
  if (m.owner)
    parts.push_back(std::string(m.owner->kind == Owner::Kind::Uid ? "meta skuid " : "meta skgid ") +
                    (m.owner->negated ? "!= " : "") + std::to_string(m.owner->id));
  if (m.conntrack)
    parts.push_back("ct state " + std::string(m.conntrack->negated ? "!= " : "") + ct_states_text(m.conntrack->states));
  if (m.mark) parts.push_back(mark_text("meta mark", *m.mark));
  if (m.connmark) parts.push_back(mark_text("ct mark", *m.connmark));
  for (const auto& u : m.unknown) parts.push_back("# unknown: " + u);
  parts.push_back(counters ? "counter packets " + std::to_string(s.counters.packets) + " bytes " +
                                 std::to_string(s.counters.bytes)
                           : "counter");
  std::visit(
      [&](const auto& a) {
        using A = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<A, Verdict>) {
          parts.push_back(a.kind == Verdict::Accept ? "accept" : a.kind == Verdict::Drop ? "drop" : "return");
        } else if constexpr (std::is_same_v<A, Jump>) {
          parts.push_back("jump " + chain_name(f, stage, a.chain));
        } else if constexpr (std::is_same_v<A, Redirect>) {
          parts.push_back("redirect to :" + std::to_string(a.port));
        } else if constexpr (std::is_same_v<A, Tproxy>) {
          parts.push_back("tproxy " + fam + " to :" + std::to_string(a.port));
          parts.push_back(set_mark_text(a.mark, a.mask));
          parts.push_back("accept");
        } else if constexpr (std::is_same_v<A, SetMark>) {
          parts.push_back(set_mark_text(a.value, a.mask));
        } else if constexpr (std::is_same_v<A, Connmark>) {
          parts.push_back(a.mode == Connmark::Save ? "ct mark set meta mark" : "meta mark set ct mark");
        } else if constexpr (std::is_same_v<A, CtZone>) {
          parts.push_back("ct zone set " + std::to_string(a.zone));
        } else {
          parts.push_back("# unknown action: " + a.name);
        }
      },
      s.action);
  const std::string comment = comment_text(s);
  if (!comment.empty()) parts.push_back("comment \"" + comment + "\"");
  return join(parts, " ");
}

std::string render_text(const CapturePolicy& input, const TextOptions& opts) {
  const CapturePolicy p = canonical(input);
  std::string out;
  if (!opts.listing) {
    out += "# weir: the capture rules, one transaction for IPv4 and IPv6 (nft -f)\n";
    out += std::string("add table inet ") + kTable + "\n";
    out += std::string("delete table inet ") + kTable + "\n";
  }
  out += std::string("table inet ") + kTable + " {\n";
  for (const BaseChain& b : base_chains(p)) {
    out += "\tchain " + base_chain_name(b.stage, b.hook) + " {\n";
    out += std::string("\t\ttype ") + chain_type(b.stage, b.hook) + " hook " + hook_name(b.hook) + " priority " +
           std::to_string(stage_priority(b.stage)) + "; policy accept;\n";
    for (const FamilyPolicy& fp : p.families)
      if (const StagePolicy* sp = fp.find(b.stage))
        for (const PolicyChain& c : sp->chains)
          if (c.hook == b.hook)
            for (const Step& s : c.steps)
              out += "\t\t" + step_text(s, fp.family, b.stage, true, opts.counters) + "\n";
    out += "\t}\n";
  }
  each_chain(p, [&](Family f, Stage stage, const PolicyChain& c) {
    if (c.hook) return;
    out += "\tchain " + chain_name(f, stage, c.name) + " {\n";
    for (const Step& s : c.steps) out += "\t\t" + step_text(s, f, stage, false, opts.counters) + "\n";
    out += "\t}\n";
  });
  out += "}\n";
  for (const PolicyRoute& r : p.routes)
    out += std::string("# weir: ") + to_string(r.family) + " policy route: fwmark " + hex(r.fwmark) + " lookup " +
           std::to_string(r.table) + ", local " + (r.family == Family::V4 ? "0.0.0.0/0" : "::/0") + " dev lo table " +
           std::to_string(r.table) + "\n";
  if (p.find(Family::V6))
    out += "# weir: ipv6 address ::6/128 on lo (the proxy's passthrough source; apply adds it when missing)\n";
  return out;
}

nlohmann::json render_json(const CapturePolicy& input, const TextOptions& opts) {
  const CapturePolicy p = canonical(input);
  json cmds = json::array();
  cmds.push_back(json{{"metainfo", {{"json_schema_version", 1}}}});
  // A transaction wraps each object in "add" (and replaces the table first);
  // a listing is the bare objects, as `nft --json list table inet weir`.
  auto object = [&](const char* kind, json o) {
    cmds.push_back(opts.listing ? json{{kind, std::move(o)}} : json{{"add", {{kind, std::move(o)}}}});
  };
  const json table = {{"family", "inet"}, {"name", kTable}};
  if (opts.listing) {
    object("table", table);
  } else {
    cmds.push_back(json{{"add", {{"table", table}}}});
    cmds.push_back(json{{"delete", {{"table", table}}}});
    cmds.push_back(json{{"add", {{"table", table}}}});
  }
  for (const BaseChain& b : base_chains(p))
    object("chain", {{"family", "inet"},
                     {"table", kTable},
                     {"name", base_chain_name(b.stage, b.hook)},
                     {"type", chain_type(b.stage, b.hook)},
                     {"hook", hook_name(b.hook)},
                     {"prio", stage_priority(b.stage)},
                     {"policy", "accept"}});
  each_chain(p, [&](Family f, Stage stage, const PolicyChain& c) {
    if (!c.hook) object("chain", {{"family", "inet"}, {"table", kTable}, {"name", chain_name(f, stage, c.name)}});
  });
  auto rule = [&](const std::string& chain, const Step& s, Family f, Stage stage, bool base) {
    json r = {{"family", "inet"}, {"table", kTable}, {"chain", chain}, {"expr", step_json(s, f, stage, base, opts.counters)}};
    const std::string comment = comment_text(s);
    if (!comment.empty()) r["comment"] = comment;
    object("rule", std::move(r));
  };
  for (const BaseChain& b : base_chains(p))
    for (const FamilyPolicy& fp : p.families)
      if (const StagePolicy* sp = fp.find(b.stage))
        for (const PolicyChain& c : sp->chains)
          if (c.hook == b.hook)
            for (const Step& s : c.steps) rule(base_chain_name(b.stage, b.hook), s, fp.family, b.stage, true);
  each_chain(p, [&](Family f, Stage stage, const PolicyChain& c) {
    if (!c.hook)
      for (const Step& s : c.steps) rule(chain_name(f, stage, c.name), s, f, stage, false);
  });
  json out = {{"nftables", std::move(cmds)}};
  if (opts.listing) {
    // What is not nf_tables' (the text form's "# weir:" lines), beside it.
    json routes = json::array();
    for (const PolicyRoute& r : p.routes)
      routes.push_back(json{{"family", to_string(r.family)},
                            {"fwmark", r.fwmark},
                            {"table", r.table},
                            {"localRoute", r.family == Family::V4 ? "0.0.0.0/0" : "::/0"},
                            {"device", "lo"}});
    out["routes"] = std::move(routes);
  }
  return out;
}

}  // namespace weir::nft
