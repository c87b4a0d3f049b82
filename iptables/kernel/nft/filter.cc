// The nftables filter over netlink. See filter.h for what each operation
// sends; rules/nft/ruleset.h for the ruleset's shape.
//
// Each operation opens its own netlink socket (a socket talks to the
// namespace current when it was made). nf_tables handles a batch inside the
// sendmsg(2) call that carries it, so every answer to a batch is already in
// the socket when sendto returns: they are read without blocking.
#include "kernel/nft/filter.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rules/nft/ruleset.h"

namespace weir {
namespace {

using nft::KeyRange;

// --- RAII for libmnl and libnftnl objects ---
struct SocketClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
struct TableFree {
  void operator()(nftnl_table* t) const { nftnl_table_free(t); }
};
struct ChainFree {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
struct SetFree {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
struct ExprFree {
  void operator()(nftnl_expr* e) const { nftnl_expr_free(e); }
};
struct UdataFree {
  void operator()(nftnl_udata_buf* b) const { nftnl_udata_buf_free(b); }
};
using SocketPtr = std::unique_ptr<mnl_socket, SocketClose>;
using TablePtr = std::unique_ptr<nftnl_table, TableFree>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainFree>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleFree>;
using SetPtr = std::unique_ptr<nftnl_set, SetFree>;
using ExprPtr = std::unique_ptr<nftnl_expr, ExprFree>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, UdataFree>;

constexpr const char* kTable = nft::kTable;
constexpr uint32_t kReg = NFT_REG_1;

bool nf_tables_missing(int err) {
  return err == EPROTONOSUPPORT || err == EAFNOSUPPORT || err == EOPNOTSUPP || err == ENOPROTOOPT;
}

// An open netlink socket to nf_tables in the calling thread's namespace.
class Socket {
 public:
  static Result<Socket> open() {
    SocketPtr nl(mnl_socket_open(NETLINK_NETFILTER));
    if (!nl) return system_error(nf_tables_missing(errno) ? ErrorKind::Unsupported : ErrorKind::Kernel,
                                 "open a netlink socket to nf_tables", errno);
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
      return system_error(ErrorKind::Kernel, "bind the nf_tables netlink socket", errno);
    // Acks carry only the header of what they answer, not the whole message.
    int on = 1;
    mnl_socket_setsockopt(nl.get(), NETLINK_CAP_ACK, &on, sizeof on);
    Socket s;
    s.portid_ = mnl_socket_get_portid(nl.get());
    s.nl_ = std::move(nl);
    return s;
  }

  uint32_t next_seq() { return seq_++; }
  mnl_socket* get() const { return nl_.get(); }
  uint32_t portid() const { return portid_; }

 private:
  Socket() = default;
  SocketPtr nl_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 1;
};

// Messages laid end to end, as one batch (or one request) is sent. The
// buffer is not zero-filled (libnftnl writes every byte of a message) and
// grows by doubling: zeroing 64 KiB per message cost more than the batch.
class Messages {
 public:
  // Room for one message at the end; finish() commits what was built there.
  char* room(size_t bytes = 1 << 16) {
    if (used_ + bytes > cap_) {
      size_t cap = std::max(cap_ * 2, used_ + bytes);
      std::unique_ptr<char[]> grown(new char[cap]);
      if (used_) std::memcpy(grown.get(), buf_.get(), used_);
      buf_ = std::move(grown);
      cap_ = cap;
    }
    return buf_.get() + used_;
  }
  void finish(const nlmsghdr* nlh) { used_ += NLMSG_ALIGN(nlh->nlmsg_len); }
  const char* data() const { return buf_.get(); }
  size_t size() const { return used_; }

