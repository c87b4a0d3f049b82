// The libiptc filter. One handle per table, made after the caller entered
// the target namespace (a handle talks to the namespace current at init), one
// commit per table. Commits are atomic per table only, so apply reads weir's
// state first and puts committed tables back when a later commit fails, and
// commits in the order commit_order gives, for what a kill -9 leaves.
#include "kernel/iptc/filter.h"

// libip6tc.h, unlike libiptc.h, lacks extern "C".
extern "C" {
#include <libiptc/libip6tc.h>
}
#include <libiptc/libiptc.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "kernel/iptc/codec.h"
#include "kernel/netns.h"
#include "rules/order.h"
#include "rules/xtables/lower.h"

namespace weir {
namespace {

constexpr const char* kTables[] = {"nat", "mangle", "raw", "filter"};

// The IPv4 and IPv6 halves of libiptc differ only in names and entry types.
struct V4 {
  using Entry = ipt_entry;
  static constexpr Family family = Family::V4;
  static constexpr const char* names_file = "/proc/thread-self/net/ip_tables_names";
  static xtc_handle* init(const char* t) { return iptc_init(t); }
  static void free(xtc_handle* h) { iptc_free(h); }
  static const char* first_chain(xtc_handle* h) { return iptc_first_chain(h); }
  static const char* next_chain(xtc_handle* h) { return iptc_next_chain(h); }
  static const Entry* first_rule(const char* c, xtc_handle* h) { return iptc_first_rule(c, h); }
  static const Entry* next_rule(const Entry* e, xtc_handle* h) { return iptc_next_rule(e, h); }
  static const char* get_target(const Entry* e, xtc_handle* h) { return iptc_get_target(e, h); }
  static bool builtin(const char* c, xtc_handle* h) { return iptc_builtin(c, h) != 0; }
  static bool create_chain(const char* c, xtc_handle* h) { return iptc_create_chain(c, h) != 0; }
  static bool flush(const char* c, xtc_handle* h) { return iptc_flush_entries(c, h) != 0; }
  static bool delete_chain(const char* c, xtc_handle* h) { return iptc_delete_chain(c, h) != 0; }
  static bool append(const char* c, const void* e, xtc_handle* h) {
    return iptc_append_entry(c, static_cast<const Entry*>(e), h) != 0;
  }
  static bool insert(const char* c, const void* e, unsigned n, xtc_handle* h) {
    return iptc_insert_entry(c, static_cast<const Entry*>(e), n, h) != 0;
  }
  static bool delete_num(const char* c, unsigned n, xtc_handle* h) { return iptc_delete_num_entry(c, n, h) != 0; }
  static bool commit(xtc_handle* h) { return iptc_commit(h) != 0; }
  static const char* strerror(int err) { return iptc_strerror(err); }
  static const char* get_policy(const char* c, xt_counters* n, xtc_handle* h) { return iptc_get_policy(c, n, h); }
};

struct V6 {
  using Entry = ip6t_entry;
  static constexpr Family family = Family::V6;
  static constexpr const char* names_file = "/proc/thread-self/net/ip6_tables_names";
  static xtc_handle* init(const char* t) { return ip6tc_init(t); }
  static void free(xtc_handle* h) { ip6tc_free(h); }
  static const char* first_chain(xtc_handle* h) { return ip6tc_first_chain(h); }
  static const char* next_chain(xtc_handle* h) { return ip6tc_next_chain(h); }
  static const Entry* first_rule(const char* c, xtc_handle* h) { return ip6tc_first_rule(c, h); }
  static const Entry* next_rule(const Entry* e, xtc_handle* h) { return ip6tc_next_rule(e, h); }
  static const char* get_target(const Entry* e, xtc_handle* h) { return ip6tc_get_target(e, h); }
  static bool builtin(const char* c, xtc_handle* h) { return ip6tc_builtin(c, h) != 0; }
  static bool create_chain(const char* c, xtc_handle* h) { return ip6tc_create_chain(c, h) != 0; }
  static bool flush(const char* c, xtc_handle* h) { return ip6tc_flush_entries(c, h) != 0; }
  static bool delete_chain(const char* c, xtc_handle* h) { return ip6tc_delete_chain(c, h) != 0; }
  static bool append(const char* c, const void* e, xtc_handle* h) {
    return ip6tc_append_entry(c, static_cast<const Entry*>(e), h) != 0;
  }
  static bool insert(const char* c, const void* e, unsigned n, xtc_handle* h) {
    return ip6tc_insert_entry(c, static_cast<const Entry*>(e), n, h) != 0;
  }
  static bool delete_num(const char* c, unsigned n, xtc_handle* h) { return ip6tc_delete_num_entry(c, n, h) != 0; }
  static bool commit(xtc_handle* h) { return ip6tc_commit(h) != 0; }
  static const char* strerror(int err) { return ip6tc_strerror(err); }
  static const char* get_policy(const char* c, xt_counters* n, xtc_handle* h) { return ip6tc_get_policy(c, n, h); }
};

// Chain names go to libiptc as char[32]-typed parameters: copy them into a
// buffer of that size (GCC warns on shorter ones, and it bounds the read).
struct Label {
  char buf[sizeof(xt_chainlabel)] = {};
  explicit Label(const std::string& s) { std::strncpy(buf, s.c_str(), sizeof(buf) - 1); }
  const char* get() const { return buf; }
};

// An owned libiptc handle; the deleter is the family's free function.
using HandlePtr = std::unique_ptr<xtc_handle, void (*)(xtc_handle*)>;
template <typename T>
HandlePtr open_handle(const std::string& table) {
  return HandlePtr(T::init(table.c_str()), T::free);
}

bool weir_chain(const std::string& name) { return name.rfind(kChainPrefix, 0) == 0; }
bool weir_jump(const Rule& r) {
  const Jump* j = std::get_if<Jump>(&r.target);
  return j && weir_chain(j->chain);
}

std::string where(Family f, const std::string& table) {
  return std::string(to_string(f)) + " " + table + " table";
}

// A table the kernel does not have reads as absent (ENOENT: "Table does not
// exist"); a family the kernel lacks altogether reports one of the others.
bool table_missing(int err) { return err == ENOENT; }
bool family_missing(int err) { return err == EAFNOSUPPORT || err == ENOPROTOOPT || err == EPROTONOSUPPORT; }

// The tables this namespace has instantiated. A table comes into
// being on first use, so one that does not exist holds no rule of weir's and
// need not be opened (opening costs ~50 us and would create it). No list at
// all (ENOENT) means the family's x_tables module is not loaded: no table,
// and a reader must not load it (on an nftables-only node, a DEL or a check
// of a pod weir never captured would load the legacy modules). When the list
// cannot be read for another reason, every table counts as present.
template <typename T>
std::vector<std::string> tables_in_use(bool* module_loaded = nullptr) {
  // One read(2), no stream: a stream's locale set-up would cost more than
  // the rest of this function on a plugin's short run.
  std::vector<std::string> all{std::begin(kTables), std::end(kTables)};
  if (module_loaded) *module_loaded = true;
  Fd fd(::open(T::names_file, O_RDONLY | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT && module_loaded) *module_loaded = false;
  if (!fd.valid()) return all;
  char buf[512];
  std::string text;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return all;
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    if (nl > start) out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// weir's part of the table behind `h`: weir's chains and, under each built-in
// chain's name, the rules there that jump into weir's chains. Kernel order.
template <typename T>
Table read_table(xtc_handle* h, const std::string& name) {
  Table table{name, {}};
  std::vector<std::string> chain_names;
  for (const char* c = T::first_chain(h); c; c = T::next_chain(h)) chain_names.emplace_back(c);
  for (const std::string& chain : chain_names) {
    Label label(chain);
    bool builtin = T::builtin(label.get(), h);
    if (!builtin && !weir_chain(chain)) continue;
    Chain out{chain, {}};
    unsigned foreign = 0;
    for (const auto* e = T::first_rule(label.get(), h); e; e = T::next_rule(e, h)) {
      Rule r = iptc::decode(e, T::family, T::get_target(e, h));
      if (!builtin || weir_jump(r)) {
        if (builtin) out.foreign_before = foreign;
        out.rules.push_back(std::move(r));
      } else {
        ++foreign;
      }
    }
    if (!builtin || !out.rules.empty()) table.chains.push_back(std::move(out));
  }
  return table;
}

// An entry's bytes without what differs between two reads of one rule: the
// counters, comefrom, and the bytes after the NUL of each match's and the
// target's name (the kernel copies the name only up to its NUL, so the rest
// is whatever libiptc's buffer held).
template <typename Entry>
std::string normalized_entry(const Entry* e) {
  std::string bytes(reinterpret_cast<const char*>(e), e->next_offset);
  std::memset(bytes.data() + offsetof(Entry, counters), 0, sizeof(e->counters));
  std::memset(bytes.data() + offsetof(Entry, comefrom), 0, sizeof(e->comefrom));
  auto clean_name = [&](size_t at) {
    // xt_entry_match and xt_entry_target: u16 size, then the name.
    const size_t name = at + offsetof(xt_entry_match, u.user.name);
    const size_t len = sizeof(xt_entry_match::u.user.name);
    if (name + len > bytes.size()) return;
    const size_t nul = bytes.find('\0', name);
    if (nul != std::string::npos && nul < name + len) std::memset(bytes.data() + nul, 0, name + len - nul);
  };
  size_t at = sizeof(Entry);
  while (at + sizeof(xt_entry_match) <= e->target_offset) {
    uint16_t size = 0;
    std::memcpy(&size, bytes.data() + at, sizeof size);
    if (size < sizeof(xt_entry_match)) break;
    clean_name(at);
    at += size;
  }
  clean_name(e->target_offset);
  return bytes;
}

// Everything in the table behind `h` that is not weir's, as bytes: the
// names of the other chains, the built-in chains' policies, and every rule
// of other tools (its entry with counters zeroed, and its target's name).
// Equal for two handles when no other tool changed the table in between.
template <typename T>
std::string foreign_fingerprint(xtc_handle* h) {
  std::vector<std::string> chains;
  for (const char* c = T::first_chain(h); c; c = T::next_chain(h)) chains.emplace_back(c);
  std::string out;
  for (const std::string& chain : chains) {
    if (weir_chain(chain)) continue;
    out += chain;
    out.push_back('\0');
    Label label(chain);
    const bool builtin = T::builtin(label.get(), h);
    if (builtin) {
      xt_counters n{};
      if (const char* policy = T::get_policy(label.get(), &n, h)) out += policy;
      out.push_back('\0');
    }
    for (const auto* e = T::first_rule(label.get(), h); e; e = T::next_rule(e, h)) {
      const char* target = T::get_target(e, h);
      if (builtin && target && weir_chain(target)) continue;  // weir's jump
      out += normalized_entry<typename T::Entry>(e);
      if (target) out += target;
      out.push_back('\0');
    }
  }
  return out;
}

// Tables compare equal ignoring counters; an absent table equals an empty one.
bool same_table(const Table* a, const Table* b) {
  static const Table empty;
  const Table& x = a ? *a : empty;
  const Table& y = b ? *b : empty;
  if (x.chains.size() != y.chains.size()) return false;
  for (const Chain& c : x.chains) {
    const Chain* other = y.find(c.name);
    if (!other || !(*other == c)) return false;
  }
  return true;
}

const char* table_name(Stage s) {
  switch (s) {
    case Stage::Raw: return "raw";
    case Stage::Mangle: return "mangle";
    case Stage::Nat: return "nat";
  }
  return "nat";
}

template <typename T>
Status open_for_probe(const std::string& table) {
  HandlePtr h = open_handle<T>(table);
  if (h) return {};
  int err = errno;
  const char* lib = T::family == Family::V4 ? "libiptc" : "libip6tc";
  return Error{ErrorKind::Unsupported,
               std::string(lib) + ": open the " + where(T::family, table) + ": " + T::strerror(err), err};
}

bool contains_family(const std::vector<Family>& fams, Family f) {
  return std::find(fams.begin(), fams.end(), f) != fams.end();
}

// The order of libiptc's commits. They are atomic one table at a time, so a
// kill -9 (or a crash) between two commits leaves the tables before that
// point changed and the rest not; rollback cannot run. The order decides
// which half states can exist, and is chosen so that each is the safer one
// (README, "Reliability"):
//  - Families that get rules: IPv6 first, then IPv4. Killed between the two,
//    IPv4 is uncaptured, which is loud: most of a pod's traffic misses the
//    proxy and `weir-init validate` (which dials IPv4 in a dual-stack pod)
//    fails. The other order would leave IPv6 silently bypassing the proxy
//    while IPv4 and every check that dials it look right.
//  - In a family, the tables it wants in stage order, raw, mangle, nat: what
//    supports capture (DNS conntrack zones, TPROXY marks, drop-invalid)
//    before what captures (nat's REDIRECTs). raw alone is harmless (zones
//    for DNS that is not redirected); nat's DNS redirect without raw's zones
//    can mix the proxy's and the apps' DNS flows in conntrack.
//  - Then the tables it no longer wants, nat, mangle, raw: a new capture is
//    in before the old one goes (make before break), so a change of mode
//    (REDIRECT <-> TPROXY) passes through "both" rather than "neither".
//  - Families that lose all of weir's rules last, IPv4 then IPv6: clean and
//    DEL undo apply in reverse, so every half state they leave (IPv6
//    captured, IPv4 not; nat gone, raw left) is one apply can leave too.
// A spec change flips tables in the same order; a change that touches two
// tables of one family at once (dns.port: raw's zones and nat's redirect)
// breaks that flow between the commits in either order.
std::vector<Family> commit_order(const RulePlan& wanted, const std::vector<Family>& scope) {
  auto gets_rules = [&](Family f) {
    const Ruleset* rs = wanted.find(f);
    return rs && !rs->tables.empty();
  };
  std::vector<Family> order;
  for (Family f : {Family::V6, Family::V4})
    if (contains_family(scope, f) && gets_rules(f)) order.push_back(f);
  for (Family f : {Family::V4, Family::V6})
    if (contains_family(scope, f) && !gets_rules(f)) order.push_back(f);
  return order;
}

// raw, mangle, nat: the order tables are filled in (and emptied in reverse).
int install_rank(const std::string& table) {
  if (table == "raw") return 0;
  if (table == "mangle") return 1;
  if (table == "nat") return 2;
  return 3;
}

// Other capture tools' chains in one family's nat, mangle and raw tables:
// chain names only. Only tables the namespace has instantiated are opened
// (opening one creates it), and none when the family's module is not loaded.
template <typename T>
Status foreign_chains_in(std::vector<ForeignRules>& out) {
  bool loaded = true;
  const std::vector<std::string> in_use = tables_in_use<T>(&loaded);
  if (!loaded) return {};
  for (const char* name : {"nat", "mangle", "raw"}) {
    if (std::find(in_use.begin(), in_use.end(), name) == in_use.end()) continue;
    HandlePtr h = open_handle<T>(name);
    if (!h) {
      int err = errno;
      if (table_missing(err) || family_missing(err)) continue;
      return Error{ErrorKind::Kernel, "list the chains of the " + where(T::family, name) + ": " + T::strerror(err), err};
    }
    std::vector<std::string> chains;
    for (const char* c = T::first_chain(h.get()); c; c = T::next_chain(h.get())) chains.emplace_back(c);
    for (ForeignRules& f :
         foreign_chains(T::family == Family::V4 ? "legacy iptables" : "legacy ip6tables", name, chains))
      out.push_back(std::move(f));
  }
  return {};
}

RulePlan restrict_rules(RulePlan p, const std::vector<Family>& fams) {
  auto drop = [&](Family f) { return !contains_family(fams, f); };
  std::erase_if(p.rulesets, [&](const Ruleset& rs) { return drop(rs.family); });
  p.routes.clear();  // not the filter's
  return p;
}

}  // namespace

struct IptcFilter::Impl {
  explicit Impl(IptcOptions o) : options(o) {}

  IptcOptions options;
  int commits = 0;
  int foreign_changes = 0;  // commits started over because another tool changed the table
  // Handles opened by sync's first read, keyed by family and table; each is
  // used for that table's first commit attempt and dropped at the end of sync.
  std::map<std::pair<Family, std::string>, HandlePtr> snapshots;

  // Reads weir's tables of one family. `tolerant`: a family the kernel does
  // not have reads as empty instead of failing. `keep`: keep the handles in
  // snapshots so that sync_table can edit and commit them without a second
  // iptc_init (about half the cost of an apply).
  template <typename T>
  Result<Ruleset> read_family(bool tolerant, bool keep = false) {
    Ruleset rs{T::family, {}};
    bool loaded = true;
    const std::vector<std::string> in_use = tables_in_use<T>(&loaded);
    if (tolerant && !loaded) return rs;  // nothing of weir's can be there
    for (const char* name : kTables) {
      if (std::find(in_use.begin(), in_use.end(), name) == in_use.end()) continue;
      HandlePtr h = open_handle<T>(name);
      if (!h) {
        int err = errno;
        if (table_missing(err) || (tolerant && family_missing(err))) continue;
        return Error{ErrorKind::Kernel, "read " + where(T::family, name) + ": " + T::strerror(err), err};
      }
      Table t = read_table<T>(h.get(), name);
      if (!t.chains.empty()) rs.tables.push_back(std::move(t));
      if (keep) snapshots.insert_or_assign({T::family, name}, std::move(h));
    }
    return rs;
  }

  Result<Ruleset> read_family_any(Family f, bool tolerant, bool keep) {
    return f == Family::V4 ? read_family<V4>(tolerant, keep) : read_family<V6>(tolerant, keep);
  }

  // Makes weir's part of one table equal to `wanted` (nullptr = none of it),
  // in one commit. Retries from a fresh read when another writer got between.
  template <typename T>
  Status sync_table(const std::string& name, const Table* wanted) {
    const std::string what = where(T::family, name);
    // Bounded: a few retries after EAGAIN; for another tool's changes, as
    // long as it keeps changing the table, up to options.foreign_change_ms.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.foreign_change_ms);
    std::minstd_rand jitter(static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
    int refused = 0;
    for (int attempt = 0; attempt < 100000; ++attempt) {
      HandlePtr h(nullptr, T::free);
      if (auto it = snapshots.find({T::family, name}); attempt == 0 && it != snapshots.end()) {
        h = std::move(it->second);
        snapshots.erase(it);
      } else {
        h = open_handle<T>(name);
      }
      if (!h) {
        int err = errno;
        if (!wanted && (table_missing(err) || family_missing(err))) return {};
        ErrorKind kind = table_missing(err) || family_missing(err) ? ErrorKind::Unsupported : ErrorKind::Kernel;
        return Error{kind, "open " + what + ": " + T::strerror(err), err};
      }
      Table live = read_table<T>(h.get(), name);
      if (same_table(&live, wanted)) return {};  // keeps counters, costs no commit
      // A commit replaces the whole table with the handle's copy, and the
      // kernel checks only the rule count: a change another tool made since
      // the handle was read (iptables -R) would be undone. So look again
      // right before committing, and start over from a fresh read when
      // anything outside weir's chains changed. What remains is the time
      // between that look and the commit itself (tens of microseconds).
      const std::string foreign = foreign_fingerprint<T>(h.get());
      if (Status s = rebuild<T>(h.get(), live, wanted); !s) return s.error().wrap("change " + what);
      if (HandlePtr now = open_handle<T>(name); now && foreign_fingerprint<T>(now.get()) != foreign) {
        ++foreign_changes;
        if (std::chrono::steady_clock::now() < deadline) {
          // Out of step with the other writer for a moment: the next read
          // is less likely to meet it mid-change again.
          std::this_thread::sleep_for(std::chrono::microseconds(jitter() % 500));
          continue;
        }
        return Error{ErrorKind::Kernel,
                     "commit " + what + ": another tool kept changing the table for " +
                         std::to_string(options.foreign_change_ms) +
                         " ms; not committed, so as not to undo its change",
                     EAGAIN};
      }
      ++commits;
      bool injected = commits == options.fail_commit_number;
      if (!injected && T::commit(h.get())) return {};
      int err = injected ? EINVAL : errno;
      // EAGAIN: another writer replaced the table since our read. EINVAL can
      // mean the same: a commit is a replace plus a counter update, and when
      // another writer came between the two the kernel refuses the counters
      // although our rules went in. Either way: read again (the top of the
      // loop returns when the table already is as wanted) and redo, bounded.
      if (!injected && (err == EAGAIN || err == EINVAL) && ++refused < options.eagain_retries) continue;
      std::string msg = "commit " + what + ": " + std::strerror(err);
      if (injected) msg += " (failure injected by test)";
      // x_tables says which match or target it refused only in the kernel log.
      else if (err == EINVAL) msg += " (the kernel log, dmesg, names the match or target it refused)";
      else if (err == ENOENT) msg += " (a match or target module is missing from the kernel)";
      return Error{ErrorKind::Kernel, msg, err};
    }
    return Error{ErrorKind::Internal, "commit " + what + ": gave up after 100000 attempts", EAGAIN};
  }

  // The edits on one handle: drop weir's jumps from built-in chains, empty
  // weir's chains and delete the unwanted ones, then build `wanted`.
  template <typename T>
  Status rebuild(xtc_handle* h, const Table& live, const Table* wanted) {
    auto fail = [](const std::string& op, const std::string& chain) {
      int err = errno;
      return Error{ErrorKind::Kernel, op + " " + chain + ": " + T::strerror(err), err};
    };
    for (const Chain& c : live.chains) {
      Label label(c.name);
      if (!T::builtin(label.get(), h)) continue;
      // Delete from the bottom up so earlier positions stay valid.
      std::vector<unsigned> positions;
      unsigned pos = 0;
      for (const auto* e = T::first_rule(label.get(), h); e; e = T::next_rule(e, h), ++pos) {
        Rule r = iptc::decode(e, T::family, T::get_target(e, h));
        if (weir_jump(r)) positions.push_back(pos);
      }
      for (auto it = positions.rbegin(); it != positions.rend(); ++it)
        if (!T::delete_num(label.get(), *it, h)) return fail("delete weir's jump from", c.name);
    }
    // Flush all first: weir chains may jump to each other.
    for (const Chain& c : live.chains) {
      Label label(c.name);
      if (!T::builtin(label.get(), h) && !T::flush(label.get(), h)) return fail("flush chain", c.name);
    }
    for (const Chain& c : live.chains) {
      Label label(c.name);
      if (T::builtin(label.get(), h) || (wanted && wanted->find(c.name))) continue;
      if (!T::delete_chain(label.get(), h)) return fail("delete chain", c.name);
    }
    if (!wanted) return {};
    // Create every chain before any rule: a jump resolves its chain at append.
    for (const Chain& c : wanted->chains) {
      Label label(c.name);
      if (T::builtin(label.get(), h) || live.find(c.name)) continue;
      if (!weir_chain(c.name))
        return Error{ErrorKind::InvalidArgument, "chain " + c.name + " is not weir's (no " + kChainPrefix + " prefix)", 0};
      if (!T::create_chain(label.get(), h)) return fail("create chain", c.name);
    }
    for (const Chain& c : wanted->chains) {
      Label label(c.name);
      bool builtin = T::builtin(label.get(), h);
      unsigned index = 0;
      for (const Rule& r : c.rules) {
        auto entry = iptc::encode(r, T::family);
        if (!entry) return entry.error().wrap("encode rule " + std::to_string(index + 1) + " of " + c.name);
        bool ok = builtin ? T::insert(label.get(), entry->data(), index, h) : T::append(label.get(), entry->data(), h);
        if (!ok) return fail("add rule " + std::to_string(index + 1) + " to", c.name);
        ++index;
      }
    }
    return {};
  }

  Status sync_table_any(Family f, const std::string& name, const Table* wanted) {
    return f == Family::V4 ? sync_table<V4>(name, wanted) : sync_table<V6>(name, wanted);
  }

  // Makes weir's tables in `scope` equal to `wanted`: all of them or none.
  // Returns weir's tables of `scope` as they were before.
  Result<RulePlan> sync(const RulePlan& wanted, const std::vector<Family>& scope) {
    RulePlan old;
    for (Family f : scope) {
      bool required = wanted.find(f) != nullptr;
      auto rs = read_family_any(f, !required, true);
      if (!rs) {
        snapshots.clear();
        return rs.error();
      }
      old.rulesets.push_back(std::move(*rs));
    }
    Status s = sync_from(old, wanted, scope);
    snapshots.clear();
    if (!s) return s.error();
    return old;
  }

  // The changing half of sync, once `old` (weir's tables before) is read.
  Status sync_from(const RulePlan& old, const RulePlan& wanted, const std::vector<Family>& scope) {
    struct Done {
      Family family;
      std::string table;
    };
    std::vector<Done> done;
    auto rollback = [&](const Error& cause) -> Error {
      snapshots.clear();  // put back from fresh handles
      std::string failures;
      for (auto it = done.rbegin(); it != done.rend(); ++it) {
        const Ruleset* rs = old.find(it->family);
        const Table* t = rs ? rs->find(it->table) : nullptr;
        if (Status s = sync_table_any(it->family, it->table, t); !s) failures += "; " + s.error().message;
      }
      if (failures.empty()) return cause;
      Error e = cause;
      e.message += " (and putting back the previous rules failed" + failures + ")";
      return e;
    };
    for (Family f : commit_order(wanted, scope)) {
      const Ruleset* want = wanted.find(f);
      const Ruleset* have = old.find(f);
      std::vector<std::string> tables;
      if (want)
        for (const Table& t : want->tables) tables.push_back(t.name);
      std::stable_sort(tables.begin(), tables.end(),
                       [](const std::string& a, const std::string& b) { return install_rank(a) < install_rank(b); });
      std::vector<std::string> removed;
      if (have)
        for (const Table& t : have->tables)
          if (std::find(tables.begin(), tables.end(), t.name) == tables.end()) removed.push_back(t.name);
      std::stable_sort(removed.begin(), removed.end(),
                       [](const std::string& a, const std::string& b) { return install_rank(a) > install_rank(b); });
      tables.insert(tables.end(), removed.begin(), removed.end());
      for (const std::string& name : tables) {
        const Table* t = want ? want->find(name) : nullptr;
        if (Status s = sync_table_any(f, name, t); !s) return rollback(s.error());
        done.push_back({f, name});
        if (options.abandon_after_commit != 0 && commits >= options.abandon_after_commit)
          return Error{ErrorKind::Internal, "abandoned after commit " + std::to_string(commits) + " (test hook)"};
      }
    }
    return {};
  }
};

IptcFilter::IptcFilter(IptcOptions options) : impl_(std::make_unique<Impl>(options)) {}
IptcFilter::~IptcFilter() = default;

Status IptcFilter::probe(const CapturePolicy& policy) {
  for (const FamilyPolicy& fp : policy.families) {
    for (const StagePolicy& sp : fp.stages) {
      const std::string table = table_name(sp.stage);
      Status s = fp.family == Family::V4 ? open_for_probe<V4>(table) : open_for_probe<V6>(table);
      if (!s) return s;
    }
  }
  return {};
}

Status IptcFilter::apply_rules(const RulePlan& wanted, const std::vector<Family>& scope) {
  auto old = impl_->sync(restrict_rules(wanted, scope), scope);
  if (!old) return old.error();
  return {};
}

Result<CapturePolicy> IptcFilter::apply(const CapturePolicy& policy, const std::vector<Family>& scope) {
  auto wanted = xtables::lower(policy);
  if (!wanted) return wanted.error();
  auto old = impl_->sync(restrict_rules(std::move(*wanted), scope), scope);
  if (!old) return old.error();
  return xtables::raise(*old);
}

Result<RulePlan> IptcFilter::read_rules(const std::vector<Family>& families) {
  RulePlan out;
  for (Family f : families) {
    auto rs = impl_->read_family_any(f, true, false);
    if (!rs) return rs.error();
    if (!rs->tables.empty()) out.rulesets.push_back(std::move(*rs));
  }
  return out;
}

Result<CapturePolicy> IptcFilter::read(const std::vector<Family>& families) {
  auto rules = read_rules(families);
  if (!rules) return rules.error();
  return xtables::raise(*rules);
}

CapturePolicy IptcFilter::canonical(const CapturePolicy& policy) const { return xtables::canonical(policy); }

Result<std::vector<ForeignRules>> IptcFilter::foreign_rules() {
  std::vector<ForeignRules> out;
  if (Status s = foreign_chains_in<V4>(out); !s) return s.error();
  if (Status s = foreign_chains_in<V6>(out); !s) return s.error();
  return out;
}

RulePlan order_like(const RulePlan& live, const RulePlan& wanted) {
  RulePlan out = live;
  out.rulesets = ordered_like(live.rulesets, wanted.rulesets, [](const Ruleset& r) { return r.family; });
  for (Ruleset& rs : out.rulesets) {
    const Ruleset* w = wanted.find(rs.family);
    if (!w) continue;
    rs.tables = ordered_like(rs.tables, w->tables, [](const Table& t) { return t.name; });
    for (Table& t : rs.tables) {
      const Table* wt = w->find(t.name);
      if (wt) t.chains = ordered_like(t.chains, wt->chains, [](const Chain& c) { return c.name; });
    }
  }
  out.routes = ordered_like(live.routes, wanted.routes, [](const PolicyRoute& r) { return r; });
  return out;
}

}  // namespace weir
