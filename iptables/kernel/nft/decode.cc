#include "kernel/nft/decode.h"

#include <linux/netfilter/nf_nat.h>

namespace weir::nft::netlink {
namespace {

struct Reg {
  enum Kind { None, Nfproto, L4proto, Iif, Oif, Skuid, Skgid, Mark, CtMark, CtState, Saddr, Daddr, Sport, Dport, Imm } kind = None;
  std::vector<uint8_t> data;  // Imm: the value
  std::vector<uint8_t> mask;  // after a bitwise
  std::vector<uint8_t> xr;
};

std::vector<uint8_t> bytes_of(const nftnl_expr* e, uint16_t attr) {
  uint32_t len = 0;
  const auto* p = static_cast<const uint8_t*>(nftnl_expr_get(e, attr, &len));
  return p ? std::vector<uint8_t>(p, p + len) : std::vector<uint8_t>{};
}

uint32_t u32_of(const std::vector<uint8_t>& v) {
  uint32_t x = 0;
  std::memcpy(&x, v.data(), std::min<size_t>(v.size(), 4));
  return x;
}
uint16_t port_of(const std::vector<uint8_t>& v) {
  return v.size() >= 2 ? static_cast<uint16_t>((v[0] << 8) | v[1]) : 0;
}

int prefix_of(const std::vector<uint8_t>& mask) {
  int n = 0;
  for (uint8_t b : mask) {
    for (int i = 7; i >= 0; --i) {
      if (!(b & (1 << i))) return n;
      ++n;
    }
  }
  return n;
}

// One live rule as a step of `family`'s chain (base: a base chain, whose
// family comes from the rule's meta nfproto). Sets `family` for base rules.
Step decode_rule(nftnl_rule* r, const LiveTable& t, Family* family, bool base, Stage stage) {
  Step step;
  Match& m = step.match;
  std::map<uint32_t, Reg> regs;
  std::vector<Target> actions;
  std::optional<Family> guard;
  auto unknown = [&](const std::string& what) { m.unknown.push_back(what); };

  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  if (!it) {
    unknown("rule that cannot be read");
    return step;
  }
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    const std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    if (name == "meta") {
      const uint32_t key = nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY);
      if (nftnl_expr_is_set(e, NFTNL_EXPR_META_DREG)) {
        Reg rg;
        switch (key) {
          case NFT_META_NFPROTO: rg.kind = Reg::Nfproto; break;
          case NFT_META_L4PROTO: rg.kind = Reg::L4proto; break;
          case NFT_META_IIFNAME: rg.kind = Reg::Iif; break;
          case NFT_META_OIFNAME: rg.kind = Reg::Oif; break;
          case NFT_META_SKUID: rg.kind = Reg::Skuid; break;
          case NFT_META_SKGID: rg.kind = Reg::Skgid; break;
          case NFT_META_MARK: rg.kind = Reg::Mark; break;
          default: unknown("meta key " + std::to_string(key));
        }
        regs[nftnl_expr_get_u32(e, NFTNL_EXPR_META_DREG)] = rg;
      } else {
        const Reg& src = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_META_SREG)];
        if (key == NFT_META_MARK && src.kind == Reg::Imm)
          actions.push_back(SetMark{u32_of(src.data), 0xffffffff});
        else if (key == NFT_META_MARK && src.kind == Reg::Mark && !src.mask.empty())
          actions.push_back(SetMark{u32_of(src.xr), ~u32_of(src.mask)});
        else if (key == NFT_META_MARK && src.kind == Reg::CtMark && src.mask.empty())
          actions.push_back(Connmark{Connmark::Restore});
        else
          actions.push_back(UnknownTarget{"meta set key " + std::to_string(key)});
      }
    } else if (name == "ct") {
      const uint32_t key = nftnl_expr_get_u32(e, NFTNL_EXPR_CT_KEY);
      if (nftnl_expr_is_set(e, NFTNL_EXPR_CT_DREG)) {
        Reg rg;
        if (key == NFT_CT_STATE) rg.kind = Reg::CtState;
        else if (key == NFT_CT_MARK) rg.kind = Reg::CtMark;
        else unknown("ct key " + std::to_string(key));
        regs[nftnl_expr_get_u32(e, NFTNL_EXPR_CT_DREG)] = rg;
      } else {
        const Reg& src = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_CT_SREG)];
        if (key == NFT_CT_MARK && src.kind == Reg::Mark && src.mask.empty())
          actions.push_back(Connmark{Connmark::Save});
        else if (key == NFT_CT_ZONE && src.kind == Reg::Imm && src.data.size() == 2) {
          uint16_t zone = 0;
          std::memcpy(&zone, src.data.data(), 2);
          actions.push_back(CtZone{zone});
        } else {
          actions.push_back(UnknownTarget{"ct set key " + std::to_string(key)});
        }
      }
    } else if (name == "payload") {
      const uint32_t base_hdr = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE);
      const uint32_t off = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET);
      const uint32_t len = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN);
      Reg rg;
      const Family f = guard.value_or(*family);
      if (base_hdr == NFT_PAYLOAD_NETWORK_HEADER && f == Family::V4 && len == 4 && (off == 12 || off == 16))
        rg.kind = off == 12 ? Reg::Saddr : Reg::Daddr;
      else if (base_hdr == NFT_PAYLOAD_NETWORK_HEADER && f == Family::V6 && len == 16 && (off == 8 || off == 24))
        rg.kind = off == 8 ? Reg::Saddr : Reg::Daddr;
      else if (base_hdr == NFT_PAYLOAD_TRANSPORT_HEADER && len == 2 && (off == 0 || off == 2))
        rg.kind = off == 0 ? Reg::Sport : Reg::Dport;
      else
        unknown("payload base " + std::to_string(base_hdr) + " offset " + std::to_string(off) + " length " +
                std::to_string(len));
      if (nftnl_expr_is_set(e, NFTNL_EXPR_PAYLOAD_DREG)) regs[nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_DREG)] = rg;
      else actions.push_back(UnknownTarget{"payload set"});
    } else if (name == "bitwise") {
      Reg rg = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_SREG)];
      if (nftnl_expr_is_set(e, NFTNL_EXPR_BITWISE_OP) && nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_OP) != NFT_BITWISE_BOOL)
        unknown("bitwise shift");
      rg.mask = bytes_of(e, NFTNL_EXPR_BITWISE_MASK);
      rg.xr = bytes_of(e, NFTNL_EXPR_BITWISE_XOR);
      regs[nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_DREG)] = rg;
    } else if (name == "cmp") {
      const Reg& rg = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_SREG)];
      const uint32_t op = nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP);
      const std::vector<uint8_t> d = bytes_of(e, NFTNL_EXPR_CMP_DATA);
      const bool neg = op == NFT_CMP_NEQ;
      const bool xr_zero = std::all_of(rg.xr.begin(), rg.xr.end(), [](uint8_t b) { return b == 0; });
      if (op != NFT_CMP_EQ && op != NFT_CMP_NEQ) {
        unknown("cmp op " + std::to_string(op));
      } else if (!xr_zero) {
        unknown("bitwise xor before cmp");
      } else if (rg.kind == Reg::Nfproto && d.size() == 1 && !neg && (d[0] == NFPROTO_IPV4 || d[0] == NFPROTO_IPV6)) {
        guard = d[0] == NFPROTO_IPV4 ? Family::V4 : Family::V6;
      } else if (rg.kind == Reg::L4proto && d.size() == 1 && (d[0] == IPPROTO_TCP || d[0] == IPPROTO_UDP) &&
                 rg.mask.empty()) {
        m.proto = d[0] == IPPROTO_TCP ? Proto::Tcp : Proto::Udp;
        m.proto_negated = neg;
      } else if ((rg.kind == Reg::Iif || rg.kind == Reg::Oif) && rg.mask.empty()) {
        auto nul = std::find(d.begin(), d.end(), 0);
        std::string n(d.begin(), nul);
        if (nul == d.end()) n += '+';
        (rg.kind == Reg::Iif ? m.in : m.out) = IfaceMatch{n, neg};
      } else if ((rg.kind == Reg::Skuid || rg.kind == Reg::Skgid) && d.size() == 4 && rg.mask.empty()) {
        m.owner = Owner{rg.kind == Reg::Skuid ? Owner::Kind::Uid : Owner::Kind::Gid, u32_of(d), neg};
      } else if (rg.kind == Reg::CtState && d.size() == 4 && u32_of(d) == 0 && rg.mask.size() == 4) {
        m.conntrack = Conntrack{u32_of(rg.mask), !neg};
      } else if ((rg.kind == Reg::Mark || rg.kind == Reg::CtMark) && d.size() == 4) {
        MarkMatch mm{u32_of(d), rg.mask.empty() ? 0xffffffff : u32_of(rg.mask), neg};
        (rg.kind == Reg::Mark ? m.mark : m.connmark) = mm;
      } else if ((rg.kind == Reg::Saddr || rg.kind == Reg::Daddr) && (d.size() == 4 || d.size() == 16)) {
        Cidr c;
        c.family = d.size() == 4 ? Family::V4 : Family::V6;
        std::copy(d.begin(), d.end(), c.addr.begin());
        c.prefix = static_cast<uint8_t>(rg.mask.empty() ? d.size() * 8 : prefix_of(rg.mask));
        (rg.kind == Reg::Saddr ? m.src : m.dst) = CidrSet{{c}, neg};
      } else if ((rg.kind == Reg::Sport || rg.kind == Reg::Dport) && d.size() == 2 && rg.mask.empty()) {
        const uint16_t p = port_of(d);
        (rg.kind == Reg::Sport ? m.sport : m.dport) = PortSet{{{p, p}}, neg};
      } else {
        unknown("cmp on register kind " + std::to_string(rg.kind));
      }
    } else if (name == "range") {
      const Reg& rg = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_RANGE_SREG)];
      const uint32_t op = nftnl_expr_get_u32(e, NFTNL_EXPR_RANGE_OP);
      if ((rg.kind == Reg::Sport || rg.kind == Reg::Dport) && rg.mask.empty()) {
        PortSet ps{{{port_of(bytes_of(e, NFTNL_EXPR_RANGE_FROM_DATA)), port_of(bytes_of(e, NFTNL_EXPR_RANGE_TO_DATA))}},
                   op == NFT_RANGE_NEQ};
        (rg.kind == Reg::Sport ? m.sport : m.dport) = ps;
      } else {
        unknown("range");
      }
    } else if (name == "lookup") {
      const Reg& rg = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SREG)];
      const std::string set = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
      const bool neg = nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_FLAGS) &&
                       (nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS) & NFT_LOOKUP_F_INV);
      auto found = t.sets.find(set);
      const Family f = guard.value_or(*family);
      if (found == t.sets.end() || nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG) || !rg.mask.empty()) {
        unknown("lookup in set " + set);
      } else if ((rg.kind == Reg::Sport || rg.kind == Reg::Dport) && found->second.key_len == 2) {
        (rg.kind == Reg::Sport ? m.sport : m.dport) = PortSet{nft::ports_of(found->second.ranges), neg};
      } else if ((rg.kind == Reg::Saddr || rg.kind == Reg::Daddr) &&
                 found->second.key_len == (f == Family::V4 ? 4u : 16u)) {
        (rg.kind == Reg::Saddr ? m.src : m.dst) = CidrSet{nft::cidrs_of(found->second.ranges, f), neg};
      } else {
        unknown("lookup in set " + set);
      }
    } else if (name == "immediate") {
      const uint32_t dreg = nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_DREG);
      if (dreg == NFT_REG_VERDICT) {
        const int v = static_cast<int>(nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT));
        if (v == NF_ACCEPT) actions.push_back(Verdict{Verdict::Accept});
        else if (v == NF_DROP) actions.push_back(Verdict{Verdict::Drop});
        else if (v == NFT_RETURN) actions.push_back(Verdict{Verdict::Return});
        else if (v == NFT_JUMP && nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN)) {
          const std::string target = nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN);
          auto ref = nft::parse_chain_name(target);
          const Family f = guard.value_or(*family);
          if (ref && ref->family == f && ref->stage == stage)
            actions.push_back(Jump{ref->name});
          else
            actions.push_back(UnknownTarget{"jump " + target});
        } else {
          actions.push_back(UnknownTarget{"verdict " + std::to_string(v)});
        }
      } else {
        Reg rg;
        rg.kind = Reg::Imm;
        rg.data = bytes_of(e, NFTNL_EXPR_IMM_DATA);
        regs[dreg] = rg;
      }
    } else if (name == "counter") {
      step.counters.packets = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
      step.counters.bytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
    } else if (name == "redir") {
      // The kernel reports max = min and the "port given" flag for one port.
      const uint32_t min = nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN);
      const Reg& rg = regs[min];
      const bool one_port = !nftnl_expr_is_set(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX) ||
                            nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MAX) == min;
      const bool plain = !nftnl_expr_is_set(e, NFTNL_EXPR_REDIR_FLAGS) ||
                         (nftnl_expr_get_u32(e, NFTNL_EXPR_REDIR_FLAGS) & ~uint32_t{NF_NAT_RANGE_PROTO_SPECIFIED}) == 0;
      if (rg.kind == Reg::Imm && one_port && plain)
        actions.push_back(Redirect{port_of(rg.data)});
      else
        actions.push_back(UnknownTarget{"redirect"});
    } else if (name == "tproxy") {
      const Reg& rg = regs[nftnl_expr_get_u32(e, NFTNL_EXPR_TPROXY_REG_PORT)];
      const uint32_t fam = nftnl_expr_get_u32(e, NFTNL_EXPR_TPROXY_FAMILY);
      const Family f = guard.value_or(*family);
      if (rg.kind == Reg::Imm && !nftnl_expr_is_set(e, NFTNL_EXPR_TPROXY_REG_ADDR) &&
          fam == (f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6))
        actions.push_back(Tproxy{port_of(rg.data), 0, 0});
      else
        actions.push_back(UnknownTarget{"tproxy"});
    } else {
      unknown("nft expression " + name);
    }
  }
  nftnl_expr_iter_destroy(it);

  if (base) {
    if (guard) *family = *guard;
    else unknown("no meta nfproto (runs for both families)");
  } else if (guard && *guard != *family) {
    unknown(std::string("meta nfproto ") + to_string(*guard) + " in a chain of " + to_string(*family));
  }
  // A tproxy is written as tproxy, meta mark set, accept.
  if (actions.size() == 3 && std::holds_alternative<Tproxy>(actions[0]) && std::holds_alternative<SetMark>(actions[1]) &&
      actions[2] == Target{Verdict{Verdict::Accept}}) {
    Tproxy tp = std::get<Tproxy>(actions[0]);
    tp.mark = std::get<SetMark>(actions[1]).value;
    tp.mask = std::get<SetMark>(actions[1]).mask;
    step.action = tp;
  } else if (actions.size() == 1 && !std::holds_alternative<Tproxy>(actions[0])) {
    step.action = actions[0];
  } else {
    std::string what = actions.empty() ? "no verdict" : "";
    for (const auto& a : actions) {
      if (!what.empty()) what += ", ";
      what += std::visit([](const auto& x) -> std::string {
        using A = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<A, UnknownTarget>) return x.name;
        else return "statement";
      }, a);
    }
    step.action = UnknownTarget{what};
  }
  uint32_t len = 0;
  if (const void* ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len)) {
    nftnl_udata_parse(
        ud, len,
        [](const nftnl_udata* a, void* data) -> int {
          if (nftnl_udata_type(a) == NFTNL_UDATA_RULE_COMMENT && nftnl_udata_len(a) > 0) {
            const char* s = static_cast<const char*>(nftnl_udata_get(a));
            static_cast<std::string*>(data)->assign(s, strnlen(s, nftnl_udata_len(a)));
          }
          return MNL_CB_OK;
        },
        &step.reason);
  }
  return step;
}

}  // namespace

