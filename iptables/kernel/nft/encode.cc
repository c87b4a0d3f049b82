#include "kernel/nft/encode.h"

#include <net/if.h>

namespace weir::nft::netlink {
namespace {


std::vector<uint8_t> be16(uint16_t v) { return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v & 0xff)}; }

class RuleBuilder {
 public:
  explicit RuleBuilder(nftnl_rule* r) : r_(r) {}
  void add(ExprPtr e) {
    if (e) nftnl_rule_add_expr(r_, e.release());  // null only when out of memory
  }

  static ExprPtr make(const char* name) { return ExprPtr(nftnl_expr_alloc(name)); }

  void meta_load(uint32_t key) {
    auto e = make("meta");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_DREG, kReg);
    add(std::move(e));
  }
  void meta_set(uint32_t key) {
    auto e = make("meta");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_SREG, kReg);
    add(std::move(e));
  }
  void ct_load(uint32_t key) {
    auto e = make("ct");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_DREG, kReg);
    add(std::move(e));
  }
  void ct_set(uint32_t key) {
    auto e = make("ct");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_SREG, kReg);
    add(std::move(e));
  }
  void payload(uint32_t base, uint32_t offset, uint32_t len) {
    auto e = make("payload");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_DREG, kReg);
    add(std::move(e));
  }
  void cmp(uint32_t op, const void* data, uint32_t len) {
    auto e = make("cmp");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_SREG, kReg);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e.get(), NFTNL_EXPR_CMP_DATA, data, len);
    add(std::move(e));
  }
  void cmp(uint32_t op, const std::vector<uint8_t>& v) { cmp(op, v.data(), static_cast<uint32_t>(v.size())); }
  void bitwise(const void* mask, const void* xr, uint32_t len) {
    auto e = make("bitwise");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_SREG, kReg);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_DREG, kReg);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_MASK, mask, len);
    nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_XOR, xr, len);
    add(std::move(e));
  }
  void range(uint32_t op, const std::vector<uint8_t>& from, const std::vector<uint8_t>& to) {
    auto e = make("range");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_RANGE_SREG, kReg);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_RANGE_OP, op);
    nftnl_expr_set(e.get(), NFTNL_EXPR_RANGE_FROM_DATA, from.data(), static_cast<uint32_t>(from.size()));
    nftnl_expr_set(e.get(), NFTNL_EXPR_RANGE_TO_DATA, to.data(), static_cast<uint32_t>(to.size()));
    add(std::move(e));
  }
  void lookup(const std::string& set, uint32_t set_id, bool negated) {
    auto e = make("lookup");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SREG, kReg);
    nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOOKUP_SET, set.c_str());
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    if (negated) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
    add(std::move(e));
  }
  void imm_data(const void* data, uint32_t len) {
    auto e = make("immediate");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, kReg);
    nftnl_expr_set(e.get(), NFTNL_EXPR_IMM_DATA, data, len);
    add(std::move(e));
  }
  void verdict(int v, const std::string& chain = {}) {
    auto e = make("immediate");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(v));
    if (!chain.empty()) nftnl_expr_set_str(e.get(), NFTNL_EXPR_IMM_CHAIN, chain.c_str());
    add(std::move(e));
  }

 private:
  nftnl_rule* r_;
};

// The batch apply (and probe) sends: begin, make sure table weir exists and
// delete it, create it again with its chains, sets and rules, end.
class BatchBuilder {
 public:
  BatchBuilder(Socket& s, const CapturePolicy& wanted, bool refused_rule)
      : s_(s), p_(wanted), refused_rule_(refused_rule) {}

