// The nftables filter over netlink. See filter.h for what each operation
// sends; rules/nft/ruleset.h for the ruleset's shape; netlink.h, encode.h
// and decode.h for the parts.
//
// Each operation opens its own netlink socket (a socket talks to the
// namespace current when it was made). nf_tables handles a batch inside the
// sendmsg(2) call that carries it, so every answer to a batch is already in
// the socket when sendto returns: they are read without blocking.
#include "kernel/nft/filter.h"

#include "kernel/nft/decode.h"
#include "kernel/nft/encode.h"
#include "kernel/nft/foreign.h"
#include "kernel/nft/netlink.h"
#include "rules/nft/ruleset.h"

namespace weir {
namespace {

using namespace nft::netlink;

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

  Result<std::vector<ForeignRules>> foreign_rules() override {
    auto s = Socket::open();
    if (!s) {
      if (s.error().kind == ErrorKind::Unsupported) return std::vector<ForeignRules>{};
      return s.error().wrap("look for other capture tools' nftables rules");
    }
    auto found = nft::netlink::foreign_rules(*s);
    if (!found) {
      if (found.error().kind == ErrorKind::Unsupported) return std::vector<ForeignRules>{};
      return found.error().wrap("look for other capture tools' nftables rules");
    }
    return found;
  }

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
    const Batch b = build_batch(s, wanted, commit, table_exists, options_.refused_rule);
    if (Status st = send_all(s, b.messages, what); !st.ok()) return st;
    auto answers = pending_answers(s, what);
    if (!answers) return answers.error();
    for (const auto& [seq, err] : answers->by_seq)
      if (err != 0) {
        // What nf_tables answers when it lacks a chain type, an expression or
        // a key (no module for it): "not here", so that a caller can fall back
        // to the other filter. check() has ruled out weir's own mistakes
        // (a jump to a chain that does not exist would be ENOENT too).
        const bool missing = err == EOPNOTSUPP || err == ENOENT || nf_tables_missing(err);
        return system_error(missing ? ErrorKind::Unsupported : ErrorKind::Kernel, what + ": " + b.describe(seq), err);
      }
    if (!answers->by_seq.count(b.last_seq))
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