void put_table_payload(nlmsghdr* nlh, const void*) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
}
static void put_chain_filter(nlmsghdr* nlh, const void*) {
  ChainPtr c(nftnl_chain_alloc());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
}
static void put_rule_filter(nlmsghdr* nlh, const void*) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, kTable);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
}
static void put_set_filter(nlmsghdr* nlh, const void*) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
}
static void put_elem_filter(nlmsghdr* nlh, const void* name) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable);
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, static_cast<const std::string*>(name)->c_str());
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
}

// Reads table inet weir: never a dump of anything but that table.
Result<LiveTable> read_table(Socket& s) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    LiveTable t;
    bool intr = false, any_intr = false;
    Status st = request(s, NFT_MSG_GETTABLE, 0, "get table inet weir", put_table_payload, nullptr,
                        [&](const nlmsghdr* m) { if (NFNL_MSG_TYPE(m->nlmsg_type) == NFT_MSG_NEWTABLE) t.exists = true; });
    if (!st.ok()) {
      if (st.error().sys_errno == ENOENT) return t;
      return st.error();
    }
    if (!t.exists) return t;
    st = request(s, NFT_MSG_GETCHAIN, NLM_F_DUMP, "list the chains of table inet weir", put_chain_filter, nullptr,
                 [&](const nlmsghdr* m) {
                   ChainPtr c(nftnl_chain_alloc());
                   if (nftnl_chain_nlmsg_parse(m, c.get()) < 0) return;
                   if (std::string(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) != kTable) return;
                   LiveChain lc;
                   lc.name = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
                   lc.base = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM);
                   if (lc.base) {
                     lc.hooknum = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM);
                     lc.prio = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
                     lc.type = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_TYPE) ? nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE) : "";
                     lc.policy = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY);
                   }
                   t.chains.push_back(std::move(lc));
                 },
                 &intr);
    if (!st.ok()) return st.error();
    any_intr |= intr;
    std::vector<std::string> set_names;
    st = request(s, NFT_MSG_GETSET, NLM_F_DUMP, "list the sets of table inet weir", put_set_filter, nullptr,
                 [&](const nlmsghdr* m) {
                   SetPtr set(nftnl_set_alloc());
                   if (nftnl_set_nlmsg_parse(m, set.get()) < 0) return;
                   if (std::string(nftnl_set_get_str(set.get(), NFTNL_SET_TABLE)) != kTable) return;
                   const std::string name = nftnl_set_get_str(set.get(), NFTNL_SET_NAME);
                   t.sets[name].key_len = nftnl_set_get_u32(set.get(), NFTNL_SET_KEY_LEN);
                   set_names.push_back(name);
                 },
                 &intr);
    if (!st.ok()) return st.error();
    any_intr |= intr;
    for (const std::string& name : set_names) {
      std::vector<std::pair<std::vector<uint8_t>, bool>> keys;  // key, is interval end
      st = request(s, NFT_MSG_GETSETELEM, NLM_F_DUMP, "list the elements of set " + name + " of table inet weir",
                   put_elem_filter, &name,
                   [&](const nlmsghdr* m) {
                     SetPtr set(nftnl_set_alloc());
                     if (nftnl_set_elems_nlmsg_parse(m, set.get()) < 0) return;
                     nftnl_set_elem_foreach(
                         set.get(),
                         [](nftnl_set_elem* e, void* data) -> int {
                           uint32_t len = 0;
                           const auto* k = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
                           const bool end = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS) &&
                                            (nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
                           if (k)
                             static_cast<std::vector<std::pair<std::vector<uint8_t>, bool>>*>(data)->emplace_back(
                                 std::vector<uint8_t>(k, k + len), end);
                           return 0;
                         },
                         &keys);
                   },
                   &intr);
      if (!st.ok()) return st.error();
      any_intr |= intr;
      std::sort(keys.begin(), keys.end());
      LiveSet& ls = t.sets[name];
      for (const auto& [key, end] : keys) {
        if (!end) {
          ls.ranges.push_back(KeyRange{key, {}});
        } else if (!ls.ranges.empty() && ls.ranges.back().to.empty()) {
          ls.ranges.back().to = key;
        }  // an end without a start (nft's leading zero) bounds nothing
      }
    }
    st = request(s, NFT_MSG_GETRULE, NLM_F_DUMP, "list the rules of table inet weir", put_rule_filter, nullptr,
                 [&](const nlmsghdr* m) {
                   RulePtr r(nftnl_rule_alloc());
                   if (nftnl_rule_nlmsg_parse(m, r.get()) < 0) return;
                   if (std::string(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE)) != kTable) return;
                   LiveRule lr{nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN), std::move(r)};
                   t.rules.push_back(std::move(lr));
                 },
                 &intr);
    if (!st.ok()) return st.error();
    any_intr |= intr;
    if (!any_intr) return t;
  }
  return Error{ErrorKind::Kernel, "read table inet weir: it kept changing while it was read"};
}