 private:
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t used_ = 0;
};

// What the kernel answered to a batch: per sequence number, the error (0 = ack).
struct Answers {
  std::map<uint32_t, int> by_seq;
};

Status send_all(Socket& s, const Messages& m, const std::string& what) {
  if (m.size() > 200000) {
    // A big batch needs a send buffer that holds it in one piece.
    int size = static_cast<int>(m.size() + 4096);
    if (setsockopt(mnl_socket_get_fd(s.get()), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
      setsockopt(mnl_socket_get_fd(s.get()), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if (mnl_socket_sendto(s.get(), m.data(), m.size()) < 0) return system_error(ErrorKind::Kernel, what, errno);
  return {};
}

// Reads every answer already queued on the socket, without waiting.
Result<Answers> pending_answers(Socket& s, const std::string& what) {
  Answers a;
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(mnl_socket_get_fd(s.get()), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return system_error(ErrorKind::Kernel, what + ": read the answer", errno);
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      a.by_seq[err->msg.nlmsg_seq] = -err->error;
    }
  }
  return a;
}

// A dump or a get: sends one request and hands every answer message to `on`.
// Retries (bounded) when the dump was interrupted by a concurrent change.
template <typename On>
Status request(Socket& s, uint16_t type, uint16_t flags, const std::string& what,
               void (*payload)(nlmsghdr*, const void*), const void* arg, On on, bool* interrupted_out = nullptr) {
  alignas(nlmsghdr) char req[4096];  // a get or dump request: a header and a name or two
  const uint32_t seq = s.next_seq();
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(req, type, NFPROTO_INET, flags | NLM_F_ACK, seq);
  payload(nlh, arg);
  if (mnl_socket_sendto(s.get(), nlh, nlh->nlmsg_len) < 0) return system_error(ErrorKind::Kernel, what, errno);
  alignas(nlmsghdr) char buf[32768];  // libmnl's MNL_SOCKET_DUMP_SIZE, not in 1.0.4
  bool interrupted = false;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(s.get(), buf, sizeof buf);
    if (n < 0) return system_error(ErrorKind::Kernel, what, errno);
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_seq != seq || m->nlmsg_pid != s.portid()) continue;
      if (m->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
      if (m->nlmsg_type == NLMSG_DONE) {
        if (interrupted_out) *interrupted_out = interrupted;
        return {};
      }
      if (m->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
        if (interrupted_out) *interrupted_out = interrupted;
        if (err->error == 0) return {};
        return system_error(nf_tables_missing(-err->error) ? ErrorKind::Unsupported : ErrorKind::Kernel, what,
                            -err->error);
      }
      on(m);
    }
  }
}

// --- Building the batch ---

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
    last_seq_ = last_data_seq_;
    if (with_end) put([&](char* at) { return nftnl_batch_end(at, s_.next_seq()); });
    return std::move(m_);
  }

  uint32_t last_seq() const { return last_seq_; }
  // What a message of the batch did, for an error ("rule 3 of chain ip_nat_WEIR_OUTPUT").
  std::string what(uint32_t seq) const {
    auto it = what_.find(seq);
    return it == what_.end() ? "the transaction" : it->second;
  }

 private:
  template <typename F>
  nlmsghdr* put(F f) {
    nlmsghdr* nlh = f(m_.room());
    m_.finish(nlh);
    return nlh;
  }