  // `with_end`: false for a probe (the kernel validates and aborts).
  // `table_exists`: what the caller just read. A table that exists is deleted
  // first, in the same batch. One that does not is only created, with EXCL so
  // that a table someone made in between fails the batch instead of being
  // merged into: deleting costs the closing of the socket an RCU grace period
  // (see NFTABLES.md), and the fresh pod namespace, the common case, has
  // nothing to delete.
  Messages build(bool with_end, bool table_exists) {
    put([&](char* at) { return nftnl_batch_begin(at, s_.next_seq()); });
    if (table_exists) {
      table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
      table(NFT_MSG_DELTABLE, 0);
    }
    if (!p_.families.empty()) {
      table(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL);
      chains();
      rules();
    }
    // Only the last data message asks for an ack: nf_tables answers every
    // message that fails anyway (and goes on to the end of the batch), so
    // the one ack says the batch was processed, and a failure still names
    // its message. 48 acks were 48 skbs and 48 recv(2) calls (~0.1 ms).
    if (last_data_seq_) m_.header_at(last_data_offset_)->nlmsg_flags |= NLM_F_ACK;
    last_seq_ = last_data_seq_;
    if (with_end) put([&](char* at) { return nftnl_batch_end(at, s_.next_seq()); });
    return std::move(m_);
  }

  uint32_t last_seq() const { return last_seq_; }
  // What a message of the batch did, for an error ("rule 3 of chain ip_nat_WEIR_OUTPUT").
  std::map<uint32_t, std::string> take_what() { return std::move(what_); }

 private:
  template <typename F>
  nlmsghdr* put(F f) {
    nlmsghdr* nlh = f(m_.room());
    m_.finish(nlh);
    return nlh;
  }

  // A data message: its header, then the payload written by `fill`. Its
  // sequence number matches an error to what it did; build() makes the last
  // one ask for an ack.
  template <typename F>
  void msg(uint16_t type, uint16_t flags, const std::string& what, F fill) {
    const uint32_t seq = s_.next_seq();
    last_data_offset_ = m_.size();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(m_.room(), type, NFPROTO_INET, flags, seq);
    fill(nlh);
    m_.finish(nlh);
    what_[seq] = what;
    last_data_seq_ = seq;
  }