static StagePolicy* stage_of(CapturePolicy& p, Family f, Stage s) {
  FamilyPolicy* fp = nullptr;
  for (auto& x : p.families)
    if (x.family == f) fp = &x;
  if (!fp) {
    p.families.push_back(FamilyPolicy{f, {}});
    fp = &p.families.back();
  }
  for (auto& x : fp->stages)
    if (x.stage == s) return &x;
  fp->stages.push_back(StagePolicy{s, {}});
  return &fp->stages.back();
}

static PolicyChain* chain_of(StagePolicy& sp, const std::string& name, std::optional<Hook> hook) {
  for (auto& c : sp.chains)
    if (c.name == name) return &c;
  sp.chains.push_back(PolicyChain{name, hook, {}, 0});
  return &sp.chains.back();
}

// The live table as a policy, in canonical order (nft::canonical).
CapturePolicy raise(const LiveTable& t) {
  CapturePolicy p;
  if (!t.exists) return p;
  // Regular chains first exist empty, so that an empty one still shows.
  std::map<std::string, nft::ChainRef> refs;
  for (const LiveChain& c : t.chains) {
    auto ref = nft::parse_chain_name(c.name);
    const bool shape_ok = ref && (ref->hook.has_value() == c.base);
    if (!shape_ok) {
      // A chain weir does not make: show it as a step nobody planned.
      Step odd;
      odd.match.unknown.push_back("chain " + c.name + " in table inet weir");
      odd.action = UnknownTarget{"chain " + c.name};
      chain_of(*stage_of(p, Family::V4, Stage::Nat), "(unknown)", std::nullopt)->steps.push_back(odd);
      continue;
    }
    refs[c.name] = *ref;
    if (c.base) {
      const Hook h = *ref->hook;
      const bool hook_ok = c.hooknum == (h == Hook::Prerouting ? NF_INET_PRE_ROUTING : NF_INET_LOCAL_OUT);
      if (!hook_ok || c.prio != nft::stage_priority(ref->stage) || c.type != nft::chain_type(ref->stage, h) ||
          c.policy != NF_ACCEPT) {
        Step odd;
        odd.match.unknown.push_back("base chain " + c.name + ": type " + c.type + " hook " + std::to_string(c.hooknum) +
                                    " priority " + std::to_string(c.prio) + " policy " + std::to_string(c.policy));
        odd.action = UnknownTarget{"base chain " + c.name};
        chain_of(*stage_of(p, Family::V4, ref->stage), h == Hook::Prerouting ? "PREROUTING" : "OUTPUT", h)->steps.push_back(odd);
      }
    } else {
      chain_of(*stage_of(p, *ref->family, ref->stage), ref->name, std::nullopt);
    }
  }
  for (const LiveRule& r : t.rules) {
    auto it = refs.find(r.chain);
    if (it == refs.end()) continue;  // shown with its chain
    const nft::ChainRef& ref = it->second;
    Family f = ref.family.value_or(Family::V4);
    Step s = decode_rule(r.rule.get(), t, &f, ref.hook.has_value(), ref.stage);
    chain_of(*stage_of(p, f, ref.stage), ref.name, ref.hook)->steps.push_back(std::move(s));
  }
  // Canonical order: families V4, V6; stages raw, mangle, nat; base chains
  // (prerouting, output) first, then regular chains in kernel order.
  std::sort(p.families.begin(), p.families.end(), [](const auto& a, const auto& b) { return a.family < b.family; });
  for (auto& fp : p.families) {
    std::sort(fp.stages.begin(), fp.stages.end(), [](const auto& a, const auto& b) { return a.stage < b.stage; });
    for (auto& sp : fp.stages)
      std::stable_sort(sp.chains.begin(), sp.chains.end(), [](const PolicyChain& a, const PolicyChain& b) {
        auto rank = [](const PolicyChain& c) { return !c.hook ? 2 : *c.hook == Hook::Prerouting ? 0 : 1; };
        return rank(a) < rank(b);
      });
  }
  return p;
}

}  // namespace weir::nft::netlink