  // A data message: its header, then the payload written by `fill`. Every
  // one asks for an ack, so each answer can be matched to what it did.
  template <typename F>
  void msg(uint16_t type, uint16_t flags, const std::string& what, F fill) {
    const uint32_t seq = s_.next_seq();
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(m_.room(), type, NFPROTO_INET, flags | NLM_F_ACK, seq);
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
  uint32_t last_seq_ = 0;
};

// --- Reading table weir back ---

struct LiveSet {
  uint32_t key_len = 0;
  std::vector<KeyRange> ranges;
};

struct LiveChain {
  std::string name;
  bool base = false;
  uint32_t hooknum = 0;
  int32_t prio = 0;
  std::string type;
  uint32_t policy = NF_ACCEPT;
};

struct LiveRule {
  std::string chain;
  RulePtr rule;
};

struct LiveTable {
  bool exists = false;
  std::vector<LiveChain> chains;  // kernel order
  std::map<std::string, LiveSet> sets;
  std::vector<LiveRule> rules;  // kernel order
};

// What a register holds while a rule's expressions are walked.
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

void put_table_payload(nlmsghdr* nlh, const void*) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
}
void put_chain_filter(nlmsghdr* nlh, const void*) {
  ChainPtr c(nftnl_chain_alloc());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
}
void put_rule_filter(nlmsghdr* nlh, const void*) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, kTable);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
}
void put_set_filter(nlmsghdr* nlh, const void*) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
}
void put_elem_filter(nlmsghdr* nlh, const void* name) {
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

StagePolicy* stage_of(CapturePolicy& p, Family f, Stage s) {
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

PolicyChain* chain_of(StagePolicy& sp, const std::string& name, std::optional<Hook> hook) {
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

CapturePolicy only(const CapturePolicy& p, const std::vector<Family>& families) {
  CapturePolicy out;
  for (const auto& fp : p.families)
    if (std::find(families.begin(), families.end(), fp.family) != families.end()) out.families.push_back(fp);
  return out;
}

bool in(const std::vector<Family>& fs, Family f) { return std::find(fs.begin(), fs.end(), f) != fs.end(); }

class NftFilter : public PacketFilter {
 public:
  explicit NftFilter(NftOptions options) : options_(options) {}

  const char* name() const override { return "nftables"; }

  Status probe(const CapturePolicy& policy) override {
    const CapturePolicy wanted = nft::canonical(policy);
    if (Status st = nft::check(wanted); !st.ok()) return st;
    auto s = Socket::open();
    if (!s) return s.error().wrap("nftables");
    // nf_tables answers a get of weir's table (ENOENT: none yet).
    bool exists = false;
    Status st = request(*s, NFT_MSG_GETTABLE, 0, "get table inet weir", put_table_payload, nullptr,
                        [&](const nlmsghdr*) { exists = true; });
    if (!st.ok() && st.error().sys_errno != ENOENT) {
      Error e = st.error().wrap("nftables");
      if (nf_tables_missing(e.sys_errno)) e.kind = ErrorKind::Unsupported;
      return e;
    }
    // The whole ruleset, checked and validated by the kernel, then aborted.
    return send_batch(*s, wanted.families.empty() ? probe_policy() : wanted, exists, false,
                      "probe nf_tables with weir's ruleset");
  }

  Result<CapturePolicy> apply(const CapturePolicy& policy, const std::vector<Family>& scope) override {
    auto s = Socket::open();
    if (!s) return s.error().wrap("apply nftables rules");
    auto live_table = read_table(*s);
    if (!live_table) return live_table.error().wrap("apply nftables rules");
    const CapturePolicy live = raise(*live_table);
    // The table holds both families: what is out of scope stays as it is.
    CapturePolicy merged;
    for (Family f : {Family::V4, Family::V6}) {
      const CapturePolicy& from = in(scope, f) ? policy : live;
      for (const auto& fp : from.families)
        if (fp.family == f) merged.families.push_back(fp);
    }
    const CapturePolicy wanted = nft::canonical(merged);
    if (Status st = nft::check(wanted); !st.ok()) return st.error().wrap("apply nftables rules");
    const CapturePolicy previous = only(live, scope);
    if (live_table->exists ? live.families == wanted.families && !wanted.families.empty() : wanted.families.empty())
      return previous;  // already so: write nothing
    if (Status st = send_batch(*s, wanted, live_table->exists, true, "commit table inet weir"); !st.ok())
      return st.error();
    return previous;
  }

  Result<CapturePolicy> read(const std::vector<Family>& families) override {
    auto s = Socket::open();
    if (!s) {
      if (s.error().kind == ErrorKind::Unsupported) return CapturePolicy{};
      return s.error().wrap("read nftables rules");
    }
    auto t = read_table(*s);
    if (!t) {
      if (t.error().kind == ErrorKind::Unsupported) return CapturePolicy{};
      return t.error();
    }
    return only(raise(*t), families);
  }

  CapturePolicy canonical(const CapturePolicy& policy) const override { return nft::canonical(policy); }

 private:
  // What probe sends when the policy is empty: one rule, so that nf_tables
  // is asked to take a table, a nat base chain and a rule at all.
  static CapturePolicy probe_policy() {
    CapturePolicy p;
    Step s;
    s.action = Verdict{Verdict::Accept};
    p.families.push_back(FamilyPolicy{Family::V4, {StagePolicy{Stage::Nat, {PolicyChain{"OUTPUT", Hook::Output, {s}, 0}}}}});
    return p;
  }

  Status send_batch(Socket& s, const CapturePolicy& wanted, bool table_exists, bool commit, const std::string& what) {
    BatchBuilder b(s, wanted, options_.refused_rule);
    const Messages m = b.build(commit, table_exists);
    if (Status st = send_all(s, m, what); !st.ok()) return st;
    auto answers = pending_answers(s, what);
    if (!answers) return answers.error();
    for (const auto& [seq, err] : answers->by_seq)
      if (err != 0) {
        // What nf_tables answers when it lacks a chain type, an expression or
        // a key (no module for it): "not here", so that a caller can fall back
        // to the other filter. check() has ruled out weir's own mistakes
        // (a jump to a chain that does not exist would be ENOENT too).
        const bool missing = err == EOPNOTSUPP || err == ENOENT || nf_tables_missing(err);
        return system_error(missing ? ErrorKind::Unsupported : ErrorKind::Kernel, what + ": " + b.what(seq), err);
      }
    if (!answers->by_seq.count(b.last_seq()))
      return Error{ErrorKind::Kernel, what + ": nf_tables did not answer the batch"};
    return {};
  }

  NftOptions options_;
};

}  // namespace

std::unique_ptr<PacketFilter> make_nft_filter(const NftOptions& options) {
  return std::make_unique<NftFilter>(options);
}

}  // namespace weir