  void table(uint16_t type, uint16_t flags) {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
    msg(type, flags, type == NFT_MSG_DELTABLE ? "delete table inet weir" : "add table inet weir",
        [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
  }

  void chain(const std::string& name, std::optional<std::pair<Stage, Hook>> base) {
    ChainPtr c(nftnl_chain_alloc());
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, kTable);
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name.c_str());
    if (base) {
      nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM,
                          base->second == Hook::Prerouting ? NF_INET_PRE_ROUTING : NF_INET_LOCAL_OUT);
      nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, nft::stage_priority(base->first));
      nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, nft::chain_type(base->first, base->second));
      nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    }
    msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "add chain " + name,
        [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, c.get()); });
  }

  void chains() {
    for (Stage st : {Stage::Raw, Stage::Mangle, Stage::Nat})
      for (Hook h : {Hook::Prerouting, Hook::Output}) {
        bool used = false;
        for (const auto& fp : p_.families)
          for (const auto& sp : fp.stages)
            for (const auto& c : sp.chains) used |= sp.stage == st && c.hook == h;
        if (used) chain(nft::base_chain_name(st, h), std::make_pair(st, h));
      }
    for (const auto& fp : p_.families)
      for (const auto& sp : fp.stages)
        for (const auto& c : sp.chains)
          if (!c.hook) chain(nft::chain_name(fp.family, sp.stage, c.name), std::nullopt);
  }

  void rules() {
    for (Stage st : {Stage::Raw, Stage::Mangle, Stage::Nat})
      for (Hook h : {Hook::Prerouting, Hook::Output})
        for (const auto& fp : p_.families)
          for (const auto& sp : fp.stages)
            if (sp.stage == st)
              for (const auto& c : sp.chains)
                if (c.hook == h)
                  for (const Step& s : c.steps) rule(nft::base_chain_name(st, h), s, fp.family, st, true);
    for (const auto& fp : p_.families)
      for (const auto& sp : fp.stages)
        for (const auto& c : sp.chains)
          if (!c.hook)
            for (const Step& s : c.steps) rule(nft::chain_name(fp.family, sp.stage, c.name), s, fp.family, sp.stage, false);
    if (refused_rule_ && !p_.families.empty()) {
      const auto& fp = p_.families.front();
      const auto& sp = fp.stages.front();
      const auto& c = sp.chains.front();
      const std::string chain_name =
          c.hook ? nft::base_chain_name(sp.stage, *c.hook) : nft::chain_name(fp.family, sp.stage, c.name);
      RulePtr r = new_rule(chain_name);
      RuleBuilder b(r.get());
      // A meta expression with a key nf_tables does not have (libnftnl
      // builds it; the kernel refuses it with EOPNOTSUPP).
      auto e = RuleBuilder::make("meta");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, 0xff);
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_DREG, kReg);
      b.add(std::move(e));
      send_rule(r.get(), "the test's refused rule in " + chain_name);
    }
  }

  RulePtr new_rule(const std::string& chain) {
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, kTable);
    nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
    return r;
  }

  void send_rule(nftnl_rule* r, const std::string& what) {
    msg(NFT_MSG_NEWRULE, NLM_F_APPEND | NLM_F_CREATE, what,
        [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, r); });
  }

  // An anonymous interval set holding `ranges`; returns its batch id.
  uint32_t anon_set(const std::vector<KeyRange>& ranges, uint32_t key_type, uint32_t key_len,
                    const std::string& what) {
    const uint32_t id = ++set_id_;
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable);
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, "__set%d");
    nftnl_set_set_u32(s.get(), NFTNL_SET_ID, id);
    nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_INTERVAL);
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, key_type);
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, key_len);
    msg(NFT_MSG_NEWSET, NLM_F_CREATE, "add the set of " + what,
        [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, s.get()); });
    // Elements in messages of at most 500 ranges (each well under 64 KiB).
    for (size_t at = 0; at < ranges.size(); at += 500) {
      SetPtr e(nftnl_set_alloc());
      nftnl_set_set_u32(e.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
      nftnl_set_set_str(e.get(), NFTNL_SET_TABLE, kTable);
      nftnl_set_set_str(e.get(), NFTNL_SET_NAME, "__set%d");
      nftnl_set_set_u32(e.get(), NFTNL_SET_ID, id);
      for (size_t i = at; i < std::min(ranges.size(), at + 500); ++i) {
        nftnl_set_elem* start = nftnl_set_elem_alloc();
        nftnl_set_elem_set(start, NFTNL_SET_ELEM_KEY, ranges[i].from.data(), key_len);
        nftnl_set_elem_add(e.get(), start);
        if (!ranges[i].to.empty()) {
          nftnl_set_elem* end = nftnl_set_elem_alloc();
          nftnl_set_elem_set(end, NFTNL_SET_ELEM_KEY, ranges[i].to.data(), key_len);
          nftnl_set_elem_set_u32(end, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
          nftnl_set_elem_add(e.get(), end);
        }
      }
      msg(NFT_MSG_NEWSETELEM, NLM_F_CREATE, "add the elements of " + what,
          [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, e.get()); });
    }
    return id;
  }

  void addr_match(RuleBuilder& b, const CidrSet& set, Family f, bool src, const std::string& what) {
    const uint32_t len = f == Family::V4 ? 4 : 16;
    const uint32_t offset = f == Family::V4 ? (src ? 12 : 16) : (src ? 8 : 24);
    b.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len);
    if (set.cidrs.size() == 1) {
      const Cidr& c = set.cidrs[0];
      if (c.prefix < len * 8) {
        std::vector<uint8_t> mask(len, 0), zero(len, 0);
        for (uint32_t i = 0; i < len; ++i) {
          const int bits = std::clamp(static_cast<int>(c.prefix) - static_cast<int>(i) * 8, 0, 8);
          mask[i] = bits == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
        }
        b.bitwise(mask.data(), zero.data(), len);
      }
      b.cmp(set.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, c.addr.data(), len);
      return;
    }
    const uint32_t id = anon_set(nft::key_ranges(set.cidrs, f), f == Family::V4 ? 7 : 8, len, what);
    b.lookup("__set%d", id, set.negated);
  }

  void port_match(RuleBuilder& b, const PortSet& set, bool src, const std::string& what) {
    b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, src ? 0 : 2, 2);
    if (set.ports.size() == 1) {
      const PortRange& p = set.ports[0];
      if (p.first == p.last)
        b.cmp(set.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, be16(p.first));
      else
        b.range(set.negated ? NFT_RANGE_NEQ : NFT_RANGE_EQ, be16(p.first), be16(p.last));
      return;
    }
    const uint32_t id = anon_set(nft::key_ranges(set.ports), 13, 2, what);  // 13: nft's inet_service
    b.lookup("__set%d", id, set.negated);
  }

  void mark_set(RuleBuilder& b, uint32_t value, uint32_t mask) {
    if (mask == 0xffffffff) {
      b.imm_data(&value, sizeof value);
    } else {
      b.meta_load(NFT_META_MARK);
      const uint32_t keep = ~mask;
      b.bitwise(&keep, &value, sizeof keep);
    }
    b.meta_set(NFT_META_MARK);
  }

  void rule(const std::string& chain, const Step& s, Family f, Stage stage, bool base) {
    RulePtr r = new_rule(chain);
    RuleBuilder b(r.get());
    const Match& m = s.match;
    const std::string what = "rule " + std::to_string(++rule_count_[chain]) + " of chain " + chain;
    if (base || std::holds_alternative<Tproxy>(s.action) || m.src || m.dst) {
      const uint8_t proto = f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
      b.meta_load(NFT_META_NFPROTO);
      b.cmp(NFT_CMP_EQ, &proto, 1);
    }
    auto iface = [&](uint32_t key, const IfaceMatch& i) {
      b.meta_load(key);
      std::string name = i.name;
      if (!name.empty() && name.back() == '+') {
        name.pop_back();  // a prefix: compare only its bytes
        b.cmp(i.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, name.data(), static_cast<uint32_t>(name.size()));
      } else {
        char buf[IFNAMSIZ] = {};
        std::strncpy(buf, name.c_str(), IFNAMSIZ - 1);
        b.cmp(i.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, buf, IFNAMSIZ);
      }
    };
    if (m.in) iface(NFT_META_IIFNAME, *m.in);
    if (m.out) iface(NFT_META_OIFNAME, *m.out);
    if (m.src) addr_match(b, *m.src, f, true, what);
    if (m.dst) addr_match(b, *m.dst, f, false, what);
    if (m.proto != Proto::Any) {
      const uint8_t p = m.proto == Proto::Tcp ? IPPROTO_TCP : IPPROTO_UDP;
      b.meta_load(NFT_META_L4PROTO);
      b.cmp(m.proto_negated ? NFT_CMP_NEQ : NFT_CMP_EQ, &p, 1);
    }
    if (m.sport) port_match(b, *m.sport, true, what);
    if (m.dport) port_match(b, *m.dport, false, what);
    if (m.owner) {
      b.meta_load(m.owner->kind == Owner::Kind::Uid ? NFT_META_SKUID : NFT_META_SKGID);
      b.cmp(m.owner->negated ? NFT_CMP_NEQ : NFT_CMP_EQ, &m.owner->id, sizeof m.owner->id);
    }
    if (m.conntrack) {
      b.ct_load(NFT_CT_STATE);
      const uint32_t mask = m.conntrack->states, zero = 0;
      b.bitwise(&mask, &zero, sizeof mask);
      b.cmp(m.conntrack->negated ? NFT_CMP_EQ : NFT_CMP_NEQ, &zero, sizeof zero);
    }
    auto mark = [&](bool ct, const MarkMatch& mm) {
      if (ct) b.ct_load(NFT_CT_MARK); else b.meta_load(NFT_META_MARK);
      if (mm.mask != 0xffffffff) {
        const uint32_t zero = 0;
        b.bitwise(&mm.mask, &zero, sizeof mm.mask);
      }
      const uint32_t v = mm.value & mm.mask;
      b.cmp(mm.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, &v, sizeof v);
    };
    if (m.mark) mark(false, *m.mark);
    if (m.connmark) mark(true, *m.connmark);
    b.add(RuleBuilder::make("counter"));
    std::visit(
        [&](const auto& a) {
          using A = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<A, Verdict>) {
            b.verdict(a.kind == Verdict::Accept ? NF_ACCEPT : a.kind == Verdict::Drop ? NF_DROP : NFT_RETURN);
          } else if constexpr (std::is_same_v<A, Jump>) {
            b.verdict(NFT_JUMP, nft::chain_name(f, stage, a.chain));
          } else if constexpr (std::is_same_v<A, Redirect>) {
            const auto port = be16(a.port);
            b.imm_data(port.data(), 2);
            auto e = RuleBuilder::make("redir");
            nftnl_expr_set_u32(e.get(), NFTNL_EXPR_REDIR_REG_PROTO_MIN, kReg);
            b.add(std::move(e));
          } else if constexpr (std::is_same_v<A, Tproxy>) {
            const auto port = be16(a.port);
            b.imm_data(port.data(), 2);
            auto e = RuleBuilder::make("tproxy");
            nftnl_expr_set_u32(e.get(), NFTNL_EXPR_TPROXY_FAMILY, f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
            nftnl_expr_set_u32(e.get(), NFTNL_EXPR_TPROXY_REG_PORT, kReg);
            b.add(std::move(e));
            mark_set(b, a.mark, a.mask);
            b.verdict(NF_ACCEPT);
          } else if constexpr (std::is_same_v<A, SetMark>) {
            mark_set(b, a.value, a.mask);
          } else if constexpr (std::is_same_v<A, Connmark>) {
            if (a.mode == Connmark::Save) {
              b.meta_load(NFT_META_MARK);
              b.ct_set(NFT_CT_MARK);
            } else {
              b.ct_load(NFT_CT_MARK);
              b.meta_set(NFT_META_MARK);
            }
          } else if constexpr (std::is_same_v<A, CtZone>) {
            b.imm_data(&a.zone, sizeof a.zone);
            b.ct_set(NFT_CT_ZONE);
          } else {
            // check() refuses an unknown action before anything is built.
          }
        },
        s.action);
    if (!s.reason.empty()) {
      UdataPtr u(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
      nftnl_udata_put_strz(u.get(), NFTNL_UDATA_RULE_COMMENT, s.reason.c_str());
      nftnl_rule_set_data(r.get(), NFTNL_RULE_USERDATA, nftnl_udata_buf_data(u.get()), nftnl_udata_buf_len(u.get()));
    }
    send_rule(r.get(), what);
  }

  Socket& s_;
  const CapturePolicy& p_;
  bool refused_rule_;
  Messages m_;
  std::map<uint32_t, std::string> what_;
  std::map<std::string, int> rule_count_;
  uint32_t set_id_ = 0;
  uint32_t last_data_seq_ = 0;
  size_t last_data_offset_ = 0;
  uint32_t last_seq_ = 0;
};

}  // namespace

std::string Batch::describe(uint32_t seq) const {
  auto it = what.find(seq);
  return it == what.end() ? "the transaction" : it->second;
}

Batch build_batch(Socket& s, const CapturePolicy& wanted, bool with_end, bool table_exists, bool refused_rule) {
  BatchBuilder b(s, wanted, refused_rule);
  Batch out;
  out.messages = b.build(with_end, table_exists);
  out.last_seq = b.last_seq();
  out.what = b.take_what();
  return out;
}

}  // namespace weir::nft::netlink
