// Netlink plumbing of the nftables filter (internal to kernel/nft/): owned
// libmnl/libnftnl objects, the socket, a message buffer, and requests whose
// answers are read back. Each operation opens its own socket: a socket talks
// to the namespace current when it was made. nf_tables handles a batch inside
// the sendmsg(2) that carries it, so every answer to a batch is already queued
// when sendto returns, and is read without blocking.
#pragma once

// arpa/inet.h (glibc's netinet/in.h) before the kernel headers, which then skip theirs.
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
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

#include "rules/error.h"
#include "rules/nft/ruleset.h"

namespace weir::nft::netlink {

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

inline constexpr const char* kTable = nft::kTable;
inline constexpr uint32_t kReg = NFT_REG_1;

inline bool nf_tables_missing(int err) {
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
  // The header of the message that starts `offset` bytes in (a size() taken
  // before it was built).
  nlmsghdr* header_at(size_t offset) { return reinterpret_cast<nlmsghdr*>(buf_.get() + offset); }
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

inline Status send_all(Socket& s, const Messages& m, const std::string& what) {
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
inline Result<Answers> pending_answers(Socket& s, const std::string& what) {
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

}  // namespace weir::nft::netlink